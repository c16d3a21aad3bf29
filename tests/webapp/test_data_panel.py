"""The Train tab's 'Add your own data' handlers: text file, Hugging Face dataset, images."""
import pytest

from webapp.data_panel import add_hf, add_text, look_up_columns


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    from engine.api import Studio

    return Studio(tmp_path_factory.mktemp("home"))


def test_add_text_handler(tmp_path, studio):
    upload = tmp_path / "upload.txt"
    upload.write_text("one document\n\nanother document\n", "utf-8")
    name, note = add_text(studio, str(upload), "", "uploaded-text")
    assert name == "uploaded-text" and "2 documents" in note and "ps-ok" in note
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xff\n")
    name, note = add_text(studio, str(bad), "", "bad")
    assert name is None and "line 2" in note and "ps-error" in note
    assert add_text(studio, None, "", "x")[1].count("Upload a UTF-8 text file") == 1
    assert "Give the dataset a name" in add_text(studio, str(upload), "", " ")[1]


def test_add_hf_handler_and_column_look_up(tmp_path, studio):
    import datasets

    datasets.disable_progress_bars()
    folder = tmp_path / "saved"
    datasets.Dataset.from_dict({"sentence": ["a b c", "d e f"], "n": [1, 2]}).save_to_disk(
        str(folder))
    columns, default, note = look_up_columns(studio, str(folder), "")
    assert columns == ["sentence"] and default == "sentence" and "sentence" in note
    name, note = add_hf(studio, str(folder), default, "", "sentences")
    assert name == "sentences" and "ps-ok" in note
    name, note = add_hf(studio, "someone/not-here", "", "", "remote")
    assert name is None and "cannot be reached" in note
    assert look_up_columns(studio, "", "")[0] == []
