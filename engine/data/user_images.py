"""The user's own images: a folder on the server or an uploaded zip, checked once, stored on disk.

`import_images` reads every image's header first: unreadable or corrupt files are skipped and
counted, images over a pixel limit are refused and counted, and the storage size is chosen: the
images' median shorter side, at most 256 px (at least 32), unless the caller gives one (32-512,
`--image-size`). A store that would not fit the free disk is refused then, before anything is
decoded. Then each image is decoded once, in a pool of processes on the available cores (a JPEG
much larger than the target is decoded at a reduced scale), resized so its shorter side is the
storage size and centre-cropped to a square, and written into an image store
(`engine.data.image_store`: one memory-mapped uint8 file per split) with a fixed stratified
train/test split. `engine.data.stored_images.register_stored_dataset` adds it to the catalog.
Adding the same content again under the same name and size reuses the store without decoding
(`content_key`, kept in the store's provenance).

A zip is checked from its central directory before anything is extracted and read entry by
entry with its sizes and CRCs checked (`engine.data.archives`): any bad entry refuses the whole
archive with one message naming it. Everything is written to a scratch folder inside the
datasets folder and moved into place only when the import succeeds
(`user_data.staged_dataset`), so a failed import leaves nothing behind and keeps an earlier
dataset of the same name.

Subfolders become labels when every image sits in one (so evaluation works); otherwise the set
is unlabelled (labels -1) and still trains.

Captions make it an image-text dataset (CLIP trains on it): a `captions.csv` with `file,caption`
columns (paths relative to the csv's folder), or a `.txt` beside each image (`cat.png` +
`cat.txt`). A captions file naming images that are not there refuses the import with their
names; images with no caption are left out of a captioned set and counted.

Datasets imported before the store (`<home>/datasets/<name>/data.pt`, 64 px) keep loading
through `register_user_dataset`.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import multiprocessing as mp
import os
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from engine.data.archives import extract_zip
from engine.data.catalog import DatasetSource, RawImages, register_dataset
from engine.data.image_decode import decode_image
from engine.data.image_store import (
    SplitWriter,
    auto_size,
    check_free_space,
    check_store_size,
    has_split,
    open_split,
    split_bytes,
)
from engine.data.stored_images import is_store, register_stored_dataset
from engine.data.user_data import (
    check_name,
    decode_utf8,
    folder_key,
    staged_dataset,
    stored_file_check,
)
from engine.errors import DatasetError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MAX_IMAGE_PIXELS = 40_000_000  # one image, width x height
MAX_IMAGES = 200_000
NATIVE_SIZE = 64  # the side of images stored by earlier versions (data.pt)
KEY_VERSION = 1  # bump when what an import stores changes: earlier stores are then not reused
POOL_MIN_IMAGES = 200  # fewer images are decoded in this process (no pool to start)
MAX_WORKERS = 8
CAPTIONS_FILE = "captions.csv"
MAX_CAPTION_CHARS = 1000  # a longer caption is cut (CLIP reads ~32 tokens anyway)
TEST_SHARE, SPLIT_SEED = 0.2, 0


@dataclass
class ImportReport:
    name: str
    num_images: int
    num_train: int
    num_test: int
    class_names: list[str]
    labelled: bool
    skipped_corrupt: int
    refused_too_large: int
    examples_skipped: list[str]
    captioned: bool = False
    without_caption: int = 0  # images left out of a captioned set
    image_size: int = 0  # px, the side the images are stored at
    reused: bool = False  # the same content was stored already: nothing was decoded

    def message(self) -> str:
        labels = (
            f"{len(self.class_names)} labels ({', '.join(self.class_names[:8])}"
            f"{', ...' if len(self.class_names) > 8 else ''})"
            if self.labelled
            else "no labels (images are not all in subfolders)"
        )
        text = (
            f"Added dataset '{self.name}': {self.num_images} images "
            f"({self.num_train} train, {self.num_test} test) stored at {self.image_size} px, "
            f"{labels}."
        )
        if self.reused:
            text += " The same files were stored already at this size: nothing was decoded."
        if self.captioned:
            text += " Each image has a caption: CLIP can train on it."
        if self.without_caption:
            text += f" Left out {self.without_caption} image(s) with no caption."
        if self.skipped_corrupt:
            text += f" Skipped {self.skipped_corrupt} unreadable or corrupt file(s)."
        if self.refused_too_large:
            text += (
                f" Refused {self.refused_too_large} image(s) over "
                f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels."
            )
        return text


def _image_files(folder: Path) -> list[Path]:
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith((".", "__MACOSX")) for part in p.relative_to(folder).parts)
    )
    if len(files) > MAX_IMAGES:
        raise DatasetError(f"{len(files)} images is more than the {MAX_IMAGES} allowed")
    return files


def _visible(path: Path, folder: Path) -> bool:
    return not any(part.startswith((".", "__MACOSX")) for part in path.relative_to(folder).parts)


def _read(path: Path, label: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{label} could not be read ({exc.strerror or exc})") from None


def _caption(raw: str) -> str:
    return " ".join(raw.split())[:MAX_CAPTION_CHARS]


def _read_captions(folder: Path, files: list[Path]) -> dict[Path, str] | None:
    """Each image's caption (keyed by resolved path) from the shallowest captions.csv, else
    from a .txt beside each image; None when the set has no captions at all."""
    tables = sorted(
        (p for p in folder.rglob(CAPTIONS_FILE) if p.is_file() and _visible(p, folder)),
        key=lambda p: (len(p.parts), str(p)),
    )
    if not tables:
        sidecars = {}
        for image in files:
            txt = image.with_suffix(".txt")
            if txt.is_file():
                label = str(txt.relative_to(folder))
                caption = _caption(decode_utf8(_read(txt, label), label))
                if caption:
                    sidecars[image.resolve()] = caption
        return sidecars or None
    table = tables[0]
    reader = csv.reader(io.StringIO(decode_utf8(_read(table, CAPTIONS_FILE), CAPTIONS_FILE)))
    header = next(reader, None) or []
    columns = [cell.strip().lower() for cell in header]
    if "file" not in columns or "caption" not in columns:
        raise DatasetError(
            f"{CAPTIONS_FILE} needs a first row naming its columns file,caption; "
            f"its first row is: {', '.join(header) or 'empty'}"
        )
    file_col, caption_col = columns.index("file"), columns.index("caption")
    present = {image.resolve() for image in files}
    captions, missing = {}, []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(file_col, caption_col):
            raise DatasetError(
                f"{CAPTIONS_FILE} line {reader.line_num} has {len(row)} "
                "column(s); each row needs file,caption (put a caption holding "
                "commas in double quotes)"
            )
        image = (table.parent / row[file_col].strip()).resolve()
        if image not in present:
            missing.append(row[file_col].strip())
        elif _caption(row[caption_col]):
            captions[image] = _caption(row[caption_col])
    if missing:
        raise DatasetError(
            f"{CAPTIONS_FILE} names {len(missing)} image(s) that are not in the "
            f"dataset: {', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}"
            "; fix the names (paths are relative to the csv's folder) or add the "
            "images"
        )
    return captions


def _probe(path: Path, max_pixels: int) -> tuple[int, int] | str:
    """(width, height) from the header alone, or "corrupt" / "too_large"."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except Image.DecompressionBombError:
        return "too_large"
    except (OSError, ValueError, SyntaxError):
        return "corrupt"
    if width < 1 or height < 1:
        return "corrupt"
    return "too_large" if width * height > max_pixels else (width, height)


_decode_one = decode_image  # in this process (tests replace it to see that nothing is decoded)


def decode_workers(tasks: int) -> int:
    """Processes to decode `tasks` images with: the cores this process may use, capped at
    MAX_WORKERS; 1 (no pool) for a small set, where starting processes costs more than it saves."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    if tasks < POOL_MIN_IMAGES:
        return 1
    return max(1, min(cores, MAX_WORKERS))


def _decoded(
    tasks: list[tuple[str, int, int]], workers: int
) -> Iterator[tuple[int, np.ndarray | str]]:
    """(index, result) of each task in order; a pool of `workers` processes when above one.
    Leaving the loop early (an error) terminates the pool."""
    if workers <= 1:
        for index, task in enumerate(tasks):
            yield index, _decode_one(task)
        return
    # spawn, not fork: a forked copy of a process with threads (the web app, torch) can hang
    # on a lock another thread held; the spawned worker imports only image_decode (PIL, numpy).
    context = mp.get_context("spawn")
    chunk = max(1, min(64, len(tasks) // (workers * 8)))
    with context.Pool(workers) as pool:
        yield from enumerate(pool.imap(decode_image, tasks, chunksize=chunk))


def content_key(source: Path, size: int | None) -> str | None:
    """What a re-add compares: sha256 over every file's relative path, size and modification
    time (a folder) or every entry's name, size and CRC (a zip: the same archive uploaded again
    matches), plus the asked storage size ("auto" when none) and the importer's version. None
    when it cannot be computed (the import then says why)."""
    salt = f"user-images v{KEY_VERSION} size={size or 'auto'}"
    if not source.is_file():
        return folder_key(source, salt)
    digest = hashlib.sha256(f"{salt}\n".encode())
    try:
        with zipfile.ZipFile(source) as zf:
            entries = sorted((i.filename, i.file_size, i.CRC) for i in zf.infolist())
    except (OSError, ValueError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError):
        return None
    for name, file_size, crc in entries:
        digest.update(f"{name}\0{file_size}\0{crc}\n".encode())
    return digest.hexdigest()


def _reusable(folder: Path, key: str | None) -> ImportReport | None:
    """The report of the store already in `folder` when it was imported from content with the
    same key; None otherwise (or when it is incomplete)."""
    if key is None or not has_split(folder, "train"):
        return None
    try:
        train = open_split(folder, "train")
    except DatasetError:
        return None
    provenance = train.provenance
    saved = provenance.get("report")
    if provenance.get("key") != key or not isinstance(saved, dict):
        return None
    try:
        report = ImportReport(**saved)
    except TypeError:  # written by another version of the report
        return None
    if report.num_test and not has_split(folder, "test"):
        return None
    report.reused = True
    return report


def _split(labels: np.ndarray) -> np.ndarray:
    """Boolean test mask: a fixed, stratified 20% of each label (at least one train image)."""
    rng = np.random.default_rng(SPLIT_SEED)
    test = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        rng.shuffle(idx)
        n_test = round(len(idx) * TEST_SHARE) if len(idx) > 1 else 0
        test[idx[:n_test]] = True
    return test


def import_images(
    source: str | os.PathLike,
    name: str,
    datasets_dir: Path,
    size: int | None = None,
    on_progress: Callable[[float, str], None] | None = None,
) -> ImportReport:
    """Check, decode and store a folder or zip of images as dataset `name` in an image store
    (`engine.data.image_store`) at `size` px (None: `auto_size`). The same content under the
    same name and size is not decoded again: the store already there is kept (`reused`).
    `on_progress(fraction, text)` hears how the decoding goes."""
    name = check_name(name)
    if size is not None:
        size = check_store_size(size)
    source = Path(source).expanduser()
    if not source.exists():
        raise DatasetError(f"{source} does not exist; give a folder on the server or a .zip")
    if source.is_file() and source.suffix.lower() != ".zip":
        raise DatasetError(f"{source.name} is neither a folder nor a .zip archive")
    key = content_key(source, size)
    reused = _reusable(Path(datasets_dir) / name, key)
    if reused is not None:
        reused.name = name
        return reused

    def progress(fraction: float, text: str) -> None:
        if on_progress is not None:
            on_progress(min(1.0, max(0.0, fraction)), text)

    with staged_dataset(datasets_dir, name) as (staged, scratch):
        folder = source
        if source.is_file():
            folder = scratch / "extracted"
            folder.mkdir()
            progress(0.0, f"checking and extracting {source.name}")
            extract_zip(source, folder, tuple(sorted(IMAGE_SUFFIXES)), "images")
        files = _image_files(folder)
        if not files:
            raise DatasetError(
                f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {source.name}"
            )
        captions = _read_captions(folder, files)
        without_caption = 0
        if captions is not None:
            without_caption = sum(f.resolve() not in captions for f in files)
            files = [f for f in files if f.resolve() in captions]
            if not files:
                raise DatasetError(
                    f"no image of {source.name} has a caption; give each a "
                    f"caption in {CAPTIONS_FILE} or a .txt beside it"
                )
        # Labels: the first folder level, when every image sits in a subfolder.
        rel = [f.relative_to(folder).parts for f in files]
        if len({parts[0] for parts in rel}) == 1 and all(len(p) > 2 for p in rel):
            rel = [parts[1:] for parts in rel]  # a zip holding one top folder
        labelled = all(len(parts) > 1 for parts in rel)
        label_names = [parts[0] if labelled else "" for parts in rel]

        # Headers first (cheap): what cannot be opened or is too large, and the median size.
        progress(0.0, f"checking {len(files)} images")
        probes = [_probe(path, MAX_IMAGE_PIXELS) for path in files]
        bad = [i for i, p in enumerate(probes) if isinstance(p, str)]
        corrupt = sum(probes[i] == "corrupt" for i in bad)
        too_large = len(bad) - corrupt
        candidates = [i for i, p in enumerate(probes) if not isinstance(p, str)]
        if not candidates:
            raise DatasetError(
                f"none of the {len(files)} files in {source.name} could be read as an image"
            )
        store_size = size or auto_size([min(probes[i]) for i in candidates])  # type: ignore[arg-type]
        # Refused before any image is decoded when the store would not fit the disk.
        check_free_space(staged, split_bytes(len(candidates), store_size))

        tasks = [(str(files[i]), store_size, MAX_IMAGE_PIXELS) for i in candidates]
        workers = decode_workers(len(tasks))
        pixels = _DraftStore(staged, [label_names[i] for i in candidates], store_size)
        failed: list[int] = []
        every = max(1, len(tasks) // 200)
        with pixels:
            for j, result in _decoded(tasks, workers):
                if isinstance(result, str):
                    failed.append(j)
                    corrupt += result == "corrupt"
                    too_large += result == "too_large"
                else:
                    pixels.put(j, result)
                if (j + 1) % every == 0 or j + 1 == len(tasks):
                    progress((j + 1) / len(tasks), f"decoded {j + 1}/{len(tasks)} images")
            failed_files = {candidates[j] for j in failed}
            skipped = [str(files[i].relative_to(folder)) for i in sorted(set(bad) | failed_files)]
            kept = [i for i in candidates if i not in failed_files]
            if not kept:
                raise DatasetError(
                    f"none of the {len(files)} files in {source.name} could be read as an image"
                )
            report = ImportReport(
                name,
                len(kept),
                0,
                0,
                [],
                labelled,
                corrupt,
                too_large,
                skipped[:10],
                captions is not None,
                without_caption,
                store_size,
            )
            kept_captions = (
                [captions[files[i].resolve()] for i in kept] if captions is not None else None
            )
            provenance = {"source": source.name, "importer": "user_images", "key": key}
            pixels.finish(
                [j for j, i in enumerate(candidates) if i not in failed_files],
                kept_captions,
                provenance,
                report,
                scratch,
            )
        progress(1.0, f"stored {report.num_images} images at {store_size} px")
    return report


class _DraftStore:
    """The train and test splits being written: rows are placed by a stratified split of the
    candidates (those whose header read), and `finish` writes them. When some candidate then
    fails to decode (a truncated file), the split is drawn again over the images kept and the
    rows are copied into fresh splits, so the stored split is always that of the kept images."""

    def __init__(self, folder: Path, names: list[str], size: int) -> None:
        self.folder, self.names, self.size = folder, names, size
        self.class_names, self.labels, self.test = _labels_and_split(names)
        self.row = np.empty(len(names), dtype=np.int64)  # candidate -> row in its split
        self.row[self.test] = np.arange(int(self.test.sum()))
        self.row[~self.test] = np.arange(int((~self.test).sum()))
        self.writers: dict[str, SplitWriter] = {}
        self._stack = ExitStack()

    def __enter__(self) -> _DraftStore:
        stack = self._stack.__enter__()
        for split, mask in (("train", ~self.test), ("test", self.test)):
            if mask.any():
                self.writers[split] = stack.enter_context(
                    SplitWriter(self.folder, split, int(mask.sum()), self.size)
                )
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.__exit__(*exc)

    def put(self, j: int, image: np.ndarray) -> None:
        self.writers["test" if self.test[j] else "train"][int(self.row[j])] = image

    def get(self, j: int) -> np.ndarray:
        return self.writers["test" if self.test[j] else "train"].images[int(self.row[j])]

    def finish(
        self,
        kept: list[int],
        captions: list[str] | None,
        provenance: dict[str, Any],
        report: ImportReport,
        scratch: Path,
    ) -> None:
        """Write the kept candidates (indices into `names`, with their captions) as the
        dataset's splits, filling in the report's split counts and class names."""
        if len(kept) == len(self.names):
            self._write(
                self.writers, self.labels, self.test, self.class_names, captions, provenance, report
            )
            return
        # Some candidates failed to decode: split the kept ones afresh, copy their rows.
        class_names, labels, test = _labels_and_split([self.names[j] for j in kept])
        compact = scratch / "compact"
        writers: dict[str, SplitWriter] = {}
        with ExitStack() as stack:
            for split, mask in (("train", ~test), ("test", test)):
                if mask.any():
                    writer = stack.enter_context(
                        SplitWriter(compact, split, int(mask.sum()), self.size)
                    )
                    for row, j in enumerate(np.asarray(kept)[mask]):
                        writer[row] = self.get(int(j))
                    writers[split] = writer
            self._write(writers, labels, test, class_names, captions, provenance, report)
        for path in compact.iterdir():
            os.replace(path, self.folder / path.name)

    @staticmethod
    def _write(
        writers: dict[str, SplitWriter],
        labels: np.ndarray,
        test: np.ndarray,
        class_names: list[str],
        captions: list[str] | None,
        provenance: dict[str, Any],
        report: ImportReport,
    ) -> None:
        report.num_train, report.num_test = int((~test).sum()), int(test.sum())
        report.class_names = class_names
        provenance = dict(provenance, report=dataclasses.asdict(report))
        for split, mask in (("train", ~test), ("test", test)):
            if split in writers:
                writers[split].finish(
                    labels[mask],
                    class_names,
                    None if captions is None else [c for c, m in zip(captions, mask) if m],
                    provenance,
                )


def _labels_and_split(names: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(class names, labels, test mask) of images named by label ("" for an unlabelled set:
    no class names, labels -1); the test mask is `_split`'s fixed stratified 20%."""
    class_names = sorted(set(names) - {""})
    if len(class_names) and all(names):
        index = {n: i for i, n in enumerate(class_names)}
        labels = np.array([index[n] for n in names], dtype=np.int64)
    else:
        class_names, labels = [], np.full(len(names), -1, dtype=np.int64)
    return class_names, labels, _split(labels)


def register_user_dataset(name: str, path: str | os.PathLike, meta: dict[str, Any]) -> None:
    """Make a stored user dataset loadable by name (again in each process): an image store
    through `register_stored_dataset`, an earlier import's `data.pt` (64 px) here."""
    if is_store(path, meta):
        register_stored_dataset(name, path, meta)
        return
    data_file = Path(path) / "data.pt"

    def build(split: str) -> RawImages:
        stored = torch.load(data_file, weights_only=True)
        keep = stored["test"] if split == "test" else ~stored["test"]
        captions = stored.get("captions")
        if captions is not None:
            captions = [c for c, k in zip(captions, keep.tolist()) if k]
        return RawImages(
            stored["images"][keep], stored["labels"][keep], list(stored["class_names"]), captions
        )

    captioned = bool(meta.get("captioned"))
    # A newer import under the same name (maybe of another kind) replaces the earlier one.
    register_dataset(
        DatasetSource(
            name=name,
            kind="image",
            description=f"Your images ({meta.get('num_images', 0)} images"
            f"{', labelled' if meta.get('labelled') else ', unlabelled'}"
            f"{', with captions' if captioned else ''})",
            num_train=int(meta.get("num_train", 0)),
            num_test=int(meta.get("num_test", 0)),
            num_classes=int(meta.get("num_classes", 0)),
            labelled=bool(meta.get("labelled")),
            native_size=NATIVE_SIZE,
            build=build,
            unavailable=stored_file_check(data_file, path),
            version=int(meta.get("version", 1)),
            modalities=("image", "image-text") if captioned else (),
        )
    )
