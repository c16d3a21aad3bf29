"""torchvision datasets from a root folder in their standard on-disk layouts, into image stores.

    python -m engine datasets --add torchvision:CIFAR10 --root DIR [--name N] [--download]
                              [--image-size S]

Supported: CIFAR10, CIFAR100, STL10, MNIST, FashionMNIST, SVHN, Imagenette. Each is read from
the folder torchvision's own class uses under `root` (`LAYOUTS` says which files), with small
readers of our own: torchvision's CIFAR, STL-10 and SVHN classes check the md5 sums of the
official files, which a copy or a test file fails. `download=True` calls torchvision's
downloader first (it needs the network); without it a missing file fails at once, naming the
layout to put in place.

- CIFAR's batches are pickles. They are read ONLY through `_CifarUnpickler`, which admits the
  numpy reconstruct types the batches hold and refuses any other global (a plain `pickle.load`
  would run whatever the file names). The web app reads them only from a folder inside its
  data roots, never from an upload (`engine.api.Studio.add_torchvision_dataset`).
- STL-10: `<name>` holds the labelled `train` (5,000) and `test` (8,000) splits, for
  evaluation; when `unlabeled_X.bin` is there, `<name>-unlabeled` holds its 100,000 images as a
  train-only, unlabelled store, for pretraining (evaluate it on `<name>`).
- MNIST and FashionMNIST (idx files, gzipped or not) are grey: stored as three equal channels,
  at 32 px by default (the store's minimum; the native 28 is below it).
- Imagenette: `train/` and `val/` folders of class folders (WordNet ids, named as torchvision
  names them), stored at min(256, the median short side) unless a size is given.

Each split is written with `image_store.SplitWriter` into a staged dataset folder
(`user_data.staged_dataset`): a failure leaves nothing half-imported behind.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engine.data.image_store import (
    SplitWriter,
    auto_size,
    check_store_size,
    has_split,
    open_split,
)
from engine.data.user_data import check_name, folder_key, staged_dataset
from engine.errors import DatasetError

MAX_PICKLE_BYTES = 256 * 1024**2  # a CIFAR batch is ~31 MB; refuse anything far beyond
CHUNK = 1000  # images read and written at a time
RESIZE_BYTES = 64 * 1024**2  # float pixels resized at a time
IMAGENETTE_CLASSES = {
    "n01440764": "tench",
    "n02102040": "English springer",
    "n02979186": "cassette player",
    "n03000684": "chain saw",
    "n03028079": "church",
    "n03394916": "French horn",
    "n03417042": "garbage truck",
    "n03425413": "gas pump",
    "n03445777": "golf ball",
    "n03888257": "parachute",
}
IMAGENETTE_FOLDERS = ("imagenette2", "imagenette2-320", "imagenette2-160")
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".webp"}
MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
STL10_CLASSES = [
    "airplane",
    "bird",
    "car",
    "cat",
    "deer",
    "dog",
    "horse",
    "monkey",
    "ship",
    "truck",
]
# What each dataset's root must hold (the layout torchvision's class reads and downloads).
LAYOUTS = {
    "CIFAR10": "cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}",
    "CIFAR100": "cifar-100-python/{train, test, meta}",
    "STL10": "stl10_binary/{train_X.bin, train_y.bin, test_X.bin, test_y.bin} "
    "(+ unlabeled_X.bin, class_names.txt)",
    "MNIST": "MNIST/raw/{train-images-idx3-ubyte, train-labels-idx1-ubyte, "
    "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte} (each may end in .gz)",
    "FashionMNIST": "FashionMNIST/raw/{train-images-idx3-ubyte, train-labels-idx1-ubyte, "
    "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte} (each may end in .gz)",
    "SVHN": "{train_32x32.mat, test_32x32.mat}",
    "Imagenette": "imagenette2[-320|-160]/{train,val}/<class folder>/*.JPEG "
    "(or train/ and val/ in the root itself)",
}
NATIVE = {"CIFAR10": 32, "CIFAR100": 32, "STL10": 96, "MNIST": 32, "FashionMNIST": 32, "SVHN": 32}
SUPPORTED = tuple(LAYOUTS)


def supported_datasets() -> list[str]:
    return list(SUPPORTED)


def canonical_name(dataset: str) -> str:
    """The supported name `dataset` means (case-insensitive, 'torchvision:' dropped)."""
    text = str(dataset or "").strip()
    text = text.split(":", 1)[1] if text.lower().startswith("torchvision:") else text
    for known in SUPPORTED:
        if text.lower() == known.lower():
            return known
    raise DatasetError(f"unknown torchvision dataset {text!r}; supported: {', '.join(SUPPORTED)}")


# ---- one split's images, in chunks -----------------------------------------------------------


@dataclass
class Split:
    """One split to store: `count` images as (n, 3, h, w) uint8 chunks, and their labels."""

    count: int
    chunks: Callable[[], Iterator[np.ndarray]]
    labels: np.ndarray  # (count,) int64, -1 when unlabelled
    class_names: list[str]


def _array_chunks(array: np.ndarray, layout: Callable[[np.ndarray], np.ndarray]):
    """Chunks of an (N, ...) array (maybe memory-mapped), each through `layout` to (n,3,h,w)."""

    def chunks() -> Iterator[np.ndarray]:
        for start in range(0, len(array), CHUNK):
            yield layout(np.asarray(array[start : start + CHUNK]))

    return chunks


def resize_square(chunk: np.ndarray, size: int) -> np.ndarray:
    """(n, 3, h, w) uint8 -> (n, 3, size, size): shorter side to `size`, then a centre crop."""
    n, _, h, w = chunk.shape
    if h == size and w == size:
        return chunk
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    top, left = (nh - size) // 2, (nw - size) // 2
    out = np.empty((n, 3, size, size), dtype=np.uint8)
    # Float copies of a few images at a time: memory stays near RESIZE_BYTES at any size.
    step = max(1, RESIZE_BYTES // (12 * max(h * w, nh * nw)))
    for start in range(0, n, step):
        part = torch.from_numpy(np.ascontiguousarray(chunk[start : start + step])).float()
        part = F.interpolate(
            part, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False
        )
        part = part[:, :, top : top + size, left : left + size]
        out[start : start + step] = part.round().clamp(0, 255).to(torch.uint8).numpy()
    return out


Progress = Callable[[float, str], None]  # (fraction done, what is being done)


def counter(total: int, on_progress: Progress | None, label: str) -> Callable[[int], None]:
    """`on_rows(n)`: n more images written; reports to `on_progress` at most 4 times a second
    (and at the end)."""
    done, last = [0], [0.0]

    def on_rows(n: int) -> None:
        done[0] += n
        now = time.monotonic()
        if on_progress is not None and (now - last[0] >= 0.25 or done[0] >= total):
            last[0] = now
            on_progress(min(1.0, done[0] / max(1, total)), f"{label}: {done[0]:,}/{total:,}")

    return on_rows


def write_split(
    folder: Path,
    name: str,
    split: Split,
    size: int,
    provenance: dict,
    on_rows: Callable[[int], None] | None = None,
) -> None:
    with SplitWriter(folder, name, split.count, size) as out:
        row = 0
        for chunk in split.chunks():
            if row + len(chunk) > split.count:
                raise DatasetError(f"the {name} split gives more than {split.count} images")
            step = max(1, RESIZE_BYTES // (3 * size * size))  # resized uint8 kept at a time
            for start in range(0, len(chunk), step):
                part = chunk[start : start + step]
                out[row + start : row + start + len(part)] = resize_square(part, size)
            row += len(chunk)
            if on_rows is not None:
                on_rows(len(chunk))
        if row != split.count:
            raise DatasetError(f"the {name} split gave {row} images, {split.count} expected")
        out.finish(split.labels, split.class_names, provenance=provenance)


def _check_labels(labels: Any, count: int, num_classes: int, label: str) -> np.ndarray:
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if labels.shape != (count,):
        raise DatasetError(f"{label} holds {labels.size} labels for {count} images")
    if count and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(f"{label} holds labels outside 0-{num_classes - 1}")
    return labels


def _missing(dataset: str, root: Path, files: list[Path]) -> None:
    absent = [f for f in files if not f.is_file()]
    if absent:
        shown = ", ".join(str(f.relative_to(root)) for f in absent[:6])
        raise DatasetError(
            f"{dataset}: {root} lacks {shown}{', ...' if len(absent) > 6 else ''}; put the "
            f"layout {LAYOUTS[dataset]} in the root (as torchvision downloads it), or add it "
            "with --download where the network allows"
        )


# ---- CIFAR: pickled batches through a restricted unpickler ----------------------------------


def _reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _CifarUnpickler(pickle.Unpickler):
    """Admits only what a CIFAR batch holds: numpy arrays (their reconstruct function, ndarray,
    dtype). Any other global (os.system, builtins.eval, ...) is refused before it is looked up."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
    }

    def find_class(self, module: str, name: str) -> Any:
        getter = self.ALLOWED.get((module, name))
        if getter is None:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        return getter()


def load_cifar_pickle(path: Path) -> dict[bytes, Any]:
    """A CIFAR batch or meta file as a dict with bytes keys; anything else is a DatasetError."""
    try:
        size = path.stat().st_size
        if size > MAX_PICKLE_BYTES:
            raise DatasetError(f"{path.name} is {size / 1024**2:.0f} MB: not a CIFAR batch")
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path} could not be read ({exc.strerror or exc})") from None
    try:
        loaded = _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise DatasetError(
            f"{path.name} is not a CIFAR batch: {exc} (only numpy arrays are read)"
        ) from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise DatasetError(f"{path.name} is not a CIFAR batch ({exc})") from None
    if not isinstance(loaded, dict):
        raise DatasetError(f"{path.name} is not a CIFAR batch (it holds no dict)")
    return {k.encode() if isinstance(k, str) else k: v for k, v in loaded.items()}


def _names(meta: dict[bytes, Any], key: bytes, path: Path) -> list[str]:
    names = meta.get(key)
    if not isinstance(names, list) or not names:
        raise DatasetError(f"{path.name} has no {key.decode()} list")
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]


def _cifar_batches(files: list[Path], label_key: bytes, num_classes: int, names: list[str]):
    images, labels = [], []
    for path in files:
        batch = load_cifar_pickle(path)
        data = batch.get(b"data")
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
            raise DatasetError(f"{path.name} holds no uint8 'data' array of rows")
        if data.shape[1] != 3 * 32 * 32:
            raise DatasetError(f"{path.name}: rows of {data.shape[1]} values, 3072 expected")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(_check_labels(batch.get(label_key), len(data), num_classes, path.name))
    stacked = np.concatenate(images)
    return Split(len(stacked), _array_chunks(stacked, lambda a: a), np.concatenate(labels), names)


def _read_cifar(root: Path, dataset: str) -> dict[str, Split]:
    if dataset == "CIFAR10":
        base = root / "cifar-10-batches-py"
        train = [base / f"data_batch_{i}" for i in range(1, 6)]
        test, meta_file = [base / "test_batch"], base / "batches.meta"
        label_key, names_key = b"labels", b"label_names"
    else:
        base = root / "cifar-100-python"
        train, test, meta_file = [base / "train"], [base / "test"], base / "meta"
        label_key, names_key = b"fine_labels", b"fine_label_names"
    _missing(dataset, root, [*train, *test, meta_file])
    names = _names(load_cifar_pickle(meta_file), names_key, meta_file)
    return {
        "train": _cifar_batches(train, label_key, len(names), names),
        "test": _cifar_batches(test, label_key, len(names), names),
    }


# ---- STL-10: raw binary files ---------------------------------------------------------------


def _stl_images(path: Path) -> np.ndarray:
    size = path.stat().st_size
    if size == 0 or size % (3 * 96 * 96):
        raise DatasetError(f"{path.name} is {size} bytes: not a whole number of 96x96 images")
    # Column-major per image: (N, 3, 96 [x], 96 [y]); transposed per chunk when read.
    return np.memmap(path, dtype=np.uint8, mode="r", shape=(size // (3 * 96 * 96), 3, 96, 96))


def _read_stl(root: Path) -> dict[str, Split]:
    base = root / "stl10_binary"
    needed = [base / f"{s}_{k}.bin" for s in ("train", "test") for k in ("X", "y")]
    _missing("STL10", root, needed)
    names = STL10_CLASSES
    names_file = base / "class_names.txt"
    if names_file.is_file():
        listed = [line.strip() for line in names_file.read_text(errors="replace").splitlines()]
        names = [n for n in listed if n] or names
    out = {}
    transpose = lambda a: a.transpose(0, 1, 3, 2)
    for split in ("train", "test"):
        images = _stl_images(base / f"{split}_X.bin")
        raw = np.fromfile(base / f"{split}_y.bin", dtype=np.uint8).astype(np.int64) - 1
        labels = _check_labels(raw, len(images), len(names), f"{split}_y.bin")
        out[split] = Split(len(images), _array_chunks(images, transpose), labels, names)
    unlabeled = base / "unlabeled_X.bin"
    if unlabeled.is_file():
        images = _stl_images(unlabeled)
        out["unlabeled"] = Split(
            len(images), _array_chunks(images, transpose), np.full(len(images), -1), []
        )
    return out


# ---- MNIST / FashionMNIST: idx files --------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
    """An idx file (gzipped or not) of unsigned bytes as a numpy array."""
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path} could not be read ({exc})") from None
    if len(data) < 4 or data[0] or data[1] or data[2] != 0x08:
        raise DatasetError(f"{path.name} is not an idx file of unsigned bytes")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if ndim < 1 or len(data) != header + int(np.prod(dims)):
        raise DatasetError(f"{path.name} is truncated or damaged ({dims} in {len(data)} bytes)")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _read_mnist(root: Path, dataset: str) -> dict[str, Split]:
    raw = root / dataset / "raw"
    names = MNIST_CLASSES if dataset == "MNIST" else FASHION_CLASSES
    files = {}
    for stem in ("train-images", "train-labels", "t10k-images", "t10k-labels"):
        kind = "idx3" if stem.endswith("images") else "idx1"
        plain = raw / f"{stem}-{kind}-ubyte"
        files[stem] = plain if plain.is_file() else plain.with_name(plain.name + ".gz")
    _missing(dataset, root, list(files.values()))
    grey = lambda a: np.repeat(a[:, None], 3, axis=1)
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(files[f"{prefix}-images"])
        if images.ndim != 3:
            raise DatasetError(f"{files[f'{prefix}-images'].name} holds no (N, h, w) images")
        labels = _check_labels(
            read_idx(files[f"{prefix}-labels"]), len(images), 10, files[f"{prefix}-labels"].name
        )
        out[split] = Split(len(images), _array_chunks(images, grey), labels, names)
    return out


# ---- SVHN: .mat files -----------------------------------------------------------------------


def _read_svhn(root: Path) -> dict[str, Split]:
    from scipy.io import loadmat

    files = {s: root / f"{s}_32x32.mat" for s in ("train", "test")}
    _missing("SVHN", root, list(files.values()))
    out = {}
    for split, path in files.items():
        try:
            mat = loadmat(path)
        except (OSError, ValueError, TypeError, NotImplementedError) as exc:
            raise DatasetError(f"{path.name} could not be read as a .mat file ({exc})") from None
        x, y = mat.get("X"), mat.get("y")
        if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
            raise DatasetError(f"{path.name} holds no X array of shape (32, 32, 3, N)")
        x = np.ascontiguousarray(x.astype(np.uint8, copy=False).transpose(3, 2, 0, 1))
        labels = _check_labels(np.asarray(y).reshape(-1) % 10, len(x), 10, path.name)
        out[split] = Split(len(x), _array_chunks(x, lambda a: a), labels, MNIST_CLASSES)
    return out


# ---- Imagenette: folders of class folders ---------------------------------------------------


def _imagenette_base(root: Path) -> Path:
    for candidate in (root, *(root / f for f in IMAGENETTE_FOLDERS)):
        if (candidate / "train").is_dir() and (candidate / "val").is_dir():
            return candidate
    _missing("Imagenette", root, [root / "imagenette2" / "train", root / "imagenette2" / "val"])
    raise AssertionError  # _missing raised


def _class_files(folder: Path) -> list[tuple[Path, str]]:
    return [
        (path, cls.name)
        for cls in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        for path in sorted(cls.iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
    ]


def _short_sides(files: list[Path], sample: int = 200) -> list[int]:
    """The shorter sides of up to `sample` of `files`, spread over the list (headers only)."""
    from PIL import Image

    step = max(1, len(files) // sample)
    sides = []
    for path in files[::step][:sample]:
        try:
            with Image.open(path) as img:
                sides.append(min(img.size))
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
    return sides


def decode_image(source: Any, label: str) -> np.ndarray:
    """(3, h, w) uint8 of an image file, a file-like object or PIL image; DatasetError if not."""
    from PIL import Image

    try:
        img = source if isinstance(source, Image.Image) else Image.open(source)
        with img:
            if img.width * img.height > 40_000_000:
                raise DatasetError(f"{label} is over 40 megapixels")
            return np.asarray(img.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{label} could not be read as an image ({exc})") from None


def _file_chunks(files: list[tuple[Path, str]], base: Path, size: int):
    def chunks() -> Iterator[np.ndarray]:
        for path, _ in files:  # each image its own size: resized one at a time
            image = decode_image(path, str(path.relative_to(base)))
            yield resize_square(image[None], size)

    return chunks


def _read_imagenette(root: Path, size: int | None) -> tuple[dict[str, Split], int]:
    base = _imagenette_base(root)
    found = {
        split: _class_files(base / folder)
        for split, folder in (("train", "train"), ("test", "val"))
    }
    wnids = sorted({cls for files in found.values() for _, cls in files})
    if not found["train"] or not found["test"]:
        raise DatasetError(f"Imagenette: no images in {base}/train or {base}/val class folders")
    names = [IMAGENETTE_CLASSES.get(w, w) for w in wnids]
    if size is None:
        size = auto_size(_short_sides([p for p, _ in found["train"]]))
    out = {}
    for split, files in found.items():
        labels = np.array([wnids.index(cls) for _, cls in files], dtype=np.int64)
        out[split] = Split(len(files), _file_chunks(files, base, size), labels, names)
    return out, size


# ---- download ------------------------------------------------------------------------------


def _present(dataset: str, root: Path) -> bool:
    """Whether `root` already holds the layout (then a download is skipped)."""
    try:
        if dataset == "Imagenette":
            _imagenette_base(root)
            return True
        probe = {
            "CIFAR10": ["cifar-10-batches-py/test_batch"],
            "CIFAR100": ["cifar-100-python/test"],
            "STL10": ["stl10_binary/test_X.bin", "stl10_binary/unlabeled_X.bin"],
            "SVHN": ["train_32x32.mat", "test_32x32.mat"],
        }.get(dataset, [f"{dataset}/raw/t10k-labels-idx1-ubyte"])
        return all((root / p).is_file() for p in probe)
    except DatasetError:
        return False


def download(dataset: str, root: Path) -> None:
    """torchvision's downloader into `root` (skipped when the layout is there already); no
    network is one DatasetError."""
    import torchvision.datasets as tvd

    if _present(dataset, root):
        return
    root.mkdir(parents=True, exist_ok=True)
    calls = {
        "CIFAR10": lambda: tvd.CIFAR10(str(root), download=True),
        "CIFAR100": lambda: tvd.CIFAR100(str(root), download=True),
        "STL10": lambda: tvd.STL10(str(root), split="train+unlabeled", download=True),
        "MNIST": lambda: [tvd.MNIST(str(root), train=t, download=True) for t in (True, False)],
        "FashionMNIST": lambda: [
            tvd.FashionMNIST(str(root), train=t, download=True) for t in (True, False)
        ],
        "SVHN": lambda: [tvd.SVHN(str(root), split=s, download=True) for s in ("train", "test")],
        "Imagenette": lambda: tvd.Imagenette(str(root), size="320px", download=True),
    }
    try:
        calls[dataset]()
    except Exception as exc:  # noqa: BLE001 - network, checksum and disk errors vary
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise DatasetError(
            f"{dataset} could not be downloaded into {root} ({first}); without network, put "
            f"the layout {LAYOUTS[dataset]} there and add it without --download"
        ) from None


# ---- the import -----------------------------------------------------------------------------


@dataclass
class TvReport:
    dataset: str  # the torchvision name
    size: int
    stores: list[dict[str, Any]] = field(default_factory=list)  # name, num_train, num_test, ...

    @property
    def name(self) -> str:
        return self.stores[0]["name"]

    def message(self) -> str:
        parts = []
        for store in self.stores:
            test = f", {store['num_test']:,} test" if store["num_test"] else ""
            labels = (
                f"{len(store['class_names'])} classes" if store["class_names"] else "unlabelled"
            )
            parts.append(f"'{store['name']}' ({store['num_train']:,} train{test}, {labels})")
        text = f"Added torchvision {self.dataset} at {self.size} px: {' and '.join(parts)}."
        if len(self.stores) > 1:
            text += (
                f" Pretrain on '{self.stores[1]['name']}', evaluate on '{self.stores[0]['name']}'."
            )
        return text


def read_layout(dataset: str, root: Path, size: int | None) -> tuple[dict[str, Split], int]:
    """The splits of `dataset` under `root` (unread chunks) and the size to store them at."""
    if dataset in ("CIFAR10", "CIFAR100"):
        splits = _read_cifar(root, dataset)
    elif dataset == "STL10":
        splits = _read_stl(root)
    elif dataset in ("MNIST", "FashionMNIST"):
        splits = _read_mnist(root, dataset)
    elif dataset == "SVHN":
        splits = _read_svhn(root)
    else:
        return _read_imagenette(root, size)
    return splits, size or NATIVE[dataset]


def import_torchvision(
    dataset: str,
    root: str | os.PathLike,
    name: str,
    datasets_dir: Path,
    download_first: bool = False,
    image_size: int | None = None,
    on_progress: Progress | None = None,
) -> TvReport:
    """Read `dataset` from its layout under `root` and store it as `name` (STL-10 with its
    unlabeled images: also `<name>-unlabeled`). `on_progress(fraction, text)` hears the
    writing."""
    dataset = canonical_name(dataset)
    name = check_name(name)
    if image_size is not None:
        image_size = check_store_size(image_size)
    root = Path(root).expanduser()
    if download_first:
        download(dataset, root)
    if not root.is_dir():
        raise DatasetError(
            f"{dataset}: {root} is not a folder; give the root that holds {LAYOUTS[dataset]}"
        )
    key = source_key(dataset, root, image_size)
    names = [name, *([check_name(f"{name}-unlabeled")] if dataset == "STL10" else [])]
    reused = _reused(dataset, datasets_dir, names, key)
    if reused is not None:  # the same files at the same size: nothing to decode
        if on_progress is not None:
            on_progress(1.0, f"{dataset}: the same files as before, store reused")
        return reused
    splits, size = read_layout(dataset, root, image_size)
    size = check_store_size(size)
    provenance = {"source": f"torchvision:{dataset}", "root": str(root), "key": key}
    report = TvReport(dataset, size)
    stores = [(name, {"train": splits["train"], "test": splits["test"]})]
    if "unlabeled" in splits:
        stores.append((names[1], {"train": splits["unlabeled"]}))
    total = sum(part.count for _, parts in stores for part in parts.values())
    on_rows = counter(total, on_progress, f"{dataset} images stored")
    _store_all(stores, datasets_dir, size, provenance, report, on_rows)
    return report


def source_key(dataset: str, root: Path, image_size: int | None) -> str | None:
    """What a re-add compares: the files under `root`, the dataset and the asked size."""
    return folder_key(root, f"torchvision:{dataset} v1 size={image_size or 'auto'}")


def _reused(dataset: str, datasets_dir: Path, names: list[str], key: str | None) -> TvReport | None:
    """The report of stores already imported from the same files (same key), else None."""
    if key is None:
        return None
    report = None
    for name in names:
        folder = Path(datasets_dir) / name
        if not has_split(folder, "train"):
            return None
        try:
            train = open_split(folder, "train")
            test = open_split(folder, "test") if has_split(folder, "test") else None
        except DatasetError:
            return None
        if train.provenance.get("key") != key:
            return None
        report = report or TvReport(dataset, train.size)
        report.stores.append(
            {
                "name": name,
                "num_train": len(train),
                "num_test": len(test) if test is not None else 0,
                "class_names": train.class_names or (test.class_names if test else []),
            }
        )
    return report


def _store_all(stores, datasets_dir, size, provenance, report, on_rows) -> None:
    """Each (name, {split: Split}) staged and written; all move into place only when every
    one was written (a failure in any leaves none behind)."""
    if not stores:
        return
    (name, splits), rest = stores[0], stores[1:]
    with staged_dataset(datasets_dir, name) as (staged, _):
        for split, data in splits.items():
            write_split(staged, split, data, size, provenance, on_rows)
        _store_all(rest, datasets_dir, size, provenance, report, on_rows)
    test = splits.get("test")
    report.stores.insert(
        0,
        {
            "name": name,
            "num_train": splits["train"].count,
            "num_test": test.count if test else 0,
            "class_names": splits["train"].class_names or (test.class_names if test else []),
        },
    )
