"""The data panel's torchvision and Hugging Face images tabs: handlers, and the list they show."""

import pytest

from webapp.data_panel import TORCHVISION_DATASETS, add_hf_images, add_torchvision


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    from engine.api import Studio

    return Studio(tmp_path_factory.mktemp("home"))


def test_the_dropdown_lists_what_the_engine_reads():
    from engine.data.tv_datasets import SUPPORTED

    assert TORCHVISION_DATASETS == SUPPORTED


def test_torchvision_handler(tmp_path, studio):
    from tests.engine.data.test_tv_hf_images import write_mnist

    write_mnist(tmp_path / "root")
    name, note = add_torchvision(studio, "MNIST", str(tmp_path / "root"), False, 32.0, "")
    assert name == "mnist" and "ps-ok" in note and "40 train, 15 test" in note
    name, note = add_torchvision(studio, "SVHN", str(tmp_path / "root"), False, None, "sv")
    assert name is None and "train_32x32.mat" in note and "ps-error" in note
    name, note = add_torchvision(studio, "CIFAR10", str(tmp_path), False, 1000, "c")
    assert name is None and "from 32 to 512" in note
    assert "Type the folder" in add_torchvision(studio, "MNIST", " ", False, None, "")[1]


def test_hf_images_handler(tmp_path, studio):
    from tests.engine.data.test_tv_hf_images import write_hf

    write_hf(tmp_path / "saved")
    name, note = add_hf_images(studio, str(tmp_path / "saved"), "", "", "", None, "pets")
    assert name == "pets" and "3 classes from &#x27;label&#x27;" in note
    name, note = add_hf_images(studio, str(tmp_path / "saved"), "", "note", "", None, "x")
    assert name is None and "holds no images" in note
    assert "Give the dataset a name" in add_hf_images(studio, "a/b", "", "", "", None, "")[1]
    assert any(d["name"] == "pets" and d["labelled"] for d in studio.datasets())
