"""What is evaluated (a job's checkpoint, or a baseline) and its frozen features, cached.

A `Subject` knows how to build its network (`make_method`: a job's checkpoint reopened by
`engine.runs.open_run`, or a freshly initialised method; None for raw pixels) and where its
features are cached. Features of one (subject, dataset, split) are computed once with
`method.embed` and kept in memory and on disk (safetensors under the run folder for a job,
keyed by checkpoint step), so the k-NN, the linear probe and few-shot of one job embed the
dataset once between them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from engine import hardware, runs
from engine.config import TrainConfig, TrainSpec, build_config
from engine.data.datasets import dataset_info, is_streamed, load_dataset
from engine.errors import DatasetError, JobError, SpecError
from engine.evaluation.health import has_image_embed
from engine.methods.base import SSLMethod
from engine.registry import get_method, list_methods

Progress = Callable[[float, str], None]
EMBED_BATCH = 256
_MEMORY: OrderedDict[tuple, tuple[Tensor, Tensor]] = OrderedDict()
_MEMORY_ITEMS = 8
_LOCK = threading.Lock()


@dataclass
class Subject:
    """A network (or raw pixels) whose features get evaluated."""

    key: str  # "job 3 @ step 200", "random resnet18", "pixels"
    image_size: int
    cache_dir: Path | None  # where features are cached on disk (None: memory only)
    make_method: Callable[[], SSLMethod] | None  # None: the raw pixels
    config: TrainConfig | None = None
    method: str | None = None
    backbone: str | None = None
    step: int | None = None
    make_lens: Callable[[], Any] | None = None  # its eager-attention LensModel (segmentation)


def labelled_image_dataset(name: str) -> dict:
    """The dataset's info, if it can be evaluated on; else a DatasetError that says why."""
    info = dataset_info(name)
    if info.get("kind", "image") != "image":
        raise DatasetError(
            f"dataset {name!r} holds {info['kind']}, not images; evaluate on an "
            f"image dataset such as digits or shapes"
        )
    if not info.get("num_test"):
        raise DatasetError(
            f"dataset {name!r} has only a train split, and evaluation needs a labelled test "
            f"split; train on it, then evaluate on a labelled dataset (e.g. --eval-dataset "
            f"digits)"
        )
    if not info.get("labelled"):
        raise DatasetError(
            f"dataset {name!r} has no labels, and evaluation needs them; pass a "
            f"labelled dataset (e.g. --dataset digits)"
        )
    if not info["available"]:
        raise DatasetError(f"dataset {name!r} is not available: {info['reason']}")
    return info


def job_subject(job, cache_dir: Path | None = None) -> Subject:
    """The job's latest checkpoint as a subject (JobError when it has none)."""
    spec = TrainSpec.from_dict(job.spec)
    cls = get_method(spec.method)
    if not has_image_embed(cls):
        raise SpecError(
            f"{spec.method} is a {cls.modality} method with no image features; "
            f"the evaluation protocols need an image encoder"
        )
    try:
        run = runs.describe(job)
    except JobError:
        raise JobError(
            f"job {job.id} has no checkpoint yet; evaluate it once it has trained"
        ) from None
    config, step = run.config, run.step

    def make() -> SSLMethod:
        return runs.open_run(job, step, cache_dir=cache_dir)[0]

    return Subject(
        f"job {job.id} @ step {step}",
        config.image_size,
        Path(job.run_dir) / "features" / f"step_{step:07d}",
        make,
        config,
        spec.method,
        config.backbone,
        step,
    )


def architecture_for(backbone: str) -> str:
    """The image method whose network a `random` baseline of `backbone` uses: simclr for
    ResNets, mae for ViTs, else the first image method that offers the backbone."""
    preferred = ["simclr", "mae"] + list_methods()
    for name in dict.fromkeys(preferred):
        if name not in list_methods():
            continue
        cls = get_method(name)
        if not has_image_embed(cls):
            continue
        field = cls.Config.__dataclass_fields__["backbone"]
        choices = field.metadata.get("choices") or [field.default]
        if backbone in choices:
            return name
    raise SpecError(f"no image method offers the backbone {backbone!r}")


def random_subject(
    backbone: str,
    image_size: int,
    cache_root: Path | None,
    method_name: str | None = None,
    config: TrainConfig | None = None,
    seed: int = 0,
) -> Subject:
    """The `random` baseline: the network of `method_name` (default: `architecture_for`) with
    `config` (default: its quick preset at `image_size`), freshly initialised from `seed`."""
    method_name = method_name or architecture_for(backbone)
    cls = get_method(method_name)
    if config is None:
        config = build_config(cls.Config, "quick", {"backbone": backbone, "image_size": image_size})
    default_dataset = getattr(cls, "default_dataset", "digits")

    def make() -> SSLMethod:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return runs.new_method(method_name, config, default_dataset, None, cache_root)

    # The features depend on every architecture setting (depth, patch size, stem, ...):
    # the cache is keyed by a digest of the whole config.
    digest = hashlib.sha1(
        json.dumps(dataclasses.asdict(config), sort_keys=True, default=str).encode()
    ).hexdigest()[:10]
    name = f"random-{method_name}-{backbone}-seed{seed}-{digest}"
    folder = None if cache_root is None else cache_root / "features" / name
    return Subject(name, config.image_size, folder, make, config, method_name, backbone)


class HubEmbedder(torch.nn.Module):
    """A Hub model's image tower behind the `embed` that `embed_images` calls: the encoder of
    `engine.inference.encoders.hub_encoder` (its processor resizes and normalises, the model
    gives its pooled output, else the first token, under its own autocast and batch size). The
    model already sits on the device."""

    def __init__(self, encoder: Any) -> None:
        super().__init__()
        self.images = encoder.images
        self.embed_batch = encoder.image_batch or EMBED_BATCH

    def embed(self, images: Tensor) -> Tensor:
        return self.images(images)


HUB_MAX_LOAD = 256  # px: 6,000 images at 256 px hold 1.2 GB; the processor scales up from it


def hub_load_size(model_size: int, dataset: str) -> int:
    """The size a dataset is read at for a Hub model: the model's input size for a procedural
    set (drawn sharp at any size), else at most the set's native size (the model's processor
    scales it up; a CIFAR-size set is not held in memory at 224 px); never above
    HUB_MAX_LOAD (a DINOv2 folder without a processor says 518 px)."""
    info = dataset_info(dataset)
    native = info.get("native_size")
    size = model_size if info.get("procedural") or not native else min(model_size, int(native))
    return int(min(max(8, size), HUB_MAX_LOAD))


def hub_subject(source: str, home_root: Path, cache_root: Path | None, dataset: str) -> Subject:
    """A transformers model from the Hub or a local folder (DINOv2, a ViT, CLIP's vision
    tower, ...) as a subject, loaded now (HubError when it cannot be). Features are cached
    under the cache folder, keyed by the source and, for a folder, its weight files' sizes
    and times, so retraining into the same folder is not served stale features."""
    from engine.inference.attention import ATTENTION
    from engine.inference.encoders import hub_encoder
    from engine.inference.models import load_lens_model

    encoder = hub_encoder(source, home_root)
    if encoder.images is None:
        raise SpecError(
            f"{source} has no image tower ({encoder.info.get('model_type')}); evaluation "
            "needs an image model such as a DINOv2, a ViT or a CLIP"
        )
    embedder = HubEmbedder(encoder)
    stamp = [source, str(encoder.info.get("precision", "fp32"))]
    folder = Path(source).expanduser()
    if folder.is_dir():
        stamp += [
            f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}"
            for f in sorted(folder.rglob("*.safetensors"))
        ]
    digest = hashlib.sha1("|".join(stamp).encode()).hexdigest()[:12]
    slug = "".join(c if c.isalnum() else "-" for c in folder.name or source)[-40:]
    return Subject(
        f"hub {source}",
        hub_load_size(encoder.image_size or 224, dataset),
        None if cache_root is None else cache_root / "features" / f"hub-{slug}-{digest}",
        lambda: embedder,
        backbone=str(encoder.info.get("model_type")),
        make_lens=lambda: lens_at_processor_size(load_lens_model(source, ATTENTION, home_root)),
    )


def lens_at_processor_size(lm: Any) -> Any:
    """A Hub LensModel that runs at its processor's size (DINOv2: 224 px, not its config's 518,
    whose 1,369 tokens would need gigabytes of attention maps per batch); the model is shared
    with the Attention lens's cache, only the size differs."""
    from engine.inference.encoders import processor_size

    size = processor_size(lm.processor)
    if not size or size == lm.image_size or size % lm.patch_size:
        return lm
    return dataclasses.replace(lm, input_size=size)


def pixels_subject(image_size: int, cache_root: Path | None) -> Subject:
    folder = None if cache_root is None else cache_root / "features" / "pixels"
    return Subject("pixels", image_size, folder, None, backbone="pixels")


@torch.no_grad()
def embed_images(
    method: SSLMethod,
    images: Tensor,
    batch_size: int = EMBED_BATCH,
    on_progress: Progress | None = None,
) -> Tensor:
    """(N, 3, H, W) uint8 -> (N, D) float32 with `method.embed` in eval mode, with the
    precision (bf16 autocast or fp32) and memory format the method trained with. A run
    trained in bf16 embeds in fp32 on a device that only emulates bf16: the features agree to
    bf16's rounding, and emulated bf16 is many times slower (engine.hardware)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    method.to(device).eval()
    if getattr(method, "channels_last", False):
        method.to(memory_format=torch.channels_last)
    precision = getattr(getattr(method, "config", None), "precision", "fp32")
    bf16 = precision != "fp32" and hardware.fast_bf16(device.type)
    out = []
    for start in range(0, images.shape[0], batch_size):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            batch = method.embed(images[start : start + batch_size].to(device))
        out.append(batch.float().cpu())
        if on_progress is not None:
            on_progress(min(1.0, (start + batch_size) / images.shape[0]), "embedding")
    return torch.cat(out)


def pixel_features(images: Tensor) -> Tensor:
    """(N, 3, H, W) uint8 -> (N, 3*H*W) float in [0, 1] (a streamed set read in batches)."""
    if is_streamed(images):
        return torch.cat([pixel_features(chunk) for chunk in images.split(EMBED_BATCH)])
    return images.reshape(images.shape[0], -1).float() / 255.0


def features(
    subject: Subject,
    dataset: str,
    cache_root: Path | None = None,
    on_progress: Progress | None = None,
    method: SSLMethod | None = None,
) -> dict[str, tuple[Tensor, Tensor]]:
    """{"train": (x, y), "test": (x, y)} for `dataset` at the subject's image size."""
    out = {}
    for i, split in enumerate(("train", "test")):
        key = (subject.key, str(subject.cache_dir), dataset, split, subject.image_size)
        with _LOCK:
            cached = _MEMORY.get(key)
        if cached is None:
            path = (
                None
                if subject.cache_dir is None
                else (subject.cache_dir / f"{dataset}-{split}-{subject.image_size}px.safetensors")
            )
            cached = _read(path)
            if cached is None:
                data = load_dataset(dataset, split, subject.image_size, cache_dir=cache_root)
                if subject.make_method is None:
                    x = pixel_features(data.images)
                else:
                    if method is None:
                        method = subject.make_method()
                    part = (
                        None
                        if on_progress is None
                        else (
                            lambda f, text, i=i, split=split: on_progress(
                                (i + f) / 2, f"embedding {split}"
                            )
                        )
                    )
                    batch = getattr(method, "embed_batch", EMBED_BATCH)
                    x = embed_images(method, data.images, batch, on_progress=part)
                cached = (x, data.labels.clone())
                _write(path, cached)
            with _LOCK:
                _MEMORY[key] = cached
                while len(_MEMORY) > _MEMORY_ITEMS:
                    _MEMORY.popitem(last=False)
        out[split] = cached
    return out


def _read(path: Path | None) -> tuple[Tensor, Tensor] | None:
    if path is None or not path.exists():
        return None
    try:
        blob = load_file(str(path))
        return blob["features"], blob["labels"]
    except Exception:  # noqa: BLE001 - a damaged cache file is recomputed, not trusted
        return None


def _write(path: Path | None, value: tuple[Tensor, Tensor]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({"features": value[0].contiguous(), "labels": value[1].contiguous()}, str(tmp))
    tmp.replace(path)


def clear_memory_cache() -> None:
    with _LOCK:
        _MEMORY.clear()
