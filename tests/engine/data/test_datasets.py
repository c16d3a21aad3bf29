"""Builtin datasets: determinism, splits, balance, captions, nuisance independence, caching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chi2_contingency

from engine.data import catalog, datasets, digits, pydocs, shapes
from engine.data.datasets import ImageDataset, dataset_info, list_datasets, load_dataset
from engine.data.shapes import PALETTE, SHAPE_NAMES, generate_shapes
from engine.errors import DatasetError

INFO_KEYS = {
    "name",
    "kind",
    "description",
    "builtin",
    "available",
    "reason",
    "num_train",
    "num_test",
    "num_classes",
    "labelled",
    "native_size",
    "modalities",
    "augmentation",
    "procedural",
    "stored",
    "stored_size",
    "stored_bytes",
}


@pytest.fixture(scope="module")
def shapes_train() -> ImageDataset:
    return load_dataset("shapes", "train", image_size=32)


@pytest.fixture(scope="module")
def shapes_test() -> ImageDataset:
    return load_dataset("shapes", "test", image_size=32)


def _check_layout(ds: ImageDataset, size: int) -> None:
    assert ds.images.dtype == torch.uint8 and ds.images.is_contiguous()
    assert ds.images.shape == (len(ds), 3, size, size)
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (len(ds),)
    assert ds.captions is None or len(ds.captions) == len(ds)


def test_shapes_generation_is_deterministic_and_seeded() -> None:
    first, again = generate_shapes(40, seed=7), generate_shapes(40, seed=7)
    other = generate_shapes(40, seed=8)
    assert torch.equal(first.images, again.images) and first.captions == again.captions
    assert not torch.equal(first.images, other.images)


def test_shapes_splits(shapes_train: ImageDataset, shapes_test: ImageDataset) -> None:
    for ds in (shapes_train, shapes_test):
        _check_layout(ds, 32)
        assert ds.class_names == list(SHAPE_NAMES) and len(ds.class_names) >= 8
        counts = torch.bincount(ds.labels, minlength=len(SHAPE_NAMES))
        assert counts.min() > 0, "every shape must appear in every split"
        assert counts.max() <= 1.2 * counts.min(), f"labels unbalanced: {counts.tolist()}"
    info = dataset_info("shapes")
    assert (len(shapes_train), len(shapes_test)) == (info["num_train"], info["num_test"])
    # Different seeds: no test image is a copy of a train image.
    train_keys = {bytes(img.numpy()) for img in shapes_train.images}
    assert not any(bytes(img.numpy()) in train_keys for img in shapes_test.images)


def test_shapes_captions_name_the_label(shapes_test: ImageDataset) -> None:
    assert shapes_test.captions is not None
    for caption, label in zip(shapes_test.captions, shapes_test.labels.tolist()):
        assert f" {SHAPE_NAMES[label]} on " in caption, caption
    assert shapes_test.factors is not None
    colours = shapes_test.factors["color"]
    assert all(colour in caption for colour, caption in zip(colours, shapes_test.captions))


def test_captions_corpus_is_the_shapes_captions(
    shapes_train: ImageDataset, shapes_test: ImageDataset
) -> None:
    """Read from the factors alone (no image drawn), the same sentences the images carry."""
    from engine.data.text import corpus_texts, is_test_index

    documents = shapes_train.captions + shapes_test.captions
    assert corpus_texts("captions", "test") == [
        d for i, d in enumerate(documents) if is_test_index(i)
    ]
    assert shapes.shape_captions(37, 3) == generate_shapes(37, seed=3).captions


@pytest.mark.parametrize("factor", ["color", "size", "position", "background", "background_color"])
def test_shapes_nuisance_factors_are_independent_of_label(
    shapes_train: ImageDataset, factor: str
) -> None:
    assert shapes_train.factors is not None
    values = sorted(set(shapes_train.factors[factor]))
    table = np.zeros((len(SHAPE_NAMES), len(values)), dtype=np.int64)  # (label, factor value)
    for label, value in zip(shapes_train.labels.tolist(), shapes_train.factors[factor]):
        table[label, values.index(value)] += 1
    # Independence: a factor tied to the label (e.g. every star red) gives p ~ 0.
    assert chi2_contingency(table).pvalue > 1e-3, table
    if factor == "color":
        assert values == sorted(PALETTE)


def test_shapes_colour_is_visible_in_pixels(shapes_test: ImageDataset) -> None:
    # A cheap check that the drawn shapes carry their colour: red shapes hold more red pixels.
    assert shapes_test.factors is not None
    is_red = torch.tensor([c == "red" for c in shapes_test.factors["color"]])
    img = shapes_test.images.float()
    redness = (img[:, 0] - img[:, 1:].mean(dim=1)).clamp(min=0).mean(dim=(1, 2))  # (N,)
    assert redness[is_red].mean() > redness[~is_red].mean()


def test_digits_splits() -> None:
    train, test = load_dataset("digits", "train", 32), load_dataset("digits", "test", 32)
    assert len(train) + len(test) == 1797
    for ds in (train, test):
        _check_layout(ds, 32)
        assert ds.class_names == [str(d) for d in range(10)]
        grey = ds.images[:, :1].expand(-1, 3, -1, -1)
        assert torch.equal(ds.images, grey), "digits are grey: three equal channels"
        assert ds.images.max() >= 250  # 0..16 scaled to the full 0..255 range
    shares = [torch.bincount(ds.labels, minlength=10).double() / len(ds) for ds in (train, test)]
    assert torch.allclose(shares[0], shares[1], atol=0.01), "split must be stratified by digit"
    assert test.captions is not None
    assert test.captions[0] == f"a handwritten digit {int(test.labels[0])}"


def test_unknown_names_raise_helpful_errors() -> None:
    with pytest.raises(DatasetError) as err:
        load_dataset("cifar-11")
    assert "shapes" in str(err.value) and "digits" in str(err.value)
    with pytest.raises(DatasetError, match="shapes"):
        dataset_info("nope")
    with pytest.raises(DatasetError, match="train"):
        load_dataset("shapes", split="validation")
    with pytest.raises(DatasetError, match="image_size"):
        load_dataset("shapes", image_size=3)


def test_list_datasets_is_complete_and_cheap(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("list_datasets must not load any data")

    for module, loader in (
        (shapes, "generate_shapes"),
        (shapes, "shape_captions"),
        (digits, "load_digits_split"),
    ):
        monkeypatch.setattr(module, loader, refuse)
    monkeypatch.setattr(pydocs, "harvest_pydocs", refuse)
    entries = list_datasets()
    assert {e["name"] for e in entries} >= {"shapes", "digits"}
    assert {e["name"] for e in entries if e["kind"] == "text"} >= {"captions", "pydocs"}
    for entry in entries:
        assert set(entry) == INFO_KEYS
        assert entry["kind"] in ("image", "text")
        assert entry["available"] is True and entry["reason"] == ""
        assert isinstance(entry["description"], str) and "\n" not in entry["description"]
    with pytest.raises(DatasetError, match="already registered"):
        catalog.register_dataset(catalog.get_source("shapes"))


def test_disk_cache_round_trips(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = load_dataset("digits", "test", image_size=16, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.pt"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))

    def refuse(split: str):
        raise AssertionError("a cached split must be read from disk, not rebuilt")

    monkeypatch.setattr(digits, "load_digits_split", refuse)
    uncached = datasets._load_cached.__wrapped__  # skip the memory cache, read the file
    cached = uncached("digits", "test", 16, str(tmp_path))
    assert torch.equal(cached.images, fresh.images) and torch.equal(cached.labels, fresh.labels)
    assert cached.captions == fresh.captions and cached.class_names == fresh.class_names

    files[0].write_bytes(b"not a torch file")  # a damaged cache is rebuilt, not trusted
    monkeypatch.undo()
    rebuilt = uncached("digits", "test", 16, str(tmp_path))
    assert torch.equal(rebuilt.images, fresh.images)
    assert torch.equal(torch.load(files[0], weights_only=True)["images"], fresh.images)
