"""Image datasets: ``load_dataset`` with a memory and a disk cache, over the catalog's sources.

Which datasets exist, and how each builds its images, is `engine.data.catalog`'s; this module
resizes what a source builds and keeps it. Images are kept as uint8 (N, 3, H, W): four times
smaller than float, and the batched views (``engine.data.views``) turn them into float on the
training device. ``dataset_info`` and ``list_datasets`` are the catalog's, importable from here
too, as the callers that load datasets describe them.
"""

from __future__ import annotations

import functools
import numbers
import os
import pickle
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engine.checks import shown
from engine.data.catalog import (  # noqa: F401
    SPLITS,
    DatasetSource,
    dataset_info,
    get_source,
    list_datasets,
    sources,
)
from engine.errors import DatasetError

MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 1024
# A stored split larger than this at the job's image size is streamed from disk, not held.
IN_MEMORY_ENV, IN_MEMORY_DEFAULT_MB = "PRETEXT_IN_MEMORY_MB", 512
_CACHE_FORMAT = 1  # bump when the layout of the .pt cache files changes


class StreamedImages:
    """The images of a large stored split, read from its memory-mapped file a batch at a time.

    Indexed like the (N, 3, size, size) uint8 tensor it stands for (an int, a slice, an index
    tensor or a boolean mask): the rows are read in sorted order (locality on disk), resized
    with `resize_images` (the very function the in-memory path uses, so a batch is bitwise the
    same either way), and returned on `device`. `to(device)` is a view, copying nothing.
    """

    dtype = torch.uint8

    def __init__(
        self, folder: str, split: str, size: int, resample: str, device: str = "cpu"
    ) -> None:
        from engine.data.image_store import open_split

        self.folder, self.split, self.size, self.resample = folder, split, size, resample
        self.rows = open_split(folder, split).images  # np.memmap (N, 3, S, S)
        self.device = torch.device(device)

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), 3, self.size, self.size))

    def to(self, device: Any, non_blocking: bool = False) -> StreamedImages:
        other = object.__new__(StreamedImages)
        other.__dict__.update(self.__dict__)
        other.device = torch.device(device)
        return other

    def read(self, index: Any) -> torch.Tensor:
        """The rows `index` names, resized, on the CPU (uint8 (B, 3, size, size))."""
        if not isinstance(index, slice) and np.ndim(index) == 0:  # one row: (3, size, size)
            return self.resize(self.read_stored(np.asarray([int(index)])))[0]
        return self.resize(self.read_stored(index))

    def read_stored(self, index: Any) -> torch.Tensor:
        """The rows `index` names at their stored size (uint8 (B, 3, S, S)): disk work only,
        no arithmetic, so a reader thread does not compete with the step for the cores."""
        if isinstance(index, slice):
            return torch.from_numpy(np.array(self.rows[index]))
        if isinstance(index, torch.Tensor):
            index = index.cpu()
            if index.dtype == torch.bool:
                index = index.nonzero().flatten()
            index = index.numpy()
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        index = np.where(index < 0, index + len(self), index)
        return torch.from_numpy(_take(self.rows, index))  # sorted reads: one pass

    def resize(self, rows: torch.Tensor) -> torch.Tensor:
        """Stored rows -> the dataset's size, with the in-memory path's own function."""
        return resize_images(rows, self.size, self.resample)

    def __getitem__(self, index: Any) -> torch.Tensor:
        if isinstance(index, int):
            return self.read(np.asarray([index]))[0].to(self.device)
        return self.read(index).to(self.device)

    def split(self, chunk: int):
        """Consecutive chunks of at most `chunk` images, as `Tensor.split` gives them."""
        return (self[start : start + chunk] for start in range(0, len(self), chunk))

    def subset(self, rows: Any) -> StreamedImages:
        """The images of `rows` (in that order), still read a batch at a time."""
        other = self.to(self.device)
        other.rows = _Rows(self.rows, np.asarray(torch.as_tensor(rows).cpu(), dtype=np.int64))
        return other


class _Rows:
    """Some rows of a memory map, indexed like one (what `StreamedImages.subset` reads)."""

    def __init__(self, rows: Any, index: np.ndarray) -> None:
        self.base, self.index = rows, index
        self.shape = (len(index), *rows.shape[1:])

    def __getitem__(self, index: Any) -> np.ndarray:
        return _take(self.base, self.index[index])


def _take(rows: Any, index: np.ndarray) -> np.ndarray:
    """rows[index] read in sorted order (one pass over the file), returned in `index`'s order."""
    index = np.atleast_1d(index)
    order = np.argsort(index, kind="stable")
    out = np.empty((len(index), *rows.shape[1:]), dtype=np.uint8)
    out[order] = rows[index[order]]
    return out


def is_streamed(images: Any) -> bool:
    return isinstance(images, StreamedImages)


def in_memory_limit() -> int:
    """Bytes a stored split may take at the job's image size and still be held in memory."""
    raw = os.environ.get(IN_MEMORY_ENV, "").strip()
    try:
        megabytes = float(raw) if raw else IN_MEMORY_DEFAULT_MB
    except ValueError:
        raise DatasetError(f"{IN_MEMORY_ENV} must be a number of megabytes, got {raw!r}") from None
    return int(max(0.0, megabytes) * 1024**2)


@dataclass
class ImageDataset:
    """One split of an image dataset, resized and held in memory (or, for a large stored
    split, `images` is a `StreamedImages` reading batches from disk).

    The tensors are shared with the in-memory cache: treat them as read-only.
    """

    name: str
    split: str  # "train" or "test"
    images: torch.Tensor | StreamedImages  # (N, 3, H, W) uint8, contiguous, CPU
    labels: torch.Tensor  # (N,) int64
    class_names: list[str]
    captions: list[str] | None  # one per image, or None
    factors: dict[str, list[str]] | None = None  # nuisance factor -> one value per image
    # (N, H, W) uint8 ground-truth object masks at the images' size (1 = object), where the
    # source draws them (`shapes`); None elsewhere.
    masks: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def image_source(name: str) -> DatasetSource:
    """The catalog's source of an image dataset; a text corpus or an unknown name is refused."""
    source = get_source(name)
    if source.kind != "image":
        raise DatasetError(
            f"{name!r} is a text corpus, not images; text methods read it with "
            "engine.data.text.corpus_texts"
        )
    return source


def resize_images(images: torch.Tensor, size: int, mode: str = "bilinear") -> torch.Tensor:
    """Resize a uint8 batch (N, 3, h, w) to (N, 3, size, size) uint8, antialiased when shrinking."""
    if images.shape[-2:] == (size, size):
        return images.contiguous()
    smooth = mode in ("bilinear", "bicubic")  # the modes that take antialias and align_corners
    options: dict[str, Any] = {"align_corners": False, "antialias": True} if smooth else {}
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], 1024):  # chunks bound the float copy to ~50 MB at 64 px
        chunk = images[start : start + 1024].float()
        resized = F.interpolate(chunk, size=(size, size), mode=mode, **options)
        out[start : start + 1024] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


def resize_masks(masks: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 masks (N, h, w) of 0/1 to (N, size, size): the share of each new pixel
    the object covers (antialiased bilinear), thresholded at one half."""
    if masks.shape[-2:] == (size, size):
        return masks.contiguous()
    out = torch.empty((masks.shape[0], size, size), dtype=torch.uint8)
    for start in range(0, masks.shape[0], 1024):
        chunk = masks[start : start + 1024, None].float()  # (n, 1, h, w)
        cover = F.interpolate(
            chunk, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
        out[start : start + 1024] = (cover[:, 0] >= 0.5).to(torch.uint8)
    return out


def _build(source: DatasetSource, split: str, image_size: int) -> ImageDataset:
    if source.store:
        return _build_stored(source, split, image_size)
    raw = source.build(split)
    return ImageDataset(
        name=source.name,
        split=split,
        images=resize_images(raw.images, image_size, source.resample),
        labels=raw.labels.to(torch.int64).contiguous(),
        class_names=list(raw.class_names),
        captions=raw.captions,
        factors=raw.factors,
        masks=None if raw.masks is None else resize_masks(raw.masks, image_size),
    )


def _build_stored(
    source: DatasetSource, split: str, image_size: int, stream: bool = False
) -> ImageDataset:
    """A stored split: resized a chunk at a time from its memory map into memory (no copy of
    the whole split at its stored size), or, with `stream`, left on disk."""
    from engine.data.image_store import has_split, open_split

    if not has_split(source.store, split):
        source.build(split)  # raises the source's own explanation (e.g. a train-only store)
    stored = open_split(source.store, split)
    if stream:
        images = StreamedImages(source.store, split, image_size, source.resample)
    else:
        images = torch.empty((len(stored), 3, image_size, image_size), dtype=torch.uint8)
        for start in range(0, len(stored), 1024):
            rows = torch.from_numpy(np.array(stored.images[start : start + 1024]))
            images[start : start + 1024] = resize_images(rows, image_size, source.resample)
    return ImageDataset(
        name=source.name,
        split=split,
        images=images,
        labels=torch.from_numpy(stored.labels.copy()),
        class_names=list(stored.class_names),
        captions=None if stored.captions is None else list(stored.captions),
    )


def _read_cache(path: str, source: DatasetSource, split: str) -> ImageDataset | None:
    """The cached split, or None when the file is missing, truncated or from another format."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob.get("format") != _CACHE_FORMAT:
            return None
        return ImageDataset(
            name=source.name,
            split=split,
            images=blob["images"].contiguous(),
            labels=blob["labels"],
            class_names=list(blob["class_names"]),
            captions=blob["captions"],
            factors=blob["factors"],
            masks=blob.get("masks"),
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
        raise DatasetError(
            f"cannot write the dataset cache in {folder!r} ({exc}); "
            "pass a writable cache_dir or none"
        ) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(
                {
                    "format": _CACHE_FORMAT,
                    "images": dataset.images,
                    "labels": dataset.labels,
                    "class_names": dataset.class_names,
                    "captions": dataset.captions,
                    "factors": dataset.factors,
                    "masks": dataset.masks,
                },
                handle,
            )
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


@functools.lru_cache(maxsize=8)
def _load_cached(
    name: str, split: str, image_size: int, cache_dir: str | None, stream: bool = False
) -> ImageDataset:
    source = get_source(name)
    if source.store:  # already on disk, and re-imports keep the name: no .pt cache
        return _build_stored(source, split, image_size, stream=stream)
    if cache_dir is None:
        return _build(source, split, image_size)
    path = os.path.join(cache_dir, f"{name}-{split}-{image_size}px-v{source.version}.pt")
    dataset = _read_cache(path, source, split)
    if dataset is None:
        dataset = _build(source, split, image_size)
        _write_cache(path, dataset)
    return dataset


def _stream(source: DatasetSource, split: str, image_size: int) -> bool:
    """Whether a stored split would take more than `in_memory_limit()` at `image_size`."""
    count = source.num_train if split == "train" else source.num_test
    return count * 3 * image_size * image_size > in_memory_limit()


def load_dataset(
    name: str,
    split: str = "train",
    image_size: int = 32,
    cache_dir: str | os.PathLike[str] | None = None,
) -> ImageDataset:
    """Load one split resized to ``image_size`` x ``image_size`` (antialiased); deterministic.

    Results are cached in memory per argument set, and on disk under ``cache_dir`` when given
    (a ``.pt`` file of tensors, named after the dataset, split, size and source version). A
    stored split over ``PRETEXT_IN_MEMORY_MB`` (512) at ``image_size`` is not read: its
    ``images`` are a `StreamedImages` that reads and resizes the rows a batch asks for.
    """
    source = image_source(name)
    if not isinstance(split, str) or split not in SPLITS:
        raise DatasetError(
            f"unknown split {shown(split)} for dataset {name!r}; use one of: {', '.join(SPLITS)}"
        )
    whole = isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool)
    if not whole or not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise DatasetError(
            f"image_size must be a whole number of pixels from {MIN_IMAGE_SIZE} to "
            f"{MAX_IMAGE_SIZE}, got {image_size!r}"
        )
    reason = source.unavailable()
    if reason:
        raise DatasetError(f"dataset {name!r} is not available: {reason}")
    folder = None if cache_dir is None else os.path.abspath(os.fspath(cache_dir))
    stream = bool(source.store) and _stream(source, split, int(image_size))
    return _load_cached(name, split, int(image_size), folder, stream)


def render_images(
    name: str, count: int, image_size: int, seed: int = 0, chunk: int = 10_000
) -> ImageDataset:
    """``count`` fresh training images of a procedural dataset (shapes), resized as the splits
    are; the same ones for the same arguments, none of them in the test split. A fixed
    dataset has no more images to give: a clear error."""
    source = image_source(name)
    if count < 1:
        raise DatasetError(f"asked to render {count} images; ask for at least one")
    if source.render is None:
        procedural = ", ".join(s.name for s in sources("image") if s.render) or "none"
        raise DatasetError(
            f"{name!r} is a fixed set of images and cannot render more; "
            f"only procedural datasets can ({procedural}); set the count to 0"
        )
    images, labels, captions, factors = [], [], [], {}
    for k, start in enumerate(range(0, count, chunk)):  # bounds the native-size copy
        raw = source.render(min(chunk, count - start), 1_000_003 * (seed + 1) + k)
        images.append(resize_images(raw.images, image_size, source.resample))
        labels.append(raw.labels.to(torch.int64))
        captions += raw.captions or []
        for key, values in (raw.factors or {}).items():
            factors.setdefault(key, []).extend(values)
    return ImageDataset(
        name=name,
        split="train",
        images=torch.cat(images).contiguous(),
        labels=torch.cat(labels),
        class_names=list(raw.class_names),
        captions=captions or None,
        factors=factors or None,
    )


def clear_memory_cache() -> None:
    """Forget the datasets held in memory (the disk cache is kept)."""
    _load_cached.cache_clear()
