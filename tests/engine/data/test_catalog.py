"""The dataset catalog: builtins and the user's image and text datasets in one registry, each
with its kind, modalities and a real builtin flag; duplicates refused except a user re-import;
unknown names answered with the known ones."""

from __future__ import annotations

import dataclasses

import pytest

from engine.data import catalog, text
from engine.data.catalog import DatasetSource, get_source, list_datasets, register_dataset
from engine.data.datasets import load_dataset
from engine.data.user_images import import_images, register_user_dataset
from engine.data.user_text import import_text_file, register_user_corpus
from engine.errors import DatasetError
from tests.engine.data.test_user_images import make_folder

PROSE = "A first paragraph of prose.\n\nA second one, a little longer than the first.\n"


@pytest.fixture
def user_datasets(tmp_path):
    """A user image set `pics` and a user corpus `notes`, imported and registered; removed
    from the catalog afterwards."""
    datasets_dir = tmp_path / "datasets"
    images = import_images(make_folder(tmp_path / "pics"), "pics", datasets_dir)
    register_user_dataset(
        "pics",
        datasets_dir / "pics",
        {
            "num_images": images.num_images,
            "num_train": images.num_train,
            "num_test": images.num_test,
            "num_classes": len(images.class_names),
            "labelled": images.labelled,
        },
    )
    (tmp_path / "notes.txt").write_text(PROSE, "utf-8")
    notes = import_text_file(tmp_path / "notes.txt", "notes", datasets_dir)
    register_user_corpus("notes", datasets_dir / "notes", dataclasses.asdict(notes))
    yield datasets_dir
    for name in ("pics", "notes"):
        catalog.unregister_dataset(name)


def test_builtins_and_user_datasets_share_one_list(user_datasets):
    entries = {entry["name"]: entry for entry in list_datasets()}
    shown = {
        name: (e["kind"], e["modalities"], e["builtin"])
        for name, e in entries.items()
        if name in ("shapes", "digits", "captions", "pydocs", "pics", "notes")
    }
    assert shown == {
        "shapes": ("image", ["image", "image-text"], True),
        "digits": ("image", ["image"], True),
        "captions": ("text", ["text"], True),
        "pydocs": ("text", ["text"], True),
        "pics": ("image", ["image"], False),
        "notes": ("text", ["text"], False),
    }
    # Each loads through its kind's reader, and only through it.
    assert load_dataset("pics", "train", 16).images.shape[1:] == (3, 16, 16)
    assert text.corpus_texts("notes", "train") == [
        "A first paragraph of prose.",
        "A second one, a little longer than the first.",
    ]
    with pytest.raises(DatasetError, match="text corpus, not images"):
        load_dataset("notes", "train", 16)
    with pytest.raises(DatasetError, match="holds images, not text"):
        text.corpus_texts("pics")


def test_a_taken_name_is_refused_except_a_user_reimport(user_datasets):
    with pytest.raises(DatasetError, match="'shapes' is already registered"):
        register_dataset(get_source("shapes"))
    with pytest.raises(DatasetError, match="'digits' is already registered .a builtin."):
        register_dataset(dataclasses.replace(get_source("pics"), name="digits"))
    with pytest.raises(DatasetError, match="'pics' is already registered"):
        register_dataset(dataclasses.replace(get_source("shapes"), name="pics"))
    # A user dataset added again under its name replaces itself, even as another kind.
    register_user_corpus("pics", user_datasets / "notes", {"num_train": 2})
    assert get_source("pics").kind == "text" and not get_source("pics").builtin
    assert [s.name for s in catalog.sources()].count("pics") == 1
    with pytest.raises(DatasetError, match="builtin dataset and cannot be removed"):
        catalog.unregister_dataset("captions")


def test_an_unknown_name_lists_the_known_ones(user_datasets):
    with pytest.raises(DatasetError) as error:
        get_source("cifar-11")
    message = str(error.value)
    assert "unknown dataset 'cifar-11'" in message
    for name in ("shapes", "digits", "captions", "pydocs", "pics", "notes"):
        assert name in message


def test_a_source_states_its_kind_and_loader():
    with pytest.raises(DatasetError, match="kind 'audio'"):
        DatasetSource(name="clips", description="", kind="audio", num_train=1, num_test=1)
    with pytest.raises(DatasetError, match="needs a `build` loader"):
        DatasetSource(name="pics2", description="", kind="image", num_train=1, num_test=1)
    with pytest.raises(DatasetError, match="needs a `documents` loader"):
        DatasetSource(name="words", description="", kind="text", num_train=1, num_test=1)


@pytest.mark.parametrize(
    "source", [s for s in catalog.sources() if s.builtin], ids=lambda source: source.name
)
def test_every_builtin_is_described_whole(source):
    assert source.kind in catalog.KINDS
    assert source.kind in source.modalities
    assert (source.build if source.kind == "image" else source.documents) is not None
    info = catalog.dataset_info(source.name)
    assert info["builtin"] and info["available"] and "\n" not in info["description"]
