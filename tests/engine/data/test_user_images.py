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
