"""The embedding explorer's engine: a sample of a dataset embedded by any model, cached, and
projected to a 2-D map with its k-NN accuracy.

    explorer = Explorer(home, store)
    emb = explorer.embeddings("3", "digits", samples=2000)       # job 3's newest checkpoint
    view = explorer.map("random:3", "digits", 2000, "umap")      # same rows, random init

A model is named by a string (`resolve_source`): a job id ("3"), the random initialisation of a
job's network ("random:3") or of a method's quick preset ("random:simclr"), the raw pixels
("pixels"), or a Hub id / model folder (through `engine.hub`). The rows of a dataset split are
drawn with a fixed seed, so two models asked for the same (dataset, split, samples) embed the
same images and their maps can be compared point for point.

Embeddings are cached by (model, checkpoint step, dataset, split, samples, texts), so changing
the projection never embeds again; maps are cached too, so going back to one is instant.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from engine import checks
from engine.data.datasets import dataset_info, is_streamed, load_dataset
from engine.errors import DatasetError, JobError, SpecError
from engine.inference import projections
from engine.inference.encoders import (
    Encoder,
    best_device,
    hub_encoder,
    method_encoder,
    parse_source,
    pixels_encoder,
)
from engine.inference.runs import LOADABLE_STATUSES, LRU, RunLoader

Progress = Callable[[float, str], None]

DEFAULT_SAMPLES = 2000
# Points per map. PCA and UMAP stay usable at 10,000 here (bench/embeddings.py); the browser
# draws every point as an SVG node, and 10,000 still pans and hovers. Barnes-Hut t-SNE grows
# fastest, so it stops at 5,000 (TensorBoard's projector stops UMAP there).
MAX_POINTS = {"pca": 10_000, "umap": 10_000, "tsne": 5_000}
TEXT_MODES = ("none", "prompts", "captions")  # what a CLIP model adds to an image map
EMBED_BATCH = 256
SAMPLE_SEED = 0
THUMB_MIN, THUMB_MAX = 32, 64  # px: thumbnails at the dataset's native size within these


# ---- embeddings ----------------------------------------------------------------------------
@dataclass
class EmbeddingSet:
    """A sample embedded by one model. Points are images first, then any texts."""

    features: Tensor  # (N, D) float32, CPU
    labels: Tensor  # (N,) int64; 0 for every point of an unlabelled corpus
    indices: list[int]  # row in the dataset split (the class for a prompt)
    kinds: list[str]  # "image" or "text" per point
    texts: list[str]  # caption, sentence or prompt per point ("" for none)
    class_names: list[str]
    model: dict[str, Any]
    dataset: str
    split: str
    knn_top1: float | None  # leave-one-out k-NN over the first kind's points
    seconds: float  # to embed (0 when it came from the cache)
    key: tuple = field(default=())
    # Nuisance factors of the dataset (shapes: color, size, position, background, ...): the
    # value per point ("" for a class prompt), and the same k-NN with the factor as the label,
    # which says what else the embedding encodes.
    factors: dict[str, list[str]] = field(default_factory=dict)
    factor_knn: dict[str, float] = field(default_factory=dict)


def sample_rows(total: int, samples: int, seed: int = SAMPLE_SEED) -> Tensor:
    """`samples` distinct row numbers of `total`, sorted; the same for every model."""
    if samples >= total:
        return torch.arange(total)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(total, generator=generator)[:samples].sort().values


@torch.no_grad()
def embed_in_batches(
    embed: Callable[[Any], Tensor],
    items: Any,
    count: int,
    on_progress: Progress | None,
    text: str,
    batch_size: int = EMBED_BATCH,
) -> Tensor:
    """Embed `items` (a uint8 tensor or a list of strings) in batches, reporting progress."""
    out = []
    device = best_device()
    for start in range(0, count, batch_size):
        batch = items[start : start + batch_size]
        if isinstance(batch, Tensor):
            batch = batch.to(device)
        out.append(embed(batch).float().cpu())
        if on_progress is not None:
            done = min(count, start + batch_size)
            on_progress(done / count, f"{text}: {done:,} of {count:,}")
    return torch.cat(out) if out else torch.empty(0, 0)


def _text_corpus(
    dataset: str, split: str, samples: int, cache_dir: Path | None
) -> tuple[list[str], Tensor, list[str], Tensor]:
    from engine.data.text import corpus_texts

    docs = corpus_texts(dataset, split, cache_dir)
    rows = sample_rows(len(docs), samples)
    texts = [docs[i] for i in rows.tolist()]
    return texts, torch.zeros(len(texts), dtype=torch.long), ["text"], rows


def _encoder_facts(encoder: Encoder) -> dict[str, Any]:
    return dict(
        encoder.info,
        name=encoder.name,
        image_tower=encoder.images is not None,
        text_tower=encoder.texts is not None,
    )


def build_embeddings(
    encoder: Encoder,
    dataset: str,
    split: str,
    samples: int,
    texts_mode: str,
    cache_dir: Path | None,
    on_progress: Progress | None = None,
) -> EmbeddingSet:
    """Embed the sampled rows of `dataset`'s `split` with `encoder` (no caching here)."""
    tick = time.perf_counter()
    info = dataset_info(dataset)
    if not info["available"]:
        raise DatasetError(f"dataset {dataset!r} is not available: {info['reason']}")
    features: list[Tensor] = []
    kinds: list[str] = []
    point_texts: list[str] = []
    added = None  # texts after the images: "prompts" (one per class) or "captions" (per image)
    if info["kind"] == "text":
        if encoder.texts is None:
            raise SpecError(
                f"{encoder.name} embeds images, and {dataset!r} is a text corpus; "
                "pick an image dataset (digits, shapes, ...)"
            )
        docs, labels, class_names, rows = _text_corpus(dataset, split, samples, cache_dir)
        features.append(
            embed_in_batches(encoder.texts, docs, len(docs), on_progress, "embedding texts")
        )
        kinds, point_texts, indices = ["text"] * len(docs), docs, rows.tolist()
    else:
        data = load_dataset(dataset, split, encoder.image_size or 32, cache_dir=cache_dir)
        rows = sample_rows(len(data), samples)
        labels = data.labels[rows]
        class_names = list(data.class_names)
        captions = [data.captions[i] for i in rows.tolist()] if data.captions else None
        indices = rows.tolist()
        if encoder.images is not None:
            images = (  # (n, 3, S, S) uint8; a streamed set is read a batch at a time
                data.images.subset(rows) if is_streamed(data.images) else data.images[rows]
            )
            share = 0.8 if texts_mode != "none" and encoder.texts is not None else 1.0
            part = None if on_progress is None else (lambda f, text: on_progress(share * f, text))
            batch = encoder.image_batch or EMBED_BATCH
            features.append(
                embed_in_batches(encoder.images, images, len(rows), part, "embedding images", batch)
            )
            kinds = ["image"] * len(rows)
            point_texts = captions or [""] * len(rows)
            if texts_mode not in TEXT_MODES:
                raise SpecError(
                    f"texts must be one of {', '.join(TEXT_MODES)}, got {checks.shown(texts_mode)}"
                )
            if texts_mode != "none" and encoder.texts is not None:
                if texts_mode == "prompts":
                    if encoder.prompts is not None:  # the method's own prompt ensemble
                        prompts = [f"prompts for {name} (averaged)" for name in class_names]
                        text_features = encoder.prompts(class_names)
                    else:
                        prompts = [f"a photo of a {name}" for name in class_names]
                        text_features = encoder.texts(prompts)
                    text_labels, text_rows = (
                        torch.arange(len(class_names)),
                        list(range(len(class_names))),
                    )
                elif captions:
                    prompts = captions
                    text_features = embed_in_batches(
                        encoder.texts, captions, len(captions), None, "embedding captions"
                    )
                    text_labels, text_rows = labels, indices
                else:
                    raise DatasetError(f"{dataset!r} has no captions; show the class prompts")
                added = texts_mode
                features.append(text_features.float().cpu())
                labels = torch.cat([labels, text_labels])
                indices = indices + text_rows
                kinds = kinds + ["text"] * len(prompts)
                point_texts = point_texts + list(prompts)
        elif encoder.texts is not None and captions:
            # A language model on an image dataset: its captions, labelled by their images.
            features.append(
                embed_in_batches(
                    encoder.texts, captions, len(captions), on_progress, "embedding captions"
                )
            )
            kinds, point_texts = ["text"] * len(captions), captions
        else:
            raise SpecError(
                f"{encoder.name} has no image encoder and {dataset!r} has no "
                f"captions; pick a text corpus (captions, pydocs)"
            )
    x = torch.cat(features).float()
    labelled = info.get("labelled", False) and info["kind"] != "text"
    first = torch.tensor([k == kinds[0] for k in kinds])
    knn = projections.leave_one_out_knn(x[first], labels[first]) if labelled else None
    factors: dict[str, list[str]] = {}
    factor_knn: dict[str, float] = {}
    if info["kind"] != "text" and data.factors:
        for name, values in data.factors.items():
            sampled = [str(values[i]) for i in rows.tolist()]
            # Text points: a caption shares its image's factors; a class prompt has none.
            extra = sampled if added == "captions" else [""] * (len(kinds) - len(sampled))
            factors[name] = sampled + extra
            codes = {v: i for i, v in enumerate(sorted(set(sampled)))}
            ids = torch.tensor([codes.get(v, 0) for v in factors[name]])
            factor_knn[name] = projections.leave_one_out_knn(x[first], ids[first])
    return EmbeddingSet(
        x,
        labels.long(),
        indices,
        kinds,
        point_texts,
        class_names,
        _encoder_facts(encoder),
        dataset,
        split,
        knn,
        time.perf_counter() - tick,
        factors=factors,
        factor_knn=factor_knn,
    )


# ---- the explorer --------------------------------------------------------------------------
def _set_bytes(value: Any) -> int:
    return value.features.numel() * 4 if isinstance(value, EmbeddingSet) else value.nbytes


class Explorer:
    """Embeddings and maps over one home folder and job store, with their caches."""

    def __init__(self, home: Any, store: Any, max_sets: int = 8, max_bytes: int = 1024**3) -> None:
        self.home, self.store = home, store
        self.loader = RunLoader(home.cache_dir)
        self.sets = LRU(max_sets, max_bytes, _set_bytes)
        self.maps = LRU(32, 256 * 1024**2, _set_bytes)
        self.embed_calls = 0  # how many times a model actually embedded (the cache test)
        self._locks: dict[tuple, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    # ---- models ----------------------------------------------------------------------
    def models(self) -> list[dict[str, Any]]:
        """What can be explored: finished jobs with a checkpoint, each job's network at random
        initialisation, and the raw pixels: [{"value", "label", "kind" (run, random, pixels),
        "job_id", "modality", "dataset" (the job's training dataset)}], newest job first."""
        from engine import checkpoints
        from engine.registry import get_method

        out = []
        for job in self.store.list_jobs(LOADABLE_STATUSES):
            latest = checkpoints.latest(Path(job.run_dir)) if job.run_dir else None
            if latest is None:
                continue
            step = int(latest.name.rsplit("_", 1)[-1])
            modality = get_method(job.method).modality
            common = {"job_id": job.id, "modality": modality, "dataset": job.dataset}
            out.append(
                {
                    "value": str(job.id),
                    "kind": "run",
                    **common,
                    "label": f"#{job.id} {job.method} on {job.dataset} · step {step} "
                    f"({job.status})",
                }
            )
            out.append(
                {
                    "value": f"random:{job.id}",
                    "kind": "random",
                    **common,
                    "label": f"#{job.id}'s {job.method} {job.backbone} at random init",
                }
            )
        out.append(
            {
                "value": "pixels",
                "kind": "pixels",
                "job_id": None,
                "modality": "image",
                "dataset": None,
                "label": "raw pixels (32 px, flattened)",
            }
        )
        return out

    def source_key(self, source: str) -> tuple:
        """The cache key of a model name, without loading the model: a job's includes its
        newest checkpoint step, so a job that trained further is embedded again."""
        kind, target = parse_source(source)
        if kind == "run":
            from engine.inference.runs import checkpoint_step

            return ("job", int(target), checkpoint_step(self._job(int(target)))[1])
        return (kind, target)

    def resolve_source(self, source: str) -> Encoder:
        """A model name -> an Encoder (see the module docstring for the forms)."""
        kind, target = parse_source(source)
        if kind == "pixels":
            return pixels_encoder(int(target))
        if kind == "run":
            loaded = self.loader.job(self._job(int(target)))
            key: tuple = ("job", loaded.job_id, loaded.step)
        elif kind == "random":
            if target.isdigit():
                loaded = self.loader.random(self._job(int(target)))
            else:
                from engine.registry import get_method

                get_method(target)  # SpecError naming the known methods
                loaded = self.loader.random_method(target)
            key = ("random", target)
        else:
            return hub_encoder(target, self.home.root)
        info = {
            "kind": kind,
            "job_id": loaded.job_id,
            "step": loaded.step,
            "method": loaded.method_name,
            "backbone": loaded.backbone,
            "image_size": loaded.image_size,
            "modality": loaded.modality,
        }
        return method_encoder(loaded, key, info)

    def _job(self, job_id: int) -> Any:
        job = self.store.get_job(checks.job_id(job_id))
        if job is None:
            raise JobError(f"no job {job_id}; `python -m engine jobs` lists them")
        return job

    # ---- embeddings and maps -------------------------------------------------------------
    def embeddings(
        self,
        source: str,
        dataset: str,
        samples: int = DEFAULT_SAMPLES,
        split: str = "train",
        texts: str = "none",
        on_progress: Progress | None = None,
    ) -> EmbeddingSet:
        """The sample's embeddings under `source`, from the cache when already computed."""
        return self._embeddings(source, dataset, samples, split, texts, on_progress)[0]

    def _embeddings(
        self,
        source: str,
        dataset: str,
        samples: int,
        split: str,
        texts: str,
        on_progress: Progress | None,
    ) -> tuple[EmbeddingSet, bool]:
        """(embeddings, whether they came from the cache); one build per key at a time."""
        samples = int(samples)
        if samples < 2:
            raise SpecError(f"samples must be at least 2, got {samples}")
        if samples > max(MAX_POINTS.values()):
            raise SpecError(
                f"at most {max(MAX_POINTS.values()):,} points per map; asked for {samples:,}"
            )
        key = (self.source_key(source), dataset, split, samples, texts)
        cached = self.sets.get(key)
        if cached is not None:
            return cached, True
        with self._locks_lock:
            lock = self._locks.setdefault(key, threading.Lock())
        try:
            with lock:  # a second request for the same set waits for the first, then reuses it
                cached = self.sets.get(key)
                if cached is not None:
                    return cached, True
                encoder = self.resolve_source(source)
                self.embed_calls += 1
                built = build_embeddings(
                    encoder, dataset, split, samples, texts, self.home.cache_dir, on_progress
                )
                built.key = key
                return self.sets.put(key, built), False
        finally:
            with self._locks_lock:
                self._locks.pop(key, None)

    def map(
        self,
        source: str,
        dataset: str,
        samples: int = DEFAULT_SAMPLES,
        projection: str = "pca",
        params: dict[str, Any] | None = None,
        split: str = "train",
        texts: str = "none",
        on_progress: Progress | None = None,
        dims: int = 2,
    ) -> dict[str, Any]:
        """A 2-D map (or with `dims` 3, the 3-D view) of the sample as plain types:
        {"points": {"index", "x", "y" (and "z"), "label", "kind", "text", "factors": {name:
        values}}, "knn_top1", "factor_knn" (the k-NN with each nuisance factor as the label),
        "model", "num_points", "dims", "message", "capped" (True when the projection's point
        cap cut the sample), "timing", ...}."""
        settings = projections.check_projection(projection, params)
        dims = projections.check_dims(dims)
        cap = MAX_POINTS[projection]
        message, capped = "", int(samples) > cap
        if capped:
            message = (
                f"{projection.upper()} is capped at {cap:,} points here (it slows past "
                f"that); showing {cap:,} of the {int(samples):,} asked. PCA and UMAP "
                f"take up to {MAX_POINTS['pca']:,}."
            )
            samples = cap
        part = None if on_progress is None else (lambda f, t: on_progress(0.7 * f, t))
        emb, from_cache = self._embeddings(source, dataset, samples, split, texts, part)
        shown = sum(1 for kind in emb.kinds if kind == emb.kinds[0])
        if shown < int(samples):
            message = (
                f"The {split} split of {dataset} holds {shown:,} "
                f"{'texts' if emb.kinds[0] == 'text' else 'images'}: all are shown."
            )
        tick = time.perf_counter()
        map_key = (emb.key, projection, tuple(sorted(settings.items())), dims)
        coords = self.maps.get(map_key)
        if coords is None:
            if on_progress is not None:
                wait = (
                    " (waiting for the UMAP warm-up)"
                    if (projection == "umap" and projections.UMAP_WARMUP.state == "warming")
                    else ""
                )
                on_progress(
                    0.75, f"{projection.upper()} {dims}-D of {len(emb.labels):,} points{wait}"
                )
            coords = self.maps.put(
                map_key, projections.project(emb.features, projection, settings, dims)
            )
        names = emb.class_names
        points = {
            "index": list(emb.indices),
            "x": coords[:, 0].astype(float).tolist(),
            "y": coords[:, 1].astype(float).tolist(),
            "label": [names[i] if 0 <= i < len(names) else str(i) for i in emb.labels.tolist()],
            "kind": list(emb.kinds),
            "text": list(emb.texts),
            "factors": {name: list(values) for name, values in emb.factors.items()},
        }
        if dims == 3:
            points["z"] = coords[:, 2].astype(float).tolist()
        if on_progress is not None:
            on_progress(1.0, "done")
        return {
            "model": emb.model,
            "dataset": dataset,
            "split": split,
            "projection": projection,
            "params": settings,
            "dims": dims,
            "num_points": len(emb.labels),
            "feature_dim": int(emb.features.shape[1]),
            "class_names": list(names),
            "knn_top1": emb.knn_top1,
            "factor_knn": dict(emb.factor_knn),
            "points": points,
            "message": message,
            "capped": capped,
            "timing": {
                "embed_s": 0.0 if from_cache else round(emb.seconds, 2),
                "project_s": round(time.perf_counter() - tick, 2),
                "embeddings_cached": from_cache,
            },
        }

    def thumbnails(self, dataset: str, split: str, indices: list[int]) -> list[np.ndarray]:
        """(h, w, 3) uint8 images of the given rows, small (THUMB_MIN..THUMB_MAX px)."""
        info = dataset_info(dataset)
        if info["kind"] == "text":
            return []
        size = min(THUMB_MAX, max(THUMB_MIN, int(info.get("native_size") or THUMB_MIN)))
        data = load_dataset(dataset, split, size, cache_dir=self.home.cache_dir)
        rows = [int(i) for i in indices if 0 <= int(i) < len(data)]
        if not rows:
            return []
        return list(data.images[rows].permute(0, 2, 3, 1).contiguous().numpy())

    def clear(self) -> None:
        self.sets.clear()
        self.maps.clear()
        self.loader.cache.clear()
