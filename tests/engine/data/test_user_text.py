"""The user's own text: an uploaded UTF-8 file or a Hugging Face dataset, stored as a corpus."""

import json
import time

import pytest

from engine.api import Studio
from engine.data import text, user_text
from engine.errors import DatasetError, SpecError

PROSE = (
    "The small red square sits on a blue background. A large green circle rolls to the "
    "left of it, and a yellow star watches from the top right corner.\n"
)


@pytest.fixture
def studio(tmp_path):
    return Studio(tmp_path / "home")


def test_text_file_becomes_a_text_dataset_everywhere(tmp_path, studio):
    path = tmp_path / "notes.txt"
    path.write_text("First paragraph,\nwrapped over two lines.\n\nSecond one.\n\n\n", "utf-8")
    info = studio.add_text_dataset(path, "notes")
    assert info["kind"] == "text" and info["modalities"] == ["text"]
    assert "2 documents" in info["message"]
    assert text.corpus_texts("notes", "train") == [
        "First paragraph, wrapped over two lines.",
        "Second one.",
    ]
    # Another process (a worker, the CLI) sees it through the store.
    listed = {d["name"]: d for d in Studio(tmp_path / "home").datasets()}
    assert listed["notes"]["kind"] == "text" and listed["notes"]["available"]


def test_lines_are_documents_without_blank_lines_and_bom_is_dropped(tmp_path, studio):
    path = tmp_path / "lines.txt"
    path.write_bytes("\ufeffone line\ntwo line\n".encode("utf-8"))
    studio.add_text_dataset(path, "lines")
    assert text.corpus_texts("lines", "train") == ["one line", "two line"]


def test_bad_files_refused_with_a_clear_message(tmp_path, studio, monkeypatch):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(
        "caf\u00e9 ok\nstill ok\nna\u00efve\n".encode("utf-8")[:-1]
        + "\nr\u00e9sum\u00e9\n".encode("latin-1")
    )
    with pytest.raises(DatasetError, match=r"not UTF-8 text: line 4, column 2 .*0xe9"):
        studio.add_text_dataset(bad, "latin")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(DatasetError, match="empty"):
        studio.add_text_dataset(empty, "empty")
    blank = tmp_path / "blank.txt"
    blank.write_text(" \n\n\t\n", "utf-8")
    with pytest.raises(DatasetError, match="only whitespace"):
        studio.add_text_dataset(blank, "blank")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"text\nmore\x00\x01")
    with pytest.raises(DatasetError, match="NUL byte on line 2"):
        studio.add_text_dataset(binary, "binary")
    monkeypatch.setattr(user_text, "MAX_FILE_BYTES", 100)
    big = tmp_path / "big.txt"
    big.write_text(PROSE, "utf-8")
    with pytest.raises(DatasetError, match="over the 0 MB limit"):
        studio.add_text_dataset(big, "big")
    assert not {"latin", "empty", "blank", "binary", "big"} & {d["name"] for d in studio.datasets()}


def test_text_over_the_cap_is_cut_before_tokenisation(tmp_path, studio, monkeypatch):
    monkeypatch.setattr(user_text, "MAX_CORPUS_CHARS", 300)
    path = tmp_path / "long.txt"
    path.write_text(PROSE * 10, "utf-8")
    info = studio.add_text_dataset(path, "long")
    assert "was cut to the first 300" in info["message"]
    stored = (tmp_path / "home" / "datasets" / "long" / "corpus.txt").read_text("utf-8")
    assert len(stored) <= 300 and PROSE.startswith(stored.splitlines()[-1])
    # A job's own cap cuts one long document too, rather than emptying the corpus.
    one = text.cut_to_chars([PROSE.strip()], 40)
    assert one == ["The small red square sits on a blue"]


def test_corpus_too_small_refused_at_validation_and_no_job(tmp_path, studio):
    path = tmp_path / "tiny.txt"
    path.write_text(PROSE * 3, "utf-8")
    studio.add_text_dataset(path, "tiny")
    with pytest.raises(DatasetError, match="too little text for this job.*fewer than"):
        studio.submit({"method": "gpt", "dataset": "tiny", "preset": "quick"})
    with pytest.raises(DatasetError, match="too little text"):
        studio.submit(
            {
                "method": "bert",
                "dataset": "tiny",
                "params": {
                    "context_length": 16,
                    "batch_size": 8,
                    "vocab_size": 128,
                    "max_corpus_chars": 40,
                },
            }
        )
    assert studio.jobs() == []
    # Small enough settings pass, and a few steps train on it.
    summary = studio.run_foreground(
        {
            "method": "bert",
            "dataset": "tiny",
            "params": {
                "steps": 3,
                "batch_size": 2,
                "context_length": 16,
                "backbone": "tiny",
                "vocab_size": 200,
                "warmup_steps": 1,
                "precision": "fp32",
            },
        }
    )
    assert summary["status"] == "completed", summary["error"]


def _save_hf(folder):
    import datasets

    datasets.disable_progress_bars()
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(
                {
                    "review": [f"review number {i} says the film was fine" for i in range(50)],
                    "title": [f"title {i}" for i in range(50)],
                    "stars": list(range(50)),
                }
            ),
            "test": datasets.Dataset.from_dict(
                {"review": ["held out"], "title": ["t"], "stars": [1]}
            ),
        }
    ).save_to_disk(str(folder))
    return folder


def test_hf_dataset_saved_on_disk_with_a_chosen_column(tmp_path, studio):
    folder = _save_hf(tmp_path / "saved")
    assert studio.describe_hf_dataset(str(folder)) == {
        "split": "train",
        "columns": ["review", "title"],
        "column": "",
    }
    with pytest.raises(DatasetError, match=r"several text columns \(review, title\)"):
        studio.add_text_dataset(folder, "reviews")
    with pytest.raises(DatasetError, match="does not hold text"):
        studio.add_text_dataset(folder, "reviews", column="stars")
    with pytest.raises(DatasetError, match="no split 'dev'; its splits: train, test"):
        studio.add_text_dataset(folder, "reviews", column="review", split="dev")
    info = studio.add_text_dataset(folder, "reviews", column="review")
    assert "column 'review' of split 'train'" in info["message"]
    docs = text.corpus_texts("reviews", "train") + text.corpus_texts("reviews", "test")
    assert len(docs) == 50 and "review number 0 says the film was fine" in docs
    assert text.corpus_texts("reviews", "train", max_chars=60) == [
        "review number 0 says the film was fine",
        "review number 1 says",
    ]


def test_hf_name_offline_fails_at_once(studio):
    start = time.perf_counter()
    with pytest.raises(DatasetError, match="Hub cannot be reached.*save_to_disk"):
        studio.add_text_dataset("nobody-here/no-such-dataset", "remote")
    assert time.perf_counter() - start < 5  # no retry loop
    with pytest.raises(DatasetError, match="neither a folder on the server nor"):
        studio.add_text_dataset("/no/such/folder", "remote")


def test_cli_adds_text_file_and_hf_dataset(tmp_path, capsys):
    from engine.__main__ import main

    home = str(tmp_path / "home")
    path = tmp_path / "story.txt"
    path.write_text(PROSE, "utf-8")
    assert main(["datasets", "--add", str(path), "--json", "--home", home]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "story"
    folder = _save_hf(tmp_path / "saved")
    assert (
        main(
            [
                "datasets",
                "--add",
                str(folder),
                "--name",
                "titles",
                "--column",
                "title",
                "--home",
                home,
            ]
        )
        == 0
    )
    assert "Added text dataset 'titles'" in capsys.readouterr().out
    assert main(["datasets", "--add", "someone/offline-set", "--home", home]) == 2
    assert "cannot be reached" in capsys.readouterr().err
    assert main(["datasets", "--home", home]) == 0
    listing = capsys.readouterr().out
    assert "story" in listing and "titles" in listing and "Your text" in listing


def test_a_text_name_replaces_an_image_name_cleanly(tmp_path, studio):
    from tests.engine.data.test_user_images import make_folder

    studio.add_image_dataset(make_folder(tmp_path / "pics"), "mine")
    path = tmp_path / "mine.txt"
    path.write_text(PROSE, "utf-8")
    info = studio.add_text_dataset(path, "mine")
    assert info["kind"] == "text" and text.corpus_texts("mine", "train")
    with pytest.raises(SpecError, match="holds text"):
        studio.validate({"method": "simclr", "dataset": "mine"})
    with pytest.raises(DatasetError, match="builtin dataset"):
        studio.add_text_dataset(path, "pydocs")


def test_read_and_write_failures_are_clear_and_leave_nothing(tmp_path, studio, monkeypatch):
    import errno
    from pathlib import Path

    path = tmp_path / "story.txt"
    path.write_text(PROSE, "utf-8")
    studio.add_text_dataset(path, "story")
    stored = tmp_path / "home" / "datasets" / "story" / user_text.CORPUS_FILE
    before = stored.read_bytes()

    def unreadable(self):
        raise OSError(errno.EIO, "Input/output error")

    with monkeypatch.context() as patched:
        patched.setattr(Path, "read_bytes", unreadable)
        with pytest.raises(DatasetError, match=r"story.txt could not be read \(Input/output"):
            studio.add_text_dataset(path, "story")

    def disk_full(documents, out_dir):
        (out_dir / user_text.CORPUS_FILE).write_text("half of it", "utf-8")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(user_text, "write_corpus", disk_full)
    with pytest.raises(DatasetError, match=r"'story' could not be written .*No space left"):
        studio.add_text_dataset(path, "story")
    assert stored.read_bytes() == before  # the earlier corpus is whole, nothing else is left
    assert [p.name for p in (tmp_path / "home" / "datasets").iterdir()] == ["story"]
