"""Image-text pairs from the user: captions.csv or a .txt beside each image, then CLIP trains."""

import zipfile

import pytest

from engine.api import Studio
from engine.data.datasets import load_dataset
from engine.errors import DatasetError
from tests.engine.data.test_user_images import _png

COLOURS = {"red": (230, 30, 30), "blue": (30, 30, 230), "green": (30, 200, 30)}


def make_captioned(root, style="csv", per_colour=4):
    root.mkdir(parents=True, exist_ok=True)
    rows = ["file,caption"]
    for name, colour in COLOURS.items():
        for i in range(per_colour):
            (root / f"{name}{i}.png").write_bytes(_png(colour))
            caption = f"a {name} square, picture {i}"
            if style == "csv":
                rows.append(f'{name}{i}.png,"{caption}"')
            else:
                (root / f"{name}{i}.txt").write_text(caption, "utf-8")
    if style == "csv":
        (root / "captions.csv").write_text("\n".join(rows) + "\n", "utf-8")
    return root


@pytest.mark.parametrize("style", ["csv", "txt"])
def test_captions_make_an_image_text_dataset(tmp_path, style):
    studio = Studio(tmp_path / "home")
    info = studio.add_image_dataset(make_captioned(tmp_path / "pics", style), "pairs")
    assert info["modalities"] == ["image", "image-text"] and "caption" in info["message"]
    train = load_dataset("pairs", "train", 16)
    assert len(train.captions) == len(train)
    for image, caption in zip(train.images, train.captions):
        colour = caption.split()[1]  # "a red square, picture 0"
        channel = {"red": 0, "green": 1, "blue": 2}[colour]
        assert image[channel].float().mean() > 150  # the caption stayed with its picture
    assert "pairs" in {
        d["name"] for d in Studio(tmp_path / "home").datasets() if "image-text" in d["modalities"]
    }


def test_uncaptioned_images_left_out_and_counted(tmp_path):
    folder = make_captioned(tmp_path / "pics", "txt")
    (folder / "red0.txt").unlink()
    info = Studio(tmp_path / "home").add_image_dataset(folder, "pairs")
    assert "Left out 1 image(s) with no caption" in info["message"]
    assert info["num_train"] + info["num_test"] == 11


def test_captions_file_naming_missing_images_refused(tmp_path):
    folder = make_captioned(tmp_path / "pics", "csv")
    with open(folder / "captions.csv", "a", encoding="utf-8") as handle:
        handle.write("ghost.png,a ghost\nsub/gone.jpg,gone\n")
    studio = Studio(tmp_path / "home")
    with pytest.raises(
        DatasetError, match="names 2 image.*not in the dataset: ghost.png, sub/gone.jpg"
    ):
        studio.add_image_dataset(folder, "refused")
    (folder / "captions.csv").write_text("image,text\nred0.png,x\n", "utf-8")
    with pytest.raises(DatasetError, match="file,caption"):
        studio.add_image_dataset(folder, "refused")
    assert "refused" not in {d["name"] for d in studio.datasets()}


def test_clip_trains_on_a_captioned_zip(tmp_path):
    archive = tmp_path / "pairs.zip"
    folder = make_captioned(tmp_path / "pics", "csv", per_colour=6)
    with zipfile.ZipFile(archive, "w") as zf:
        for path in folder.iterdir():
            zf.write(path, f"export/{path.name}")  # one top folder, as zips often have
    studio = Studio(tmp_path / "home")
    studio.add_image_dataset(archive, "zipped")
    summary = studio.run_foreground(
        {
            "method": "clip",
            "dataset": "zipped",
            "params": {
                "steps": 3,
                "batch_size": 8,
                "image_size": 16,
                "backbone": "tiny",
                "warmup_steps": 1,
                "precision": "fp32",
                "vocab_size": 200,
            },
        }
    )
    assert summary["status"] == "completed", summary["error"]
    assert summary["final_loss"] is not None
