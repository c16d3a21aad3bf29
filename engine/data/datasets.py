"""Image datasets: a registry of sources, and ``load_dataset`` with a memory and a disk cache.

A source is a small descriptor (``DatasetSource``): its numbers for the UI, a cheap availability
check, and a ``build(split)`` that returns native-resolution uint8 images. User folders,
torchvision and Hugging Face datasets are added later by registering one more descriptor; nothing
else here changes. Images are kept as uint8 (N, 3, H, W): four times smaller than float, and the
batched views (``engine.data.views``) turn them into float on the training device.
"""
from __future__ import annotations

import functools
import numbers
import os
import pickle
import tempfile
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from engine.checks import shown
from engine.data import digits, shapes
from engine.errors import DatasetError

SPLITS: tuple[str, ...] = ("train", "test")
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 1024
_CACHE_FORMAT = 1  # bump when the layout of the .pt cache files changes


@dataclass
class ImageDataset:
    """One split of an image dataset, resized and held in memory.

    The tensors are shared with the in-memory cache: treat them as read-only.
    """

    name: str
    split: str  # "train" or "test"
    images: torch.Tensor  # (N, 3, H, W) uint8, contiguous, CPU
    labels: torch.Tensor  # (N,) int64
    class_names: list[str]
    captions: list[str] | None  # one per image, or None
    factors: dict[str, list[str]] | None = None  # nuisance factor -> one value per image

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class RawImages:
    """What a source builds: one split at its native resolution."""

    images: torch.Tensor  # (N, 3, h, w) uint8
    labels: torch.Tensor  # (N,) int64
    class_names: list[str]
    captions: list[str] | None = None
    factors: dict[str, list[str]] | None = None


def _always_available() -> str:
    return ""


@dataclass(frozen=True)
class DatasetSource:
    """A registered dataset: what ``list_datasets`` shows and how to build a split."""

    name: str
    description: str  # one line, shown in the UI
    num_train: int
    num_test: int
    num_classes: int
    labelled: bool
    native_size: int  # px, the side of the images ``build`` returns
    build: Callable[[str], RawImages]  # split -> native images; may be slow
    unavailable: Callable[[], str] = _always_available  # "" or why not; must be cheap
    resample: str = "bilinear"  # interpolation used to reach the requested image_size
    version: int = 1  # bump when ``build`` output changes: old disk caches are then ignored
    kind: str = "image"
    # What methods may train on it: a method's `modality` must be listed (default: `kind`).
    # `shapes` is also "image-text" (CLIP); the text corpora are "text".
    modalities: tuple[str, ...] = ()
    # The view recipe (engine.data.views.DOMAINS) an `augmentation="auto"` job gets here.
    augmentation: str = "natural"
    # Procedural sources: (count, seed) -> that many more native images, never the splits'.
    render: Callable[[int, int], RawImages] | None = None


_SOURCES: dict[str, DatasetSource] = {}


def register_dataset(source: DatasetSource) -> DatasetSource:
    """Add a dataset source; a second source under one name is refused."""
    if source.name in _SOURCES:
        raise DatasetError(f"a dataset named {source.name!r} is already registered; "
                           "pick another name")
    _SOURCES[source.name] = source
    return source


def _source(name: str) -> DatasetSource:
    if not isinstance(name, str) or name not in _SOURCES:
        known = ", ".join(sorted(_SOURCES))
        raise DatasetError(f"unknown dataset {shown(name)}; known datasets: {known}")
    return _SOURCES[name]


def dataset_info(name: str) -> dict[str, Any]:
    """The ``list_datasets`` entry of one dataset; an unknown name raises ``DatasetError``."""
    source = _source(name)
    reason = source.unavailable()
    return {
        "name": source.name, "kind": source.kind, "description": source.description,
        "available": not reason, "reason": reason,
        "num_train": source.num_train, "num_test": source.num_test,
        "num_classes": source.num_classes, "labelled": source.labelled,
        "native_size": source.native_size,
        "modalities": list(source.modalities or (source.kind,)),
        "augmentation": source.augmentation,
        "procedural": source.render is not None,  # can render more training images
    }


def list_datasets() -> list[dict[str, Any]]:
    """One dict per registered dataset (see ``dataset_info``); generates no images."""
    return [dataset_info(name) for name in _SOURCES]


def resize_images(images: torch.Tensor, size: int, mode: str = "bilinear") -> torch.Tensor:
    """Resize a uint8 batch (N, 3, h, w) to (N, 3, size, size) uint8, antialiased when shrinking."""
    if images.shape[-2:] == (size, size):
        return images.contiguous()
    smooth = mode in ("bilinear", "bicubic")  # the modes that take antialias and align_corners
    options: dict[str, Any] = {"align_corners": False, "antialias": True} if smooth else {}
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], 1024):  # chunks bound the float copy to ~50 MB at 64 px
        chunk = images[start:start + 1024].float()
        resized = F.interpolate(chunk, size=(size, size), mode=mode, **options)
        out[start:start + 1024] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _build(source: DatasetSource, split: str, image_size: int) -> ImageDataset:
    raw = source.build(split)
    return ImageDataset(
        name=source.name, split=split,
        images=resize_images(raw.images, image_size, source.resample),
        labels=raw.labels.to(torch.int64).contiguous(),
        class_names=list(raw.class_names), captions=raw.captions, factors=raw.factors,
    )


def _read_cache(path: str, source: DatasetSource, split: str) -> ImageDataset | None:
    """The cached split, or None when the file is missing, truncated or from another format."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob.get("format") != _CACHE_FORMAT:
            return None
        return ImageDataset(
            name=source.name, split=split, images=blob["images"].contiguous(),
            labels=blob["labels"], class_names=list(blob["class_names"]),
            captions=blob["captions"], factors=blob["factors"],
        )
    except FileNotFoundError:
        return None
    except (OSError, RuntimeError, EOFError, KeyError, AttributeError, pickle.UnpicklingError):
        return None  # a damaged cache is rebuilt rather than trusted


def _write_cache(path: str, dataset: ImageDataset) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    except OSError as exc:
        raise DatasetError(f"cannot write the dataset cache in {folder!r} ({exc}); "
                           "pass a writable cache_dir or none") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save({
                "format": _CACHE_FORMAT, "images": dataset.images, "labels": dataset.labels,
                "class_names": dataset.class_names, "captions": dataset.captions,
                "factors": dataset.factors,
            }, handle)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, split: str, image_size: int, cache_dir: str | None) -> ImageDataset:
    source = _SOURCES[name]
    if cache_dir is None:
        return _build(source, split, image_size)
    path = os.path.join(cache_dir, f"{name}-{split}-{image_size}px-v{source.version}.pt")
    dataset = _read_cache(path, source, split)
    if dataset is None:
        dataset = _build(source, split, image_size)
        _write_cache(path, dataset)
    return dataset


def load_dataset(name: str, split: str = "train", image_size: int = 32,
                 cache_dir: str | os.PathLike[str] | None = None) -> ImageDataset:
    """Load one split resized to ``image_size`` x ``image_size`` (antialiased); deterministic.

    Results are cached in memory per argument set, and on disk under ``cache_dir`` when given
    (a ``.pt`` file of tensors, named after the dataset, split, size and source version).
    """
    source = _source(name)
    if not isinstance(split, str) or split not in SPLITS:
        raise DatasetError(f"unknown split {shown(split)} for dataset {name!r}; "
                           f"use one of: {', '.join(SPLITS)}")
    whole = isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool)
    if not whole or not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise DatasetError(f"image_size must be a whole number of pixels from {MIN_IMAGE_SIZE} to "
                           f"{MAX_IMAGE_SIZE}, got {image_size!r}")
    reason = source.unavailable()
    if reason:
        raise DatasetError(f"dataset {name!r} is not available: {reason}")
    folder = None if cache_dir is None else os.path.abspath(os.fspath(cache_dir))
    return _load_cached(name, split, int(image_size), folder)


def render_images(name: str, count: int, image_size: int, seed: int = 0,
                  chunk: int = 10_000) -> ImageDataset:
    """``count`` fresh training images of a procedural dataset (shapes), resized as the splits
    are; the same ones for the same arguments, none of them in the test split. A fixed
    dataset has no more images to give: a clear error."""
    source = _source(name)
    if count < 1:
        raise DatasetError(f"asked to render {count} images; ask for at least one")
    if source.render is None:
        procedural = ", ".join(n for n, s in _SOURCES.items() if s.render) or "none"
        raise DatasetError(f"{name!r} is a fixed set of images and cannot render more; "
                           f"only procedural datasets can ({procedural}); set the count to 0")
    images, labels, captions, factors = [], [], [], {}
    for k, start in enumerate(range(0, count, chunk)):  # bounds the native-size copy
        raw = source.render(min(chunk, count - start), 1_000_003 * (seed + 1) + k)
        images.append(resize_images(raw.images, image_size, source.resample))
        labels.append(raw.labels.to(torch.int64))
        captions += raw.captions or []
        for key, values in (raw.factors or {}).items():
            factors.setdefault(key, []).extend(values)
    return ImageDataset(name=name, split="train", images=torch.cat(images).contiguous(),
                        labels=torch.cat(labels), class_names=list(raw.class_names),
                        captions=captions or None, factors=factors or None)


def clear_memory_cache() -> None:
    """Forget the datasets held in memory (the disk cache is kept)."""
    _load_cached.cache_clear()


# --- builtin sources -------------------------------------------------------------------------

def _build_shapes(split: str) -> RawImages:
    count = shapes.NUM_TRAIN if split == "train" else shapes.NUM_TEST
    batch = shapes.generate_shapes(count, seed=shapes.SPLIT_SEEDS[split])
    return RawImages(batch.images, batch.labels, list(shapes.SHAPE_NAMES), batch.captions,
                     batch.factors)


def _render_shapes(count: int, seed: int) -> RawImages:
    if seed in shapes.SPLIT_SEEDS.values():
        raise DatasetError(f"seed {seed} is a split's own; pick another")
    batch = shapes.generate_shapes(count, seed=seed)
    return RawImages(batch.images, batch.labels, list(shapes.SHAPE_NAMES), batch.captions,
                     batch.factors)


def _build_digits(split: str) -> RawImages:
    images, labels = digits.load_digits_split(split)
    return RawImages(images, labels, list(digits.CLASS_NAMES), digits.captions_for(labels))


register_dataset(DatasetSource(
    name="shapes",
    description="Procedural coloured shapes with captions; colour, size, place and background vary",
    num_train=shapes.NUM_TRAIN, num_test=shapes.NUM_TEST, num_classes=len(shapes.SHAPE_NAMES),
    labelled=True, native_size=shapes.NATIVE_SIZE, build=_build_shapes,
    modalities=("image", "image-text"), version=2, augmentation="synthetic",
    render=_render_shapes,
))
register_dataset(DatasetSource(
    name="digits",
    description="scikit-learn's 1,797 real 8x8 handwritten digits (0-9), upsampled",
    num_train=digits.NUM_TRAIN, num_test=digits.NUM_TEST, num_classes=len(digits.CLASS_NAMES),
    labelled=True, native_size=digits.NATIVE_SIZE, build=_build_digits,
    unavailable=digits.unavailable_reason, resample="bicubic",
))


# --- text corpora (engine/data/text.py): listed here, read with engine.data.text -------------

def _text_only(name: str) -> Callable[[str], RawImages]:
    def build(split: str) -> RawImages:
        raise DatasetError(f"{name!r} is a text corpus, not images; text methods read it with "
                           "engine.data.text.corpus_texts")
    return build


from engine.data import text as _text  # noqa: E402  (text imports this module lazily only)

for _corpus in _text.CORPORA.values():
    register_dataset(DatasetSource(
        name=_corpus.name, description=_corpus.description, num_train=_corpus.num_train,
        num_test=_corpus.num_test, num_classes=0, labelled=False, native_size=0,
        build=_text_only(_corpus.name), kind="text", modalities=("text",)))
