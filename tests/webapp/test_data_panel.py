"""The Train tab's 'Add your own data' handlers: text file, Hugging Face dataset, images."""

import pytest

from webapp.data_panel import add_dataset, add_hf, add_text, look_up_columns


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
        str(folder)
    )
    columns, default, note = look_up_columns(studio, str(folder), "")
    assert columns == ["sentence"] and default == "sentence" and "sentence" in note
    name, note = add_hf(studio, str(folder), default, "", "sentences")
    assert name == "sentences" and "ps-ok" in note
    name, note = add_hf(studio, "someone/not-here", "", "", "remote")
    assert name is None and "cannot be reached" in note
    assert look_up_columns(studio, "", "")[0] == []


def _upload(tmp_path, monkeypatch, build, filename="photos.zip"):
    """A file where Gradio keeps an upload (its own folder under the upload folder), as the
    gr.File value an event handler gets: an object whose .name is the path."""
    from types import SimpleNamespace

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    path = tmp_path / "gradio" / "0123abcd" / filename
    path.parent.mkdir(parents=True)
    build(path)
    return SimpleNamespace(name=str(path)), path


def test_uploads_are_deleted_after_a_refused_and_an_added_import(tmp_path, monkeypatch, studio):
    from tests.engine.data.test_archives import _zip, bad_crc

    upload, path = _upload(tmp_path / "bad", monkeypatch, bad_crc)
    name, note = add_dataset(studio, upload, "", "photos")
    assert name is None and "ps-error" in note
    assert "photos.zip: entry &#x27;pets/bad.png&#x27; is corrupt (CRC mismatch)" in note
    assert not path.exists() and not path.parent.exists()
    assert (tmp_path / "bad" / "gradio").is_dir()  # the upload folder itself stays
    name, note = add_dataset(studio, upload, "", "photos")  # clicked again: says so
    assert name is None and "upload it again" in note

    upload, path = _upload(tmp_path / "good", monkeypatch, lambda p: _zip(p, []))
    name, note = add_dataset(studio, upload, "", "photos")
    assert name == "photos" and "ps-ok" in note
    assert not path.exists() and not path.parent.exists()

    upload, path = _upload(
        tmp_path / "text", monkeypatch, lambda p: p.write_text("one\n\ntwo\n", "utf-8"), "notes.txt"
    )
    assert add_text(studio, upload, "", "notes")[0] == "notes" and not path.exists()


def test_a_typed_path_is_never_deleted(tmp_path, monkeypatch, studio):
    from tests.engine.data.test_archives import _zip

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))  # even inside the upload folder
    typed = _zip(tmp_path / "mine.zip", [])
    assert add_dataset(studio, None, str(typed), "mine")[0] == "mine" and typed.exists()
    outside = _zip(tmp_path / "elsewhere.zip", [])  # an upload value outside the folder
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    assert add_dataset(studio, str(outside), "", "mine")[0] == "mine" and outside.exists()


def test_launch_options_cap_uploads(monkeypatch):
    from webapp.app import launch_options

    monkeypatch.delenv("PRETEXT_MAX_UPLOAD_MB", raising=False)
    assert launch_options()["max_file_size"] == 2048 * 1024**2
    monkeypatch.setenv("PRETEXT_MAX_UPLOAD_MB", "0.5")
    assert launch_options()["max_file_size"] == 512 * 1024
    for bad in ("lots", "-1", "0", "nan"):
        monkeypatch.setenv("PRETEXT_MAX_UPLOAD_MB", bad)
        with pytest.raises(SystemExit, match=rf"PRETEXT_MAX_UPLOAD_MB='{bad}': give the"):
            launch_options()


def test_images_handler_passes_the_size_and_reports_progress(tmp_path, studio):
    from tests.engine.data.test_user_images import make_folder

    folder = make_folder(tmp_path / "pics")
    heard = []
    name, note = add_dataset(
        studio, None, str(folder), "sized-pics", 48.0, lambda f, t: heard.append((f, t))
    )
    assert name == "sized-pics" and "stored at 48 px" in note
    assert heard and heard[-1][0] == 1.0 and "48 px" in heard[-1][1]
    name, note = add_dataset(studio, None, str(folder), "auto-pics", "")  # empty: automatic
    assert name == "auto-pics" and "stored at 32 px" in note  # 14 px images: the minimum
    name, note = add_dataset(studio, None, str(folder), "tiny", 16)
    assert name is None and "from 32 to 512" in note and "ps-error" in note
