"""Where the home folder lives: --home, $PRETEXT_HOME, a Space's persistent storage, ./.pretext."""

import pytest

from engine import home as home_module
from engine.home import Home


@pytest.fixture
def space(tmp_path, monkeypatch):
    """A fake Space: SPACE_ID set, /data replaced by a writable folder, no $PRETEXT_HOME."""
    storage = tmp_path / "data"
    storage.mkdir()
    monkeypatch.setattr(home_module, "SPACE_STORAGE", storage)
    monkeypatch.setenv("SPACE_ID", "someone/pretext-studio")
    monkeypatch.delenv("PRETEXT_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    return storage


def test_a_space_with_persistent_storage_keeps_its_home_there(space):
    assert Home.resolve().root == (space / "pretext").resolve()
    assert (space / "pretext").is_dir()


def test_pretext_home_and_an_explicit_home_still_win(space, tmp_path, monkeypatch):
    assert Home.resolve(tmp_path / "given").root == (tmp_path / "given").resolve()
    monkeypatch.setenv("PRETEXT_HOME", str(tmp_path / "env"))
    assert Home.resolve().root == (tmp_path / "env").resolve()


def test_a_space_without_storage_uses_the_working_folder(space, tmp_path):
    space.rmdir()
    assert Home.resolve().root == (tmp_path / ".pretext").resolve()


def test_read_only_storage_is_not_used(space, tmp_path, monkeypatch):
    # os.access as a non-root user sees a read-only mount (root would write anyway).
    monkeypatch.setattr(home_module.os, "access", lambda path, mode: False)
    assert Home.resolve().root == (tmp_path / ".pretext").resolve()


def test_off_a_space_storage_is_ignored(space, tmp_path, monkeypatch):
    monkeypatch.delenv("SPACE_ID")
    assert Home.resolve().root == (tmp_path / ".pretext").resolve()


def test_the_start_up_line_says_whether_runs_survive_a_restart(space, tmp_path, monkeypatch):
    assert "kept across restarts" in home_module.space_note(Home.resolve().root)
    assert "not persistent" in home_module.space_note(tmp_path / ".pretext")
    monkeypatch.delenv("SPACE_ID")
    assert home_module.space_note(tmp_path / ".pretext") == ""
