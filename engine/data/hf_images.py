"""Hugging Face image datasets (the `datasets` library) into image stores.

    python -m engine datasets --add DIR_OR_NAME [--name N] [--split S] [--image-column C]
                              [--label-column L] [--image-size S]

The source is a folder written by `save_to_disk`, or a Hub name when the Hub can be reached;
offline, a Hub name is looked up in the local cache only and a missing one fails at once with
the message the text path gives (`user_text.offline_message`).

- The image column is the one asked for, else the one column with the `Image` feature; a
  dataset with none is refused with its columns listed.
- The labels are the column asked for, else the first `ClassLabel` column (class names from it);
  an integer or string column named as labels gets its sorted values as class names. No label
  column: the dataset is stored unlabelled (it trains; evaluation needs labels).
- Train is `split` (default `train`, else the first); test is the dataset's own `test` split
  when there is one (else `validation`), otherwise a seeded 10% of the train split held out.
- Images are decoded from their bytes; an image stored only as a file path is read only where
  `may_read(path)` allows it (the web app: inside its data roots). Each is resized (shorter side,
  then a centre crop) to `image_size`, default min(256, the median short side of a sample).

The splits are written with `image_store.SplitWriter` into a staged folder
(`user_data.staged_dataset`): a failed import leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.data import user_text
from engine.data.image_store import auto_size, check_store_size, has_split, open_split
from engine.data.tv_datasets import (
    Progress,
    Split,
    counter,
    decode_image,
    resize_square,
    write_split,
)
from engine.data.user_data import check_name, folder_key, staged_dataset
from engine.data.user_text import datasets_library, is_saved_dataset
from engine.errors import DatasetError

HOLD_OUT, HOLD_OUT_SEED = 0.1, 0
TEST_SPLITS = ("test", "validation")
MAX_ROWS = 2_000_000


@dataclass
class HfImageReport:
    name: str
    source: str
    size: int
    num_train: int
    num_test: int
    class_names: list[str]
    image_column: str
    label_column: str
    detail: list[str] = field(default_factory=list)

    def message(self) -> str:
        labels = (
            f"{len(self.class_names)} classes from '{self.label_column}'"
            if self.class_names
            else "no labels"
        )
        return (
            f"Added image dataset '{self.name}' from Hugging Face {self.source}: "
            f"{self.num_train:,} train, {self.num_test:,} test at {self.size} px "
            f"(images from '{self.image_column}', {labels}; {'; '.join(self.detail)})."
        )


def load_hf(ref: str) -> Any:
    """A DatasetDict or Dataset for a saved folder or a Hub name (offline: the cache only)."""
    return user_text.load_hf(ref, "uoft-cs/cifar10")


def image_columns(dataset: Any) -> list[str]:
    datasets = datasets_library()
    features = getattr(dataset, "features", None) or {}
    return [n for n, f in features.items() if isinstance(f, datasets.Image)]


def has_image_column(ref: str | os.PathLike) -> bool:
    """Whether a saved folder holds a dataset with an `Image` column (cheap: memory-mapped)."""
    path = Path(ref).expanduser()
    if not is_saved_dataset(path):
        return False
    try:
        loaded = load_hf(str(path))
    except DatasetError:
        return False
    first = next(iter(loaded.values())) if hasattr(loaded, "keys") else loaded
    return bool(image_columns(first))


def _pick_image_column(dataset: Any, column: str | None, label: str) -> str:
    every = list(dataset.features)
    found = image_columns(dataset)
    if column:
        if column not in every:
            raise DatasetError(f"{label} has no column {column!r}; its columns: {', '.join(every)}")
        if column not in found:
            raise DatasetError(
                f"column {column!r} of {label} holds no images; image columns: "
                f"{', '.join(found) or 'none'}"
            )
        return column
    if not found:
        raise DatasetError(
            f"{label} has no image column (its columns: {', '.join(every)}); add a text "
            "column as a text dataset instead, or name the image column"
        )
    if len(found) > 1:
        raise DatasetError(f"{label} has several image columns ({', '.join(found)}); choose one")
    return found[0]


def _labels(dataset: Any, column: str | None, label: str) -> tuple[str, list[str], Callable]:
    """(the label column or "", class names, value -> class index)."""
    datasets = datasets_library()
    features = dataset.features
    if not column:
        column = next((n for n, f in features.items() if isinstance(f, datasets.ClassLabel)), "")
        if not column:
            return "", [], lambda value: -1
    if column not in features:
        raise DatasetError(f"{label} has no column {column!r}; its columns: {', '.join(features)}")
    feature = features[column]
    if isinstance(feature, datasets.ClassLabel):
        names = list(feature.names)
        return column, names, lambda value: -1 if value is None or value < 0 else int(value)
    dtype = getattr(feature, "dtype", "")
    if not (str(dtype).startswith(("int", "uint")) or dtype in ("string", "large_string")):
        raise DatasetError(
            f"column {column!r} of {label} holds {dtype or type(feature).__name__}, not labels "
            "(class labels, whole numbers or strings)"
        )
    values = sorted({v for v in dataset[column] if v is not None}, key=lambda v: (str(type(v)), v))
    if len(values) > 10_000:
        raise DatasetError(f"column {column!r} of {label} holds {len(values)} distinct values")
    index = {v: i for i, v in enumerate(values)}
    return column, [str(v) for v in values], lambda value: index.get(value, -1)


def _decoded_rows(dataset: Any, column: str) -> Any:
    datasets = datasets_library()
    return dataset.cast_column(column, datasets.Image(decode=False))


def _open(value: Any, row: int, label: str, may_read: Callable[[str], bool]) -> np.ndarray:
    where = f"{label} row {row}"
    if isinstance(value, dict):
        if value.get("bytes"):
            return decode_image(io.BytesIO(value["bytes"]), where)
        path = value.get("path")
        if path:
            if not may_read(path):
                raise DatasetError(
                    f"{where} names the image file {path}, outside the folders this studio "
                    "may read; save the dataset with its images embedded"
                )
            return decode_image(path, where)
    raise DatasetError(f"{where} holds no image")


def _short_sides(rows: Any, column: str, label: str, may_read, sample: int = 200) -> list[int]:
    """The shorter sides of up to `sample` rows' images, spread over the split."""
    step = max(1, len(rows) // sample)
    sides = []
    for i in range(0, len(rows), step)[:sample]:
        try:
            image = _open(rows[i][column], i, label, may_read)
        except DatasetError:
            continue
        sides.append(min(image.shape[1:]))
    return sides


def _split_of(
    rows: Any, indices: np.ndarray, column: str, size_of, label: str, may_read, labels: np.ndarray
) -> Split:
    def chunks() -> Iterator[np.ndarray]:
        whole = len(indices) == len(rows) and bool((indices == np.arange(len(rows))).all())
        part = (rows if whole else rows.select(indices)).select_columns([column])
        row = 0
        for batch in part.iter(batch_size=256):  # Arrow batches, not one lookup per row
            for value in batch[column]:
                image = _open(value, int(indices[row]), label, may_read)
                yield resize_square(image[None], size_of())
                row += 1

    return Split(len(indices), chunks, labels, [])


def import_hf_images(
    ref: str,
    name: str,
    datasets_dir: Path,
    split: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    image_size: int | None = None,
    may_read: Callable[[str], bool] = lambda path: True,
    on_progress: Progress | None = None,
) -> HfImageReport:
    """Store a Hugging Face image dataset as image dataset `name` (train and test splits);
    `on_progress(fraction, text)` hears the decoding."""
    name = check_name(name)
    ref = (ref or "").strip()
    if not ref:
        raise DatasetError(
            "name a Hugging Face dataset (a folder saved with save_to_disk, or a Hub name)"
        )
    if image_size is not None:
        image_size = check_store_size(image_size)
    key = _saved_folder_key(ref, split, image_column, label_column, image_size)
    reused = _reused(Path(datasets_dir) / name, key)
    if reused is not None:  # the same saved folder with the same choices: nothing to decode
        if on_progress is not None:
            on_progress(1.0, "the same dataset as before, store reused")
        return reused
    loaded = load_hf(ref)
    if hasattr(loaded, "keys"):
        names = list(loaded.keys())
        chosen = (split or "").strip() or ("train" if "train" in names else names[0])
        if chosen not in names:
            raise DatasetError(f"{ref} has no split {chosen!r}; its splits: {', '.join(names)}")
        test_name = next((s for s in TEST_SPLITS if s in names and s != chosen), None)
        train = loaded[chosen]
        test = loaded[test_name] if test_name else None
    else:
        if (split or "").strip() not in ("", "train"):
            raise DatasetError(f"{ref} holds one split; leave the split empty")
        chosen, test_name, train, test = "train", None, loaded, None
    column = _pick_image_column(train, (image_column or "").strip() or None, ref)
    label_col, class_names, to_index = _labels(train, (label_column or "").strip() or None, ref)
    if test is not None and column not in test.features:
        test, test_name = None, None
    if len(train) + (len(test) if test is not None else 0) > MAX_ROWS:
        raise DatasetError(f"{ref} holds more than {MAX_ROWS:,} images")
    train_rows = _decoded_rows(train, column)
    size = image_size or auto_size(_short_sides(train_rows, column, ref, may_read))
    size = check_store_size(size)

    def labels_of(dataset: Any) -> np.ndarray:
        if not label_col or label_col not in dataset.features:
            return np.full(len(dataset), -1, dtype=np.int64)
        return np.array([to_index(v) for v in dataset[label_col]], dtype=np.int64)

    train_labels = labels_of(train)
    detail = [f"train from split '{chosen}'"]
    if test is not None:
        test_rows = _decoded_rows(test, column)
        test_labels = labels_of(test)
        parts = [
            _split_of(
                train_rows, np.arange(len(train)), column, lambda: size, ref, may_read, train_labels
            ),
            _split_of(
                test_rows, np.arange(len(test)), column, lambda: size, ref, may_read, test_labels
            ),
        ]
        detail.append(f"test from split '{test_name}'")
    else:
        if len(train) < 2:
            raise DatasetError(f"{ref} split {chosen!r} holds {len(train)} image(s): too few")
        order = np.random.default_rng(HOLD_OUT_SEED).permutation(len(train))
        n_test = max(1, round(len(train) * HOLD_OUT))
        test_idx, train_idx = np.sort(order[:n_test]), np.sort(order[n_test:])
        parts = [
            _split_of(
                train_rows, train_idx, column, lambda: size, ref, may_read, train_labels[train_idx]
            ),
            _split_of(
                train_rows, test_idx, column, lambda: size, ref, may_read, train_labels[test_idx]
            ),
        ]
        detail.append(f"test a seeded {HOLD_OUT:.0%} held out of it")
    labelled = bool(class_names) and all((p.labels >= 0).all() for p in parts)
    for part in parts:
        part.class_names = class_names if labelled else []
        if not labelled:
            part.labels = np.full(part.count, -1, dtype=np.int64)
    report = HfImageReport(
        name,
        ref,
        size,
        parts[0].count,
        parts[1].count,
        class_names if labelled else [],
        column,
        label_col if labelled else "",
        detail,
    )
    provenance = {
        "source": "huggingface",
        "ref": ref,
        "split": chosen,
        "image_column": column,
        "key": key,
        "report": dataclasses.asdict(report),
    }
    on_rows = counter(sum(p.count for p in parts), on_progress, "images decoded")
    with staged_dataset(datasets_dir, name) as (staged, _):
        for split_name, part in zip(("train", "test"), parts):
            write_split(staged, split_name, part, size, provenance, on_rows)
    return report


def _saved_folder_key(
    ref: str,
    split: str | None,
    image_column: str | None,
    label_column: str | None,
    image_size: int | None,
) -> str | None:
    """What a re-add compares, for a saved folder: sha256 over its files (relative path, size,
    modification time) and the choices; None for a Hub name (it may change upstream)."""
    folder = Path(ref).expanduser()
    if not folder.is_dir():
        return None
    choices = f"{split or ''}|{image_column or ''}|{label_column or ''}|{image_size or 'auto'}"
    return folder_key(folder, f"huggingface-images v1 {choices}")


def _reused(folder: Path, key: str | None) -> HfImageReport | None:
    """The report of the store in `folder` when it was imported with the same key."""
    if key is None or not has_split(folder, "train"):
        return None
    try:
        provenance = open_split(folder, "train").provenance
        if provenance.get("key") != key or not has_split(folder, "test"):
            return None
        return HfImageReport(**provenance["report"])
    except (DatasetError, KeyError, TypeError):
        return None
