"""The user's own images: a folder or zip, checked once, then trained on like a builtin."""

import io
import json
import zipfile

import pytest
from PIL import Image

from engine.api import Studio
from engine.data.datasets import load_dataset
from engine.errors import DatasetError


def _png(colour, size=(20, 14)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def make_folder(root, labelled=True, per_class=6):
    for label, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        folder = root / label if labelled else root
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (folder / f"{label}_{i}.png").write_bytes(_png(colour))
    (root / ("red" if labelled else ".") / "broken.jpg").write_bytes(b"not an image")
    return root


def test_folder_with_subfolders_becomes_labelled(tmp_path):
    studio = Studio(tmp_path / "home")
    info = studio.add_image_dataset(make_folder(tmp_path / "pics"), "my-pics")
    assert info["labelled"] and info["num_classes"] == 2
    assert info["num_train"] + info["num_test"] == 12
    assert "Skipped 1 unreadable" in info["message"]
    test = load_dataset("my-pics", "test", 16)
    assert test.images.shape[1:] == (3, 16, 16) and set(test.labels.tolist()) == {0, 1}
    red = load_dataset("my-pics", "train", 16)
    red_images = red.images[red.labels == red.class_names.index("red")].float()
    assert red_images[:, 0].mean() > 200 and red_images[:, 2].mean() < 50
    # Another process (a worker) sees it through the store.
    assert "my-pics" in {d["name"] for d in Studio(tmp_path / "home").datasets()}


def test_unlabelled_folder_still_trains(tmp_path):
    studio = Studio(tmp_path / "home")
    info = studio.add_image_dataset(make_folder(tmp_path / "flat", labelled=False), "flat")
    assert not info["labelled"]
    summary = studio.run_foreground(
        {
            "method": "simclr",
            "dataset": "flat",
            "params": {"steps": 2, "batch_size": 4, "image_size": 16, "precision": "fp32"},
        }
    )
    assert summary["status"] == "completed", summary["error"]


def test_zip_upload_and_zip_slip_refused(tmp_path):
    studio = Studio(tmp_path / "home")
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        for i in range(3):
            zf.writestr(f"photos/cats/c{i}.png", _png((200, 100, 0)))
            zf.writestr(f"photos/dogs/d{i}.png", _png((0, 100, 200)))
    info = studio.add_image_dataset(good, "pets")
    assert info["num_classes"] == 2 and info["num_train"] + info["num_test"] == 6
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../outside.png", _png((0, 0, 0)))
    with pytest.raises(DatasetError, match="outside the dataset folder"):
        studio.add_image_dataset(evil, "evil")
    assert not (tmp_path / "outside.png").exists()
    assert "evil" not in {d["name"] for d in studio.datasets()}


@pytest.mark.parametrize(
    "name,message", [("Bad Name!", "must be 1-40 characters"), ("digits", "builtin dataset")]
)
def test_bad_names(tmp_path, name, message):
    with pytest.raises(DatasetError, match=message):
        Studio(tmp_path / "home").add_image_dataset(make_folder(tmp_path / "p"), name)


def test_oversized_images_refused_and_counted(tmp_path, monkeypatch):
    import engine.data.user_images as user_images

    monkeypatch.setattr(user_images, "MAX_IMAGE_PIXELS", 300)  # 20x14 = 280 passes
    folder = make_folder(tmp_path / "p")
    (folder / "blue" / "huge.png").write_bytes(_png((0, 0, 255), size=(40, 40)))
    info = Studio(tmp_path / "home").add_image_dataset(folder, "sized")
    assert "Refused 1 image(s)" in info["message"]


def test_cli_adds_a_dataset(tmp_path, capsys):
    from engine.__main__ import main

    folder = make_folder(tmp_path / "p")
    assert (
        main(
            [
                "datasets",
                "--add",
                str(folder),
                "--name",
                "clipart",
                "--json",
                "--home",
                str(tmp_path / "home"),
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["name"] == "clipart"
    assert (
        main(["datasets", "--add", str(tmp_path / "missing"), "--home", str(tmp_path / "home")])
        == 2
    )
    assert "does not exist" in capsys.readouterr().err


# --- the image store: any size, decoded once, re-added instantly ---------------------------


def _jpeg(colour, size=(300, 340), seed=0) -> bytes:
    import numpy as np

    noise = np.random.default_rng(seed).integers(-20, 20, (size[1], size[0], 3))
    pixels = np.clip(np.array(colour) + noise, 0, 255).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def jpeg_folder(root, per_class=20):
    """40 JPEGs of 300x340 px in two label folders, and one corrupt file."""
    for label, colour in (("cats", (220, 60, 40)), ("dogs", (40, 60, 220))):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / label / f"{i:02d}.jpg").write_bytes(_jpeg(colour, seed=i))
    (root / "cats" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return root


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    return jpeg_folder(tmp_path_factory.mktemp("jpegs"))


def test_auto_size_is_the_median_short_side_at_most_256(tmp_path, jpegs):
    from engine.data.image_store import open_split

    studio = Studio(tmp_path / "home")
    info = studio.add_image_dataset(jpegs, "photos")
    assert info["native_size"] == 256 and "stored at 256 px" in info["message"]
    assert info["num_train"] + info["num_test"] == 40 and info["num_classes"] == 2
    assert "Skipped 1 unreadable" in info["message"]
    folder = tmp_path / "home" / "datasets" / "photos"
    train, test = open_split(folder, "train"), open_split(folder, "test")
    assert train.images.shape == (32, 3, 256, 256) and len(test) == 8
    assert train.class_names == ["cats", "dogs"] and sorted(set(test.labels.tolist())) == [0, 1]
    cats = train.images[train.labels == 0].astype(float)
    assert cats[:, 0].mean() > 180 and cats[:, 2].mean() < 90  # labels stayed with pixels
    assert not [p for p in (tmp_path / "home" / "datasets").iterdir() if p.name != "photos"]
    # Another process registers it from the store, at its size.
    listed = {d["name"]: d for d in Studio(tmp_path / "home").datasets()}
    assert listed["photos"]["native_size"] == 256 and listed["photos"]["available"]


def test_image_size_flag_and_the_pool_decode_alike(tmp_path, jpegs, monkeypatch, capsys):
    import numpy as np

    import engine.data.user_images as user_images
    from engine.__main__ import main
    from engine.data.image_store import open_split

    home = tmp_path / "home"
    argv = ["datasets", "--add", str(jpegs), "--image-size", "64", "--home", str(home)]
    assert main([*argv, "--name", "here", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["native_size"] == 64
    monkeypatch.setattr(user_images, "POOL_MIN_IMAGES", 0)  # decode in worker processes
    assert user_images.decode_workers(40) >= 1
    assert main([*argv, "--name", "pooled"]) == 0
    assert "stored at 64 px" in capsys.readouterr().out
    for split in ("train", "test"):
        here = open_split(home / "datasets" / "here", split)
        pooled = open_split(home / "datasets" / "pooled", split)
        assert here.images.shape[1:] == (3, 64, 64)
        assert np.array_equal(here.images, pooled.images)
        assert np.array_equal(here.labels, pooled.labels)


def test_adding_the_same_files_again_decodes_nothing(tmp_path, jpegs, monkeypatch):
    import engine.data.user_images as user_images

    studio = Studio(tmp_path / "home")
    first = studio.add_image_dataset(jpegs, "again", 48)

    def no_decoding(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(user_images, "_decode_one", no_decoding)
    monkeypatch.setattr(user_images, "_probe", no_decoding)
    second = studio.add_image_dataset(jpegs, "again", 48)
    assert "nothing was decoded" in second["message"]
    assert (second["num_train"], second["num_test"]) == (first["num_train"], first["num_test"])
    assert "Skipped 1 unreadable" in second["message"]
    with pytest.raises(AssertionError, match="decoded again"):  # another size: decoded
        studio.add_image_dataset(jpegs, "again", 64)
    with pytest.raises(AssertionError, match="decoded again"):  # another name: decoded
        studio.add_image_dataset(jpegs, "other", 48)
    assert load_dataset("again", "train", 16).images.shape[1:] == (3, 16, 16)


@pytest.mark.parametrize("size", [16, 1000, 64.5])
def test_image_size_out_of_range_refused(tmp_path, size):
    with pytest.raises(DatasetError, match="from 32 to 512|whole number"):
        Studio(tmp_path / "home").add_image_dataset(make_folder(tmp_path / "p"), "sized", size)


def test_a_store_too_large_for_the_disk_is_refused_before_decoding(tmp_path, jpegs, monkeypatch):
    import shutil
    from collections import namedtuple

    import engine.data.user_images as user_images

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9, 5 * 1024**2))

    def no_decoding(task):
        raise AssertionError("decoded before the disk check")

    monkeypatch.setattr(user_images, "_decode_one", no_decoding)
    studio = Studio(tmp_path / "home")
    with pytest.raises(DatasetError, match=r"would take 0\.01 GB on disk but only 0\.00 GB"):
        studio.add_image_dataset(jpegs, "big", 256)
    assert "big" not in {d["name"] for d in studio.datasets()}
    assert not list((tmp_path / "home" / "datasets").iterdir())


def test_a_truncated_jpeg_is_counted_and_the_split_still_whole(tmp_path):
    folder = jpeg_folder(tmp_path / "pics", per_class=6)
    whole = (folder / "dogs" / "03.jpg").read_bytes()
    (folder / "dogs" / "03.jpg").write_bytes(whole[: len(whole) // 2])  # header reads
    info = Studio(tmp_path / "home").add_image_dataset(folder, "cut", 32)
    assert "Skipped 2 unreadable" in info["message"]
    assert info["num_train"] + info["num_test"] == 11
    train = load_dataset("cut", "train", 32)
    assert len(train) == info["num_train"] and set(train.labels.tolist()) == {0, 1}


def test_a_dataset_stored_by_an_earlier_version_still_loads(tmp_path):
    import torch

    from storage.db import Store

    home, folder = tmp_path / "home", tmp_path / "home" / "datasets" / "old"
    folder.mkdir(parents=True)
    torch.save(
        {
            "images": torch.full((10, 3, 64, 64), 200, dtype=torch.uint8),
            "labels": torch.tensor([0, 1] * 5),
            "test": torch.tensor([True, True] + [False] * 8),
            "class_names": ["a", "b"],
            "labelled": True,
            "captions": None,
        },
        folder / "data.pt",
    )
    meta = {"num_images": 10, "num_train": 8, "num_test": 2, "num_classes": 2, "labelled": True}
    Store.open(Studio(home).home.db_path).save_user_dataset("old", "image", str(folder), "x", meta)
    listed = {d["name"]: d for d in Studio(home).datasets()}
    assert listed["old"]["available"] and listed["old"]["native_size"] == 64
    assert load_dataset("old", "train", 16).images.shape == (8, 3, 16, 16)
