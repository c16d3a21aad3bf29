"""The home folder: the job database, run folders and caches, in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "PRETEXT_HOME"
DEFAULT_HOME = ".pretext"  # in the working directory; git-ignored
# A Hugging Face Space sets SPACE_ID; its persistent storage, when the owner added it, is
# mounted at /data and survives restarts (the app folder does not).
SPACE_ENV = "SPACE_ID"
SPACE_STORAGE = Path("/data")
SPACE_HOME = "pretext"  # inside SPACE_STORAGE


def default_root() -> Path:
    """$PRETEXT_HOME, else /data/pretext on a Space with persistent storage, else ./.pretext."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV])
    if os.environ.get(SPACE_ENV) and persistent_storage() is not None:
        return SPACE_STORAGE / SPACE_HOME
    return Path(DEFAULT_HOME)


def persistent_storage() -> Path | None:
    """The Space's persistent storage folder when it is mounted and writable, else None."""
    if SPACE_STORAGE.is_dir() and os.access(SPACE_STORAGE, os.W_OK | os.X_OK):
        return SPACE_STORAGE
    return None


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def resolve(cls, home: str | os.PathLike | None = None) -> Home:
        """`home` if given, else `default_root()`; created if missing."""
        root = Path(home or default_root()).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        return cls(root)

    @property
    def db_path(self) -> Path:
        return self.root / "pretext.db"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    def run_dir(self, job_id: int) -> Path:
        return self.root / "runs" / str(job_id)


def space_note(root: Path) -> str:
    """What the start-up log adds after the home on a Space: kept, or lost at a restart."""
    if not os.environ.get(SPACE_ENV):
        return ""
    if root.resolve().is_relative_to(SPACE_STORAGE.resolve()):
        return " (the Space's persistent storage: kept across restarts)"
    return (
        " (not persistent: add persistent storage to the Space, mounted at /data, to keep "
        "runs across restarts)"
    )
