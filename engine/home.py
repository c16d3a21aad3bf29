"""The home folder: the job database, run folders and caches, in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "PRETEXT_HOME"
DEFAULT_HOME = ".pretext"  # in the working directory; git-ignored


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def resolve(cls, home: str | os.PathLike | None = None) -> Home:
        """`home` if given, else $PRETEXT_HOME, else ./.pretext; created if missing."""
        root = Path(home or os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser().resolve()
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
