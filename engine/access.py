"""Which server paths a caller may read: anywhere (the CLI), or only inside the data roots (the
web app).

The CLI is run by the machine's owner and reads any path. The web app builds its `Studio` with
`ServerPaths.from_env()`: a path typed into the page or sent to any endpoint is read only when
its real path (symlinks followed, `..` resolved) lies inside one of the folders listed in
`PRETEXT_DATA_ROOTS` (colon-separated), or in a folder the app adds itself (Gradio's upload
folder). With no roots, every typed server path is refused and the page hides those inputs.

Containment is decided on resolved real paths (`Path.is_relative_to`), never on string prefixes:
`/data-evil` is not inside `/data`, and a symlink inside a root that points outside it is
outside. Callers read the path this returns (the resolved one), not the text they were given.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from engine.errors import DatasetError

ROOTS_ENV = "PRETEXT_DATA_ROOTS"
MAX_PATH_CHARS = 4096
# A Hugging Face Hub id: "name" or "owner/name"; letters, digits, '-', '_', '.'; no "..".
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})?$")


class AccessError(DatasetError):
    """A path outside the folders this studio may read; the message says what to do."""


def is_hub_id(text: str) -> bool:
    return bool(HUB_ID.match(text)) and ".." not in text


@dataclass(frozen=True)
class ServerPaths:
    """The server-path policy of one `Studio`: `restricted` False reads anywhere."""

    restricted: bool = False
    roots: tuple[Path, ...] = ()  # the configured data roots, resolved
    hidden: tuple[Path, ...] = ()  # also allowed, never shown (Gradio's upload folder)

    @classmethod
    def anywhere(cls) -> ServerPaths:
        return cls()

    @classmethod
    def inside(
        cls, roots: Iterable[str | os.PathLike], hidden: Iterable[str | os.PathLike] = ()
    ) -> ServerPaths:
        """Only paths inside `roots` (folders that must exist: a typo fails here, not at the
        first import) and `hidden`."""
        checked = []
        for item in roots:
            text = str(item).strip()
            if not text:
                continue
            if not os.path.isdir(text):
                raise AccessError(f"data root {text!r} ({ROOTS_ENV}) is not a folder")
            checked.append(Path(os.path.realpath(text)))
        return cls(
            True,
            tuple(checked),
            tuple(Path(os.path.realpath(str(h))) for h in hidden if str(h).strip()),
        )

    @classmethod
    def from_env(
        cls, hidden: Iterable[str | os.PathLike] = (), environ: dict[str, str] | None = None
    ) -> ServerPaths:
        """The web app's policy: $PRETEXT_DATA_ROOTS (colon-separated) plus `hidden`."""
        env = os.environ if environ is None else environ
        text = env.get(ROOTS_ENV, "")
        return cls.inside([p for p in text.split(os.pathsep) if p.strip()], hidden)

    @property
    def server_paths_allowed(self) -> bool:
        """Whether a typed server path can be accepted at all (the page shows the inputs)."""
        return not self.restricted or bool(self.roots)

    def describe(self) -> str:
        if not self.restricted:
            return "server paths: any (CLI)"
        if not self.roots:
            return f"server paths: none (set {ROOTS_ENV} to allow data folders)"
        return "server paths: inside " + ", ".join(str(r) for r in self.roots)

    def check(self, text: str | os.PathLike, what: str = "path") -> Path:
        """The resolved path `text` names, if this policy lets it be read; else AccessError."""
        raw = os.fspath(text) if isinstance(text, os.PathLike) else text
        if not isinstance(raw, str):
            raise AccessError(f"{what} must be text, got {type(raw).__name__}")
        raw = raw.strip()
        if not raw:
            raise AccessError(f"{what} is empty")
        if len(raw) > MAX_PATH_CHARS or "\x00" in raw:
            raise AccessError(f"{what} is not a usable path ({len(raw)} characters)")
        if not self.restricted:
            return Path(raw).expanduser()
        real = Path(os.path.realpath(raw)) if os.path.isabs(raw) else None
        if real is not None and any(
            real == root or real.is_relative_to(root) for root in self.roots + self.hidden
        ):
            return real
        if not self.roots:
            raise AccessError(
                f"reading files on the server is turned off here ({what} "
                f"{_short(raw)!r}): upload the file instead, or the studio's "
                f"owner lists data folders in {ROOTS_ENV}"
            )
        if real is None:
            raise AccessError(
                f"{what} {_short(raw)!r} must be a full path inside a data "
                f"folder: {self._roots_text()}"
            )
        raise AccessError(
            f"{what} {_short(raw)!r} is outside the data folders this studio "
            f"may read ({self._roots_text()}); put the data there, or upload it"
        )

    def check_source(self, text: str, what: str = "model") -> str:
        """A run id, Hub id or server path as given, after checking a path against the roots.

        Restricted, a Hub-id-shaped name that also exists as a relative path on the server is
        refused (the loaders would read the file), and anything else is a path to check."""
        if not isinstance(text, str):
            raise AccessError(f"{what} must be text, got {type(text).__name__}")
        text = text.strip()
        if not self.restricted or not text or text.isdigit():
            return text
        if is_hub_id(text) and not text.startswith("."):
            if os.path.lexists(text):
                raise AccessError(
                    f"{what} {_short(text)!r} names a file on the server, not a "
                    "Hub id; give a run id, a Hub id, or a full path inside a "
                    f"data folder ({self._roots_text()})"
                )
            return text
        return str(self.check(text, what))

    def _roots_text(self) -> str:
        return ", ".join(str(r) for r in self.roots) or f"none; see {ROOTS_ENV}"


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
