"""The retrieval lens: the images of a dataset nearest to a sentence in CLIP's space.

Radford et al. 2021 (CLIP, arXiv:2103.00020): image and text embeddings share one space, so a
query's text embedding ranks images by cosine similarity. The images' embeddings come from the
embedding explorer's cache (`engine.inference.embeddings.Explorer`, keyed by model, checkpoint
step, dataset, split and sample size): a dataset is embedded once per model and checkpoint, and
every later query only embeds its own words.

    lm = load_lens_model("7", RETRIEVE, home)
    images = explorer.embeddings("7", "shapes", samples=1000, split="test")
    out = retrieve(lm, images, "a red star", k=8)   # rows, scores (sorted), labels, captions
"""

from __future__ import annotations

from typing import Any

from engine import checks
from engine.inference.models import Lens, LensError, LensModel
from engine.inference.zero_shot import text_embeddings

RETRIEVE = Lens(
    "retrieve",
    "retrieval",
    model_types=("clip",),
    wants="a CLIP model (an image and a text tower): a CLIP run, or a Hub id such as "
    "openai/clip-vit-base-patch32",
    suggestions=("openai/clip-vit-base-patch32",),
)
MAX_K = 64
DEFAULT_SAMPLES = 1000
MAX_SAMPLES = 10_000  # the explorer's largest sample
GALLERY_SIDE = 128  # px, about: thumbnails are upscaled by a whole factor to this


def check_request(query: str, k: int, samples: int) -> tuple[str, int, int]:
    """The query stripped and k, samples as whole numbers, or a LensError saying what is off."""
    text = str(query or "").strip()
    if not text:
        raise LensError('type a query: what the pictures should show, e.g. "a red star"')
    k = checks.whole_number(k, "k", error=LensError)
    samples = checks.whole_number(samples, "samples", error=LensError)
    if not 1 <= k <= MAX_K:
        raise LensError(f"k must be from 1 to {MAX_K}, got {k}")
    if not 2 <= samples <= MAX_SAMPLES:
        raise LensError(f"search from 2 to {MAX_SAMPLES:,} images, got {samples:,}")
    return text, k, samples


def rank(query: Any, images: Any, k: int) -> tuple[list[float], list[int]]:
    """Cosine similarity of a (D,) query to (N, D) image features -> the top `k` (scores,
    positions), best first."""
    import torch

    if images.shape[1] != query.shape[0]:
        raise LensError(
            f"the images were embedded in {images.shape[1]} dimensions and the query "
            f"in {query.shape[0]}: not the same model's spaces"
        )
    images = torch.nn.functional.normalize(images.float(), dim=-1)
    query = torch.nn.functional.normalize(query.float(), dim=0)
    scores = images @ query  # (N,)
    top = torch.topk(scores, min(k, len(scores)))  # sorted, largest first
    return top.values.tolist(), top.indices.tolist()


def retrieve(lm: LensModel, images: Any, query: str, k: int = 8) -> dict[str, Any]:
    """The `k` images of an embedded sample (`images`: an `EmbeddingSet` of image points)
    nearest to `query` under the model `lm` (the same model that embedded them).

    Returns {"query", "scores" (cosine, best first), "indices" (rows of the dataset split),
    "labels" (class names), "captions" ("" when the dataset has none), "searched" (how many
    images), "dataset", "split", "model"}.
    """
    text, k, _ = check_request(query, k, 2)
    image_rows = [i for i, kind in enumerate(images.kinds) if kind == "image"]
    if not image_rows:
        raise LensError(f"{images.dataset} gave no images to search")
    features = images.features[image_rows]  # (N, D)
    scores, positions = rank(text_embeddings(lm, [text])[0], features, k)
    rows = [image_rows[p] for p in positions]
    names = images.class_names
    labels = [int(images.labels[r]) for r in rows]
    return {
        "query": text,
        "scores": scores,
        "indices": [int(images.indices[r]) for r in rows],
        "labels": [names[i] if 0 <= i < len(names) else str(i) for i in labels],
        "captions": [images.texts[r] for r in rows],
        "searched": len(image_rows),
        "dataset": images.dataset,
        "split": images.split,
        "model": lm.label,
    }


def gallery_pictures(pictures: list[Any]) -> list[Any]:
    """Small (h, w, 3) uint8 thumbnails upscaled by a whole factor (crisp pixels) to about
    GALLERY_SIDE."""
    from engine.inference import render

    return [render.upscale(p, render.display_factor(p.shape[0], GALLERY_SIDE)) for p in pictures]
