"""A user's zip archive, unpacked without trusting it.

`extract_zip` reads the central directory first and refuses the archive, before writing a byte,
when it holds too many entries, declares too much data, compresses suspiciously well (a zip
bomb), or has an entry that is encrypted, a symbolic link, compressed with a method other than
stored/deflate, or named outside the target folder (an absolute name or `..`). Then it copies
each entry in chunks, never past the size the entry declares, and checks its CRC itself. Every
problem is one `DatasetError` naming the archive and the entry; what was written before a
failure is the caller's to remove (`user_data.staged_dataset` removes it).
"""

from __future__ import annotations

import copy
import re
import stat
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from engine.errors import DatasetError

# Limits, checked against the central directory before anything is extracted.
# user_images.MAX_IMAGES (200,000) images, each with a caption .txt, plus folders and strays;
# each entry costs a file on disk, so an archive of millions of empty entries is refused at once.
MAX_ENTRIES = 500_000
# The uncompressed total; larger sets belong in a folder on the server.
MAX_ARCHIVE_BYTES = 2 * 1024**3
# One entry: a 40-megapixel image (user_images.MAX_IMAGE_PIXELS) as a 16-bit RGBA TIFF is 320 MB.
MAX_ENTRY_BYTES = 512 * 1024**2
# Uncompressed / compressed size, of each entry and of the whole archive. Photos (JPEG, PNG)
# hardly compress and caption text compresses ~3:1; even a raw bitmap of one flat colour stays
# near 100:1, while a deflate bomb reaches ~1000:1. Only data past RATIO_FLOOR_BYTES is judged:
# a small file may compress well and cannot fill a disk.
MAX_RATIO = 200
RATIO_FLOOR_BYTES = 16 * 1024**2
# Stored and deflate are what every zip tool writes; zipfile decompresses bzip2 and lzma chunks
# without bounding their output, so an entry in those could expand far past its cap in memory.
READABLE_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
CHUNK_BYTES = 1024**2
# Written beside the wanted files when a caller names some: captions (captions.csv, x.txt).
SIDE_FILES = (".txt", ".csv")
RECREATE = "re-create the archive"

_ENCRYPTED = 0x1  # general purpose flag bit 0
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


def extract_zip(
    archive: Path, target: Path, wanted: tuple[str, ...] = (), what: str = "files"
) -> None:
    """Extract the zip `archive` into the existing folder `target`, checking it all first.

    With `wanted` (name suffixes such as ".png"), only non-empty files whose names end so, and
    the side files in `SIDE_FILES`, are written, and an archive holding no such file is
    refused before anything is written ("holds no `what`")."""
    archive, label = Path(archive), Path(archive).name
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise DatasetError(
            f"{label} is not a readable zip archive ({exc}); if it was cut short "
            f"(an interrupted upload or copy), {RECREATE} or upload it again"
        ) from None
    except OSError as exc:
        raise DatasetError(f"{label} could not be opened ({exc.strerror or exc})") from None
    with zf:
        infos = zf.infolist()
        root = target.resolve()
        destinations = _check_directory(label, infos, root)
        if wanted:
            keep = [_is_wanted(info, wanted) for info in infos]
            if not any(
                keep[i] and infos[i].filename.lower().endswith(wanted) for i in range(len(infos))
            ):
                raise DatasetError(
                    f"{label} holds no {what} ({', '.join(sorted(wanted))}) "
                    f"among its {len(infos):,} entries; nothing was extracted"
                )
            infos = [info for info, k in zip(infos, keep) if k]
            destinations = [d for d, k in zip(destinations, keep) if k]
        for info, dest in zip(infos, destinations):
            with _entry_errors(label, info):
                if info.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                else:
                    _copy_entry(label, zf, info, dest)


def _check_directory(label: str, infos: list[zipfile.ZipInfo], root: Path) -> list[Path]:
    """Each entry's destination under `root`; refuses the archive on the first bad entry."""
    if len(infos) > MAX_ENTRIES:
        raise DatasetError(
            f"{label} holds {len(infos):,} entries, more than the "
            f"{MAX_ENTRIES:,} allowed; split it or add a folder on the server"
        )
    destinations, total, total_compressed = [], 0, 0
    for info in infos:
        entry = f"{label}: entry {info.filename!r}"
        parts = re.split(r"[/\\]", info.filename)
        if (
            PurePosixPath(info.filename).is_absolute()
            or info.filename.startswith("\\")
            or _WINDOWS_DRIVE.match(info.filename)
            or ".." in parts
        ):
            raise DatasetError(
                f"{entry} would be written outside the dataset folder (an "
                f"absolute name or '..'); the archive was refused"
            )
        dest = (root / info.filename).resolve()
        if not dest.is_relative_to(root) or (dest == root and not info.is_dir()):
            raise DatasetError(
                f"{entry} would be written outside the dataset folder; the archive was refused"
            )
        if info.flag_bits & _ENCRYPTED:
            raise DatasetError(f"{entry} is encrypted; {RECREATE} without a password")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DatasetError(
                f"{entry} is a symbolic link; {RECREATE} holding the files "
                "themselves (zip without -y / --symlinks)"
            )
        if info.compress_type not in READABLE_METHODS:
            raise DatasetError(
                f"{entry} uses compression method {info.compress_type}, not "
                f"stored or deflate; {RECREATE} with standard (deflate) "
                "compression"
            )
        if info.file_size > MAX_ENTRY_BYTES:
            raise DatasetError(
                f"{entry} declares {info.file_size / 1024**2:,.0f} MB, more "
                f"than the {MAX_ENTRY_BYTES // 1024**2} MB allowed for one file"
            )
        if _bomb_like(info.file_size, info.compress_size):
            raise DatasetError(
                f"{entry} expands {info.file_size // max(info.compress_size, 1):,}"
                f" times (more than {MAX_RATIO}x): it looks like a zip bomb; the "
                "archive was refused"
            )
        total += info.file_size
        total_compressed += info.compress_size
        destinations.append(dest)
    if total > MAX_ARCHIVE_BYTES:
        raise DatasetError(
            f"{label} expands to {total / 1024**3:.1f} GB, past the "
            f"{MAX_ARCHIVE_BYTES / 1024**3:.1f} GB limit; split it or add a "
            "folder on the server instead"
        )
    if _bomb_like(total, total_compressed):
        raise DatasetError(
            f"{label} expands {total // max(total_compressed, 1):,} times (more "
            f"than {MAX_RATIO}x): it looks like a zip bomb; the archive was "
            "refused"
        )
    return destinations


def _is_wanted(info: zipfile.ZipInfo, wanted: tuple[str, ...]) -> bool:
    name = info.filename.lower()
    if info.is_dir() or info.file_size == 0:
        return False
    return name.endswith(wanted) or name.endswith(SIDE_FILES)


def _bomb_like(size: int, compressed: int) -> bool:
    return size > RATIO_FLOOR_BYTES and size > MAX_RATIO * max(compressed, 1)


def _copy_entry(label: str, zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path) -> None:
    """Copy one entry, reading at most one byte past its declared size, CRC checked here."""
    declared = info.file_size
    # zipfile itself cuts an entry at its declared size and then reports a CRC error; with the
    # cap one byte higher and no CRC to check, an entry that holds more shows as such.
    capped = copy.copy(info)
    capped.file_size, capped.CRC = declared + 1, None
    dest.parent.mkdir(parents=True, exist_ok=True)
    written, crc = 0, 0
    with zf.open(capped) as source, open(dest, "wb") as out:
        while chunk := source.read(min(CHUNK_BYTES, declared + 1 - written)):
            written += len(chunk)
            if written > declared:
                raise DatasetError(
                    f"{label}: entry {info.filename!r} lies about its size (it "
                    f"holds more than the {declared:,} bytes it declares); "
                    f"{RECREATE}"
                )
            crc = zlib.crc32(chunk, crc)
            out.write(chunk)
    if written < declared:
        raise DatasetError(
            f"{label}: entry {info.filename!r} is truncated or lies about its "
            f"size (it holds {written:,} of the {declared:,} bytes it declares); "
            f"{RECREATE}"
        )
    if crc != info.CRC:
        raise DatasetError(
            f"{label}: entry {info.filename!r} is corrupt (CRC mismatch); {RECREATE}"
        )


@contextmanager
def _entry_errors(label: str, info: zipfile.ZipInfo) -> Iterator[None]:
    """Any read or write failure in the block becomes one DatasetError naming the entry."""
    entry = f"{label}: entry {info.filename!r}"
    try:
        yield
    except DatasetError:
        raise
    except zipfile.BadZipFile as exc:
        raise DatasetError(f"{entry} is corrupt ({exc}); {RECREATE}") from None
    except zlib.error as exc:
        raise DatasetError(
            f"{entry} is corrupt (its compressed data does not decompress: {exc}); {RECREATE}"
        ) from None
    except EOFError:
        raise DatasetError(
            f"{entry} is truncated (the archive ends inside it); {RECREATE} or upload it again"
        ) from None
    except (NotImplementedError, RuntimeError, ValueError) as exc:
        raise DatasetError(f"{entry} cannot be read ({exc}); {RECREATE}") from None
    except OSError as exc:
        raise DatasetError(f"{entry} could not be extracted ({exc.strerror or exc})") from None
