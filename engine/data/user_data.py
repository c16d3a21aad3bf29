"""What importing the user's images (`engine.data.user_images`) and text
(`engine.data.user_text`) share: the name check, the atomic staging of a dataset's folder,
strict UTF-8 decoding, and the availability check of the stored files.

Each user dataset lives in `<home>/datasets/<name>/`, written to a scratch folder inside
`<home>/datasets/` and moved into place only when the import succeeds, so a failed import
leaves nothing behind and keeps an earlier dataset of the same name.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.data.catalog import is_builtin
from engine.errors import DatasetError

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


def check_name(name: str) -> str:
    """`name` lower-cased and stripped, once it is a valid name no builtin dataset holds (a
    user dataset's own name may be taken again: that import replaces it)."""
    name = (name or "").strip().lower()
    if not NAME_PATTERN.match(name):
        raise DatasetError(
            f"dataset name {name!r} must be 1-40 characters of a-z, 0-9, '_' "
            "or '-', starting with a letter or digit"
        )
    if is_builtin(name):
        raise DatasetError(f"{name!r} is a builtin dataset; pick another name")
    return name


@contextmanager
def staged_dataset(datasets_dir: Path, name: str) -> Iterator[tuple[Path, Path]]:
    """(staged, scratch): fill `staged` with the dataset's files; when the block succeeds it
    replaces `<datasets_dir>/<name>`. `scratch` (inside `datasets_dir`, so the final move is a
    rename) holds work files. On any failure, or after the move, `scratch` is removed: no
    half-imported dataset, and an earlier one of that name is kept whole."""
    datasets_dir = Path(datasets_dir)
    out_dir = datasets_dir / name
    try:
        datasets_dir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".import-{name}-", dir=datasets_dir))
    except OSError as exc:
        raise DatasetError(f"cannot write in {datasets_dir} ({exc.strerror or exc})") from None
    try:
        staged = scratch / "dataset"
        staged.mkdir()
        yield staged, scratch
        previous = scratch / "previous"
        if out_dir.exists() or out_dir.is_symlink():
            os.replace(out_dir, previous)
        try:
            os.replace(staged, out_dir)
        except OSError:
            if previous.exists() or previous.is_symlink():
                os.replace(previous, out_dir)
            raise
    except OSError as exc:  # reading errors were turned into DatasetErrors where they happen
        raise DatasetError(
            f"dataset {name!r} could not be written to {datasets_dir} "
            f"({exc.strerror or exc}); nothing was changed"
        ) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def decode_utf8(data: bytes, label: str) -> str:
    """Strict UTF-8 (a leading BOM dropped); an undecodable byte is reported with its line."""
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DatasetError(
            f"{label} is not UTF-8 text: line {line}, column {column} holds the "
            f"byte 0x{data[exc.start]:02x}, which UTF-8 cannot decode; save the "
            "file as UTF-8 and add it again"
        ) from None
    return decoded.removeprefix("\ufeff")


def stored_file_check(stored: Path, folder: str | os.PathLike) -> Callable[[], str]:
    """A source's cheap `unavailable` check: "" while `stored` exists, else why not."""

    def unavailable() -> str:
        return "" if stored.exists() else f"its files are gone from {folder}; add it again"

    return unavailable


def folder_key(folder: Path, salt: str) -> str | None:
    """What a re-add compares: sha256 over `salt` (the importer, its version, the choices) and
    every file under `folder` (relative path, size, modification time); None when the folder
    cannot be listed. The same files at the same place give the same key; a touched file does
    not."""
    digest = hashlib.sha256(f"{salt}\n".encode())
    try:
        for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            stat = path.stat()
            rel = path.relative_to(folder).as_posix()
            digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    except OSError:
        return None
    return digest.hexdigest()
