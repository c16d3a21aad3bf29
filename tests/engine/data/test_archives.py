"""Untrusted zips: every malformed archive is one DatasetError naming it and its entry, checked
before extraction where the central directory tells, and nothing half-imported stays behind."""

import stat
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from engine.api import Studio
from engine.data import archives
from engine.data.archives import extract_zip
from engine.errors import DatasetError
from tests.engine.data.test_user_images import _png

PNG = _png((200, 100, 0))
NOISE = bytes(range(256)) * 40  # 10,240 bytes that deflate a little


def _zip(path, entries, method=zipfile.ZIP_STORED):
    """`entries`: (name or ZipInfo, bytes); a good image comes first, so a refusal from the
    central directory shows as nothing extracted at all."""
    with zipfile.ZipFile(path, "w", method) as zf:
        zf.writestr("pets/ok.png", PNG)
        for name, data in entries:
            zf.writestr(name, data)
    return path


def _patch(path, name, **fields):
    """Overwrite header fields of entry `name` in its local header and central record."""
    local = {"flags": (6, "<H"), "size": (22, "<I"), "compressed": (18, "<I")}
    central = {"flags": (8, "<H"), "size": (24, "<I"), "compressed": (20, "<I")}
    data = bytearray(path.read_bytes())
    for signature, offsets, name_at in ((b"PK\x03\x04", local, 30), (b"PK\x01\x02", central, 46)):
        at = data.find(signature)
        while at >= 0:
            if data[at + name_at : at + name_at + len(name)] == name.encode():
                for field, value in fields.items():
                    offset, fmt = offsets[field]
                    current = struct.unpack_from(fmt, data, at + offset)[0]
                    struct.pack_into(fmt, data, at + offset, value(current))
            at = data.find(signature, at + 1)
    path.write_bytes(bytes(data))
    return path


def bad_crc(path):
    _zip(path, [("pets/bad.png", PNG)])
    data = bytearray(path.read_bytes())
    at = data.rfind(PNG) + len(PNG) // 2  # the stored bytes of the second entry
    data[at : at + 4] = bytes(b ^ 0xFF for b in data[at : at + 4])
    path.write_bytes(bytes(data))


def truncated_archive(path):
    _zip(path, [("pets/bad.png", NOISE)])
    path.write_bytes(path.read_bytes()[: len(PNG) + 200])


def truncated_entry(path):
    _zip(path, [("pets/bad.png", NOISE)], zipfile.ZIP_DEFLATED)
    _patch(path, "pets/bad.png", compressed=lambda size: size // 2)


def lies_smaller(path):
    _zip(path, [("pets/bad.png", NOISE)], zipfile.ZIP_DEFLATED)
    _patch(path, "pets/bad.png", size=lambda size: 100)


def lies_larger(path):
    _zip(path, [("pets/bad.png", NOISE)], zipfile.ZIP_DEFLATED)
    _patch(path, "pets/bad.png", size=lambda size: size * 2)


def encrypted(path):
    _zip(path, [("pets/bad.png", PNG)])
    _patch(path, "pets/bad.png", flags=lambda flags: flags | 0x1)


def symlink(path):
    link = zipfile.ZipInfo("pets/bad.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    _zip(path, [(link, "/etc/passwd")])


def zip_bomb(path):
    _zip(path, [("pets/bad.png", bytes(archives.RATIO_FLOOR_BYTES + 1))], zipfile.ZIP_DEFLATED)


def bzip2(path):
    _zip(path, [("pets/bad.png", PNG)], zipfile.ZIP_BZIP2)


def not_a_zip(path):
    path.write_bytes(b"PK\x03\x04 this was never a zip archive")


# (builder, the entry the message names or None, what it says, refused from the central
# directory alone: nothing extracted)
FAMILY = {
    "bad CRC": (bad_crc, "pets/bad.png", "corrupt (CRC mismatch)", False),
    "truncated archive": (truncated_archive, None, "not a readable zip", True),
    "truncated entry": (truncated_entry, "pets/bad.png", "truncated", False),
    "size lies smaller": (lies_smaller, "pets/bad.png", "lies about its size", False),
    "size lies larger": (lies_larger, "pets/bad.png", "lies about its size", False),
    "encrypted": (encrypted, "pets/bad.png", "encrypted", True),
    "zip slip": (lambda p: _zip(p, [("../x.png", PNG)]), "../x.png", "outside", True),
    "nested slip": (lambda p: _zip(p, [("a/../../x.png", PNG)]), "a/../../x.png", "outside", True),
    "absolute": (lambda p: _zip(p, [("/tmp/x.png", PNG)]), "/tmp/x.png", "outside", True),
    "symlink": (symlink, "pets/bad.png", "symbolic link", True),
    "zip bomb": (zip_bomb, "pets/bad.png", "zip bomb", True),
    "bzip2": (bzip2, "pets/ok.png", "compression method", True),
    "not a zip": (not_a_zip, None, "not a readable zip", True),
}


@pytest.mark.parametrize("case", FAMILY)
def test_malformed_archive_is_one_clear_error_and_leaves_nothing(tmp_path, case):
    build, entry, reason, before_extracting = FAMILY[case]
    archive = tmp_path / "photos.zip"
    build(archive)
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(DatasetError) as refused:
        extract_zip(archive, target)
    text = str(refused.value)
    assert text.startswith("photos.zip") and reason in text
    if entry:
        assert f"entry {entry!r}" in text
    if before_extracting:
        assert not any(target.iterdir())
    assert not (tmp_path / "x.png").exists()
    studio = Studio(tmp_path / "home")  # a name no other test adds: the registry is global
    with pytest.raises(DatasetError, match="photos.zip"):
        studio.add_image_dataset(archive, "refused-archive")
    assert not any((tmp_path / "home" / "datasets").iterdir())
    assert "refused-archive" not in {d["name"] for d in studio.datasets()}


def test_too_many_entries_refused_before_extracting(tmp_path, monkeypatch):
    monkeypatch.setattr(archives, "MAX_ENTRIES", 20)
    archive = _zip(tmp_path / "many.zip", [(f"pets/{i}.png", b"") for i in range(20)])
    (tmp_path / "target").mkdir()
    with pytest.raises(DatasetError, match=r"many.zip holds 21 entries, more than the 20"):
        extract_zip(archive, tmp_path / "target")
    assert not any((tmp_path / "target").iterdir())


def test_archive_of_empty_entries_refused_before_extracting(tmp_path):
    """3,000 empty '.png' entries (the issue saw 30,000 extracted before the refusal): no
    image in the central directory, so nothing is written; junk beside images is skipped."""
    archive = tmp_path / "empty.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(3000):
            zf.writestr(f"pets/{i}.png", b"")
    (tmp_path / "target").mkdir()
    with pytest.raises(DatasetError, match=r"empty.zip holds no images .* 3,000 entries"):
        extract_zip(archive, tmp_path / "target", (".png",), "images")
    assert not any((tmp_path / "target").iterdir())
    mixed = _zip(
        tmp_path / "mixed.zip",
        [("pets/junk.bin", b"x" * 9), ("pets/empty.png", b""), ("pets/ok.txt", b"a cat")],
    )
    extract_zip(mixed, tmp_path / "target", (".png",), "images")
    assert sorted(p.name for p in (tmp_path / "target" / "pets").iterdir()) == ["ok.png", "ok.txt"]


def test_declared_sizes_refused_before_extracting(tmp_path, monkeypatch):
    archive = _zip(tmp_path / "big.zip", [("pets/big.png", NOISE)])
    (tmp_path / "target").mkdir()
    monkeypatch.setattr(archives, "MAX_ENTRY_BYTES", len(NOISE) - 1)
    with pytest.raises(DatasetError, match=r"big.zip: entry 'pets/big.png' declares"):
        extract_zip(archive, tmp_path / "target")
    monkeypatch.setattr(archives, "MAX_ENTRY_BYTES", len(NOISE))
    monkeypatch.setattr(archives, "MAX_ARCHIVE_BYTES", len(NOISE) + len(PNG) - 1)
    with pytest.raises(DatasetError, match=r"big.zip expands to .* past the"):
        extract_zip(archive, tmp_path / "target")
    assert not any((tmp_path / "target").iterdir())


def test_good_archive_extracts_whole(tmp_path):
    archive = _zip(
        tmp_path / "good.zip", [("pets/noise.png", NOISE), ("pets/sub/", b"")], zipfile.ZIP_DEFLATED
    )
    extract_zip(archive, tmp_path)
    assert (tmp_path / "pets" / "ok.png").read_bytes() == PNG
    assert (tmp_path / "pets" / "noise.png").read_bytes() == NOISE
    assert (tmp_path / "pets" / "sub").is_dir()


def test_failed_reimport_keeps_the_previous_dataset(tmp_path):
    studio = Studio(tmp_path / "home")
    good = _zip(
        tmp_path / "good.zip",
        [
            (f"pets/{kind}/{i}.png", _png(colour))
            for kind, colour in (("cats", (200, 0, 0)), ("dogs", (0, 0, 200)))
            for i in range(3)
        ],
    )
    first = studio.add_image_dataset(good, "pets")
    stored = tmp_path / "home" / "datasets" / "pets" / "train.u8"
    before = stored.read_bytes()
    bad = tmp_path / "photos.zip"
    bad_crc(bad)
    with pytest.raises(DatasetError, match="CRC mismatch"):
        studio.add_image_dataset(bad, "pets")
    assert stored.read_bytes() == before
    assert [p.name for p in (tmp_path / "home" / "datasets").iterdir()] == ["pets"]
    listed = {d["name"]: d for d in Studio(tmp_path / "home").datasets()}
    assert listed["pets"]["available"] and listed["pets"]["num_train"] == first["num_train"]


def test_cli_refuses_a_corrupt_zip_with_one_line(tmp_path):
    bad = tmp_path / "bad.zip"
    bad_crc(bad)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine",
            "datasets",
            "--add",
            str(bad),
            "--home",
            str(tmp_path / "home"),
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[3],
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: bad.zip: entry 'pets/bad.png' is corrupt (CRC mismatch); re-create the archive"
    ]
    assert not any((tmp_path / "home" / "datasets").iterdir())
