"""An image dataset on disk: one uint8 array file per split, memory-mapped when read.

Layout of a store folder (one per dataset):
  <split>.u8            the images, uint8, C order, shape (N, 3, S, S): S is the storage size
  <split>.json          {"version", "count", "size", "class_names", "provenance", "captions"?}
  <split>.labels.npy    int64 (N,) labels (-1 everywhere for an unlabelled split)

Every importer (image folders and zips, torchvision layouts, Hugging Face image datasets) writes
through `SplitWriter`, which writes to temporary names and renames them into place when the
split is complete, so a failed import never leaves a split that looks whole. `open_split` maps
the array read-only: reading a batch touches only its rows, so memory does not grow with the
dataset.

    with SplitWriter(folder, "train", count=n, size=128) as out:
        for i, image in enumerate(images):        # (3, 128, 128) uint8 arrays
            out[i] = image
        out.finish(labels, class_names, provenance={"source": "cifar10"})
    split = open_split(folder, "train")           # split.images: np.memmap (N, 3, 128, 128)
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import DatasetError

STORE_VERSION = 1
MIN_STORE_SIZE, MAX_STORE_SIZE = 32, 512
AUTO_MAX_SIZE = 256  # the automatic storage size is the median shorter side, at most this
# Keep this much disk free beyond what an import writes (logs, checkpoints, the database).
DISK_MARGIN_BYTES = 256 * 1024**2


def split_bytes(count: int, size: int) -> int:
    """Bytes the pixels of `count` images stored at `size` take on disk."""
    return int(count) * 3 * int(size) * int(size)


def check_free_space(folder: Path, needed: int) -> None:
    """Refuse, before anything is decoded, an import whose store would not fit the disk."""
    folder = Path(folder)
    probe = folder if folder.exists() else folder.parent
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed + DISK_MARGIN_BYTES > free:
        raise DatasetError(
            f"the images would take {needed / 1024**3:.2f} GB on disk but only "
            f"{free / 1024**3:.2f} GB is free under {probe}; free some space or import at a "
            "smaller --image-size"
        )


def auto_size(short_sides: list[int]) -> int:
    """The storage size when none is given: the images' median shorter side, at most
    AUTO_MAX_SIZE (256) and at least the store's minimum (32; smaller images are enlarged)."""
    median = int(np.median(short_sides)) if short_sides else AUTO_MAX_SIZE
    return max(MIN_STORE_SIZE, min(AUTO_MAX_SIZE, median))


def check_store_size(size: Any) -> int:
    """A storage size in pixels, 32-512."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise DatasetError(f"image size must be a whole number of pixels, got {size!r}")
    if not MIN_STORE_SIZE <= int(size) <= MAX_STORE_SIZE:
        raise DatasetError(
            f"image size must be from {MIN_STORE_SIZE} to {MAX_STORE_SIZE} pixels, got {size}"
        )
    return int(size)


@dataclass
class StoredSplit:
    """One split of a store, its images memory-mapped read-only."""

    folder: Path
    split: str
    images: np.memmap  # (N, 3, S, S) uint8
    labels: np.ndarray  # (N,) int64; -1 when unlabelled
    class_names: list[str]
    size: int
    captions: list[str] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def labelled(self) -> bool:
        return bool(len(self.class_names)) and bool((self.labels >= 0).all())


def _paths(folder: Path, split: str) -> tuple[Path, Path, Path]:
    return folder / f"{split}.u8", folder / f"{split}.json", folder / f"{split}.labels.npy"


def has_split(folder: str | os.PathLike, split: str) -> bool:
    return all(p.exists() for p in _paths(Path(folder), split))


def open_split(folder: str | os.PathLike, split: str) -> StoredSplit:
    """Map a stored split read-only; a missing or damaged one is a DatasetError naming it."""
    folder = Path(folder)
    pixels, meta_path, labels_path = _paths(folder, split)
    if not has_split(folder, split):
        raise DatasetError(f"no {split!r} split stored in {folder}; add the dataset again")
    try:
        meta = json.loads(meta_path.read_text())
        count, size = int(meta["count"]), int(meta["size"])
        labels = np.load(labels_path, allow_pickle=False)
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetError(
            f"the stored {split!r} split in {folder} is damaged ({exc}); add the dataset again"
        ) from None
    if meta.get("version") != STORE_VERSION:
        raise DatasetError(
            f"{folder} was stored by another version of the studio (format "
            f"{meta.get('version')}, this one reads {STORE_VERSION}); add the "
            "dataset again"
        )
    if pixels.stat().st_size != split_bytes(count, size) or labels.shape != (count,):
        raise DatasetError(
            f"the stored {split!r} split in {folder} is truncated; add the dataset again"
        )
    images = np.memmap(pixels, dtype=np.uint8, mode="r", shape=(count, 3, size, size))
    return StoredSplit(
        folder,
        split,
        images,
        labels.astype(np.int64, copy=False),
        list(meta.get("class_names", [])),
        size,
        meta.get("captions"),
        dict(meta.get("provenance", {})),
    )


class SplitWriter:
    """Writes one split's images into a memory-mapped file under a temporary name; `finish`
    renames it into place with its labels and metadata. Leaving the `with` block without
    `finish` (an error) removes what was written."""

    def __init__(self, folder: str | os.PathLike, split: str, count: int, size: int) -> None:
        if count < 1:
            raise DatasetError(f"the {split!r} split holds no images")
        self.folder, self.split = Path(folder), split
        self.count, self.size = int(count), check_store_size(size)
        self.folder.mkdir(parents=True, exist_ok=True)
        check_free_space(self.folder, split_bytes(self.count, self.size))
        pixels, _, _ = _paths(self.folder, split)
        self._tmp = pixels.with_name(f".{pixels.name}.{os.getpid()}.tmp")
        self.images = np.memmap(
            self._tmp, dtype=np.uint8, mode="w+", shape=(self.count, 3, self.size, self.size)
        )
        self._done = False

    def __setitem__(self, index: int | slice, value: np.ndarray) -> None:
        self.images[index] = value

    def finish(
        self,
        labels: np.ndarray | list[int],
        class_names: list[str],
        captions: list[str] | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> StoredSplit:
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (self.count,):
            raise ValueError(f"{len(labels)} labels for {self.count} images")
        if captions is not None and len(captions) != self.count:
            raise ValueError(f"{len(captions)} captions for {self.count} images")
        self.images.flush()
        del self.images
        pixels, meta_path, labels_path = _paths(self.folder, self.split)
        tmp_labels = labels_path.with_name(f".{labels_path.name}.tmp.npy")
        np.save(tmp_labels, labels, allow_pickle=False)
        meta = {
            "version": STORE_VERSION,
            "count": self.count,
            "size": self.size,
            "class_names": list(class_names),
            "provenance": dict(provenance or {}),
        }
        if captions is not None:
            meta["captions"] = list(captions)
        tmp_meta = meta_path.with_name(f".{meta_path.name}.tmp")
        tmp_meta.write_text(json.dumps(meta))
        # The metadata goes last: a split counts as stored once its .json exists.
        os.replace(self._tmp, pixels)
        os.replace(tmp_labels, labels_path)
        os.replace(tmp_meta, meta_path)
        self._done = True
        return open_split(self.folder, self.split)

    def __enter__(self) -> SplitWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._done:
            if hasattr(self, "images"):
                del self.images
            self._tmp.unlink(missing_ok=True)
