"""Image datasets held in an on-disk store (`engine.data.image_store`), in the catalog.

`register_stored_dataset` makes a store folder loadable by name like any other image dataset:
its splits' metadata (counts, size, class names, captions) is read once, cheaply; the pixels are
read only when a job loads a split. `engine.data.datasets.load_dataset` reads a small split into
memory as it does every other source, and streams a large one from the memory-mapped file
(`PRETEXT_IN_MEMORY_MB`). A store may hold only a train split (STL-10's unlabeled images, say):
it trains, and evaluation says it needs a labelled test split.

A store row in the job store says so with `meta["store"] == 1` (`engine.data.stored`); older
rows of user images (`data.pt`) keep their own loader (`engine.data.user_images`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.data.catalog import DatasetSource, RawImages, register_dataset
from engine.data.image_store import has_split, open_split, split_bytes
from engine.errors import DatasetError


def is_store(path: str | os.PathLike, meta: dict[str, Any]) -> bool:
    """Whether a user dataset row points at a store folder (rather than an older `data.pt`)."""
    return int(meta.get("store", 0) or 0) == 1 or has_split(path, "train")


def _unavailable(folder: Path):
    def unavailable() -> str:
        if has_split(folder, "train"):
            return ""
        return f"its stored images are gone from {folder}; add it again"

    return unavailable


def register_stored_dataset(
    name: str, folder: str | os.PathLike, meta: dict[str, Any] | None = None
) -> DatasetSource:
    """Register (or register again, replacing the earlier entry) a user image dataset whose
    splits are stored in `folder`. `meta` may carry a "description" and a "version"; the rest is
    read from the stored splits. A folder whose train split is missing or damaged is registered
    as unavailable, saying why (the app still starts; adding the dataset again mends it)."""
    meta = dict(meta or {})
    folder = Path(folder)
    try:
        train = open_split(folder, "train")
    except DatasetError as exc:
        return _register_broken(name, folder, meta, str(exc))
    test = open_split(folder, "test") if has_split(folder, "test") else None
    splits = [s for s in (train, test) if s is not None]
    labelled = all(s.labelled for s in splits)
    captioned = train.captions is not None
    size = train.size
    kept = {s.split: (len(s), s.size) for s in splits}
    num_bytes = sum(split_bytes(count, s) for count, s in kept.values())
    class_names = list(train.class_names or (test.class_names if test is not None else []))
    del train, test, splits  # drop the maps: registration holds no file open

    def build(split: str) -> RawImages:
        if split not in kept:
            raise DatasetError(
                f"dataset {name!r} has no {split} split (only {', '.join(kept)}): it trains, "
                "but evaluation needs a labelled test split; evaluate on another labelled "
                "dataset"
            )
        stored = open_split(folder, split)
        return RawImages(
            torch.from_numpy(np.array(stored.images)),
            torch.from_numpy(stored.labels.copy()),
            list(stored.class_names),
            None if stored.captions is None else list(stored.captions),
        )

    num_train, num_test = kept["train"][0], kept.get("test", (0, 0))[0]
    description = meta.get("description") or (
        f"Your images ({num_train + num_test} images at {size} px"
        f"{', labelled' if labelled else ', unlabelled'}"
        f"{', with captions' if captioned else ''}"
        f"{'' if num_test else ', train split only'})"
    )
    _forget_loaded()
    return register_dataset(
        DatasetSource(
            name=name,
            kind="image",
            description=str(description),
            num_train=num_train,
            num_test=num_test,
            num_classes=len(class_names),
            labelled=labelled,
            native_size=size,
            build=build,
            unavailable=_unavailable(folder),
            version=int(meta.get("version", 1)),
            modalities=("image", "image-text") if captioned else (),
            store=str(folder),
            stored_bytes=num_bytes,
        )
    )


def _forget_loaded() -> None:
    """A store registered again under a name may hold other images: drop loaded splits."""
    from engine.data.datasets import clear_memory_cache

    clear_memory_cache()


def _register_broken(name: str, folder: Path, meta: dict[str, Any], reason: str) -> DatasetSource:
    def build(split: str) -> RawImages:
        raise DatasetError(f"dataset {name!r} is not available: {reason}")

    return register_dataset(
        DatasetSource(
            name=name,
            kind="image",
            description="Your images (not readable; add them again)",
            num_train=int(meta.get("num_train", 0)),
            num_test=int(meta.get("num_test", 0)),
            build=build,
            unavailable=lambda: reason,
            store=str(folder),
        )
    )
