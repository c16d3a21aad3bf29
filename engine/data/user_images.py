"""The user's own images: a folder on the server or an uploaded zip, checked once, cached as uint8.

`import_images` reads every image once: unreadable or corrupt files are skipped and counted,
images over a pixel limit are refused and counted. A zip is checked from its central directory
before anything is extracted and read entry by entry with its sizes and CRCs checked
(`engine.data.archives`): any bad entry refuses the whole archive with one message naming it.
Everything is written to a scratch folder inside the datasets folder and moved into place only
when the import succeeds (`user_data.staged_dataset`), so a failed import leaves nothing behind
and keeps an earlier dataset of the same name.

Subfolders become labels when every image sits in one (so evaluation works); otherwise the set
is unlabelled and still trains. Images are resized (shorter side, then a centre crop) to a native
size and stored with a fixed stratified train/test split in `<home>/datasets/<name>/data.pt`;
`register_user_dataset` adds it to the catalog (`engine.data.catalog`) like the builtins.

Captions make it an image-text dataset (CLIP trains on it): a `captions.csv` with `file,caption`
columns (paths relative to the csv's folder), or a `.txt` beside each image (`cat.png` +
`cat.txt`). A captions file naming images that are not there refuses the import with their
names; images with no caption are left out of a captioned set and counted.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from engine.data.archives import extract_zip
from engine.data.catalog import DatasetSource, RawImages, register_dataset
from engine.data.user_data import check_name, decode_utf8, staged_dataset, stored_file_check
from engine.errors import DatasetError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MAX_IMAGE_PIXELS = 40_000_000  # one image, width x height
MAX_IMAGES = 200_000
NATIVE_SIZE = 64  # the side images are stored at
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

    def message(self) -> str:
        labels = (
            f"{len(self.class_names)} labels ({', '.join(self.class_names[:8])}"
            f"{', ...' if len(self.class_names) > 8 else ''})"
            if self.labelled
            else "no labels (images are not all in subfolders)"
        )
        text = (
            f"Added dataset '{self.name}': {self.num_images} images "
            f"({self.num_train} train, {self.num_test} test), {labels}."
        )
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


def _decode(path: Path, size: int) -> np.ndarray | str:
    """(size, size, 3) uint8, or "corrupt" / "too_large"."""
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                return "too_large"
            img = img.convert("RGB")
            scale = size / min(img.width, img.height)
            w, h = max(size, round(img.width * scale)), max(size, round(img.height * scale))
            img = img.resize((w, h), Image.Resampling.BICUBIC, reducing_gap=2.0)
            left, top = (w - size) // 2, (h - size) // 2
            return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        return "corrupt"


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
    source: str | os.PathLike, name: str, datasets_dir: Path, size: int = NATIVE_SIZE
) -> ImportReport:
    """Check, decode and store a folder or zip of images as dataset `name`."""
    name = check_name(name)
    source = Path(source).expanduser()
    if not source.exists():
        raise DatasetError(f"{source} does not exist; give a folder on the server or a .zip")
    with staged_dataset(datasets_dir, name) as (staged, scratch):
        folder = source
        if source.is_file():
            if source.suffix.lower() != ".zip":
                raise DatasetError(f"{source.name} is neither a folder nor a .zip archive")
            folder = scratch / "extracted"
            folder.mkdir()
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
        label_names = [parts[0] if labelled else "unlabelled" for parts in rel]
        images, kept_labels, kept_captions, corrupt, too_large, skipped = [], [], [], 0, 0, []
        for path, label in zip(files, label_names):
            decoded = _decode(path, size)
            if isinstance(decoded, str):
                corrupt += decoded == "corrupt"
                too_large += decoded == "too_large"
                skipped.append(str(path.relative_to(folder)))
                continue
            images.append(decoded)
            kept_labels.append(label)
            if captions is not None:
                kept_captions.append(captions[path.resolve()])
        if not images:
            raise DatasetError(
                f"none of the {len(files)} files in {source.name} could be read as an image"
            )
        class_names = sorted(set(kept_labels))
        labels = np.array([class_names.index(name) for name in kept_labels], dtype=np.int64)
        test = _split(labels)
        array = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()  # (N,3,S,S)
        stored = {
            "images": array,
            "labels": torch.from_numpy(labels),
            "test": torch.from_numpy(test),
            "class_names": class_names,
            "labelled": labelled,
            "captions": kept_captions if captions is not None else None,
        }
        try:
            torch.save(stored, staged / "data.pt")
        except RuntimeError as exc:  # torch's writer reports a full disk this way
            raise DatasetError(
                f"dataset {name!r} could not be written ({exc}); nothing was changed"
            ) from None
    return ImportReport(
        name,
        len(labels),
        int((~test).sum()),
        int(test.sum()),
        class_names,
        labelled,
        corrupt,
        too_large,
        skipped[:10],
        captions is not None,
        without_caption,
    )


def register_user_dataset(name: str, path: str | os.PathLike, meta: dict[str, Any]) -> None:
    """Make a stored user dataset loadable by name (again in each process)."""
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
