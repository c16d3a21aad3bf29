"""The on-disk image store: written atomically, read memory-mapped, damage named."""

import numpy as np
import pytest

from engine.data.image_store import SplitWriter, check_store_size, has_split, open_split
from engine.errors import DatasetError


def _images(n, size, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8)


def test_written_split_reads_back_memory_mapped(tmp_path):
    images = _images(5, 32)
    with SplitWriter(tmp_path, "train", count=5, size=32) as out:
        for i, image in enumerate(images):
            out[i] = image
        split = out.finish([0, 1, 0, 1, 2], ["a", "b", "c"], provenance={"source": "test"})
    again = open_split(tmp_path, "train")
    assert isinstance(again.images, np.memmap) and not again.images.flags.writeable
    assert np.array_equal(again.images, images) and np.array_equal(split.images, images)
    assert again.labels.tolist() == [0, 1, 0, 1, 2] and again.class_names == ["a", "b", "c"]
    assert again.size == 32 and len(again) == 5 and again.labelled
    assert again.provenance == {"source": "test"}


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), SplitWriter(tmp_path, "train", count=3, size=32) as out:
        out[0] = _images(1, 32)[0]
        raise RuntimeError("decoding failed")
    assert not has_split(tmp_path, "train") and list(tmp_path.iterdir()) == []


def test_damage_and_bad_sizes_are_named(tmp_path):
    with pytest.raises(DatasetError, match="no 'test' split"):
        open_split(tmp_path, "test")
    with SplitWriter(tmp_path, "train", count=2, size=32) as out:
        out[:] = _images(2, 32)
        out.finish([0, 0], ["a"])
    with open(tmp_path / "train.u8", "r+b") as handle:
        handle.truncate(100)
    with pytest.raises(DatasetError, match="truncated"):
        open_split(tmp_path, "train")
    for bad in (16, 1024, True, "64"):
        with pytest.raises(DatasetError, match="image size"):
            check_store_size(bad)


def test_an_import_that_would_not_fit_the_disk_is_refused(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 0, 10**6))
    with pytest.raises(DatasetError, match=r"would take .* GB on disk but only"):
        SplitWriter(tmp_path, "train", count=1000, size=128)
    assert list(tmp_path.iterdir()) == []
