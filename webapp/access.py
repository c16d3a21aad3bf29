"""Who may change things: the deployment mode, the owner sign-in, and the guarded Studio.

Three deployments (README, "Exposure"):
  local    loopback host, no --auth: the person at the keyboard owns everything.
  private  --auth USER:PASS (or $PRETEXT_AUTH): Gradio's login in front of the whole app; every
           signed-in user owns it.
  public   a Hugging Face Space, or a non-loopback host without --auth: everyone is a viewer
           until the owner signs in, with Hugging Face OAuth on a Space (the Space's author and
           the users in $PRETEXT_OWNERS) or with the owner key ($PRETEXT_OWNER_KEY) typed into
           the page once (API clients send it as the `X-Pretext-Owner-Key` header).
Two overrides: `viewer` (--viewer, $PRETEXT_VIEWER=1) makes everyone a viewer, and `open`
(--open) gives a public host to everyone, knowingly.

Every handler reaches the engine through `GuardedStudio`, so the check cannot be forgotten by a
new tab: its mutating methods (`MUTATING`) ask `Access.may_change` about the request being
served (Gradio's request context) and raise `ViewerError` for a viewer. The page also disables
the controls (`may_change()` for the current request), but the server check is the one that
counts.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from engine.contract import Lenses, PathPolicy, Studio
from engine.errors import JobError

log = logging.getLogger(__name__)

AUTH_ENV, VIEWER_ENV = "PRETEXT_AUTH", "PRETEXT_VIEWER"
OWNER_KEY_ENV, OWNERS_ENV = "PRETEXT_OWNER_KEY", "PRETEXT_OWNERS"
OWNER_KEY_HEADER = "x-pretext-owner-key"
OAUTH_ENV = ("OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET", "OAUTH_SCOPES", "OPENID_PROVIDER_URL")
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
MODES = ("local", "private", "public", "viewer", "open")
# The Studio methods that change something (jobs, data, stored evaluations). Everything else
# reads (the lenses too), and stays open to viewers.
MUTATING = (
    "submit",
    "cancel",
    "resume",
    "add_image_dataset",
    "add_text_dataset",
    "describe_hf_dataset",
    "add_torchvision_dataset",
    "add_hf_image_dataset",
    "evaluate",
    "evaluate_baseline",
    "evaluate_model",
    "run_foreground",
    "resume_foreground",
    "demo_pack",
    "export",
    "push",
)
SIGN_IN_DELAY_S = 1.0  # after a wrong owner key: slows guessing down


class ViewerError(JobError):
    """A viewer asked for a change; the message says how the owner signs in."""


def on_space(environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get("SYSTEM") == "spaces" and bool(env.get("SPACE_ID"))


def parse_auth(text: str | None) -> tuple[str, str] | None:
    """ "USER:PASS" -> (user, password); None for no text. A malformed value raises ValueError."""
    if not text:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ValueError(f"--auth/{AUTH_ENV} must be USER:PASS with both parts non-empty")
    return user, password


def current_request() -> Any:
    """The request Gradio is serving in this thread, or None outside a handler."""
    from gradio.context import LocalContext

    return LocalContext.request.get(None)


@dataclass
class Access:
    """The deployment mode and, in public mode, which sessions belong to the owner."""

    mode: str = "local"
    owner_key: str | None = None
    owners: frozenset[str] = frozenset()  # Hugging Face user names (a Space's OAuth)
    oauth: bool = False  # a Space with Hugging Face sign-in
    _sessions: set[str] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown access mode {self.mode!r}; one of {MODES}")

    @classmethod
    def resolve(
        cls,
        host: str | None,
        auth: tuple[str, str] | None = None,
        viewer: bool = False,
        open_: bool = False,
        environ: dict[str, str] | None = None,
    ) -> Access:
        """The mode for a server on `host` (None: Gradio's $GRADIO_SERVER_NAME, else
        loopback) with these flags and environment."""
        env = os.environ if environ is None else environ
        space = on_space(env)
        host = host or env.get("GRADIO_SERVER_NAME") or "127.0.0.1"
        owners = {n.strip() for n in env.get(OWNERS_ENV, "").split(",") if n.strip()}
        if space and env.get("SPACE_AUTHOR_NAME"):
            owners.add(env["SPACE_AUTHOR_NAME"])
        key = env.get(OWNER_KEY_ENV) or None
        if viewer or env.get(VIEWER_ENV, "").lower() in ("1", "true", "yes", "on"):
            mode = "viewer"
        elif auth is not None:
            mode = "private"
        elif open_:
            mode = "open"
        elif space or host not in LOOPBACK:
            mode = "public"
        else:
            mode = "local"
        # Sign-in with Hugging Face needs the Space's OAuth app (`hf_oauth: true` in the
        # README's front matter sets these); without it Gradio refuses to start.
        oauth = space and mode == "public" and all(env.get(name) for name in OAUTH_ENV)
        return cls(mode, key, frozenset(owners), oauth=oauth)

    # ---- the questions -------------------------------------------------------------------
    @property
    def can_sign_in(self) -> bool:
        """Whether a viewer can become the owner in this mode (a key or OAuth is set up)."""
        return self.mode == "public" and (self.owner_key is not None or self.oauth)

    def may_change(self, request: Any = None) -> bool:
        if self.mode in ("local", "private", "open"):
            return True
        if self.mode == "viewer" or request is None:
            return False
        session = getattr(request, "session_hash", None)
        with self._lock:
            if session and session in self._sessions:
                return True
        headers = getattr(request, "headers", None) or {}
        sent = headers.get(OWNER_KEY_HEADER) if hasattr(headers, "get") else None
        return bool(sent) and self._key_matches(sent)

    def require_owner(self, request: Any, action: str) -> None:
        if not self.may_change(request):
            raise ViewerError(f"{action.replace('_', ' ')} is not allowed: {self.viewer_hint()}")

    def viewer_hint(self) -> str:
        if self.mode == "viewer":
            return "this studio runs in viewer mode (look at every run; change nothing)"
        if self.oauth and self.owner_key:
            return "you are a viewer; the owner signs in with Hugging Face or the owner key"
        if self.oauth:
            return "you are a viewer; the owner signs in with Hugging Face"
        if self.owner_key:
            return "you are a viewer; the owner signs in with the owner key"
        return (
            f"you are a viewer; this public studio has no owner sign-in (set "
            f"{OWNER_KEY_ENV}, or run it with --auth)"
        )

    # ---- signing in ----------------------------------------------------------------------
    def sign_in_with_key(self, key: str | None, request: Any) -> bool:
        """True (and the session is the owner's from now on) when `key` is the owner key."""
        session = getattr(request, "session_hash", None)
        if self.mode != "public" or not session or not self._key_matches(key):
            time.sleep(SIGN_IN_DELAY_S)
            return False
        with self._lock:
            self._sessions.add(session)
        log.info("owner signed in with the owner key (session %s...)", session[:6])
        return True

    def sign_in_with_profile(self, username: str | None, request: Any) -> bool:
        """A Space's OAuth: the session is the owner's when `username` is one of the owners."""
        session = getattr(request, "session_hash", None)
        if self.mode != "public" or not self.oauth or not session or not username:
            return False
        if username not in self.owners:
            return False
        with self._lock:
            self._sessions.add(session)
        return True

    def sign_out(self, request: Any) -> None:
        with self._lock:
            self._sessions.discard(getattr(request, "session_hash", None))

    def _key_matches(self, key: Any) -> bool:
        if not self.owner_key or not isinstance(key, str) or not key:
            return False
        return hmac.compare_digest(key.encode(), self.owner_key.encode())

    def describe(self) -> str:
        """The first log line: which mode, and what it means."""
        return {
            "local": "local mode (loopback): whoever uses this machine owns every job",
            "private": "private mode (--auth): Gradio's login in front; every signed-in user "
            "owns every job",
            "public": "public mode: visitors are viewers (they look, they change nothing); "
            + (
                "the owner signs in with "
                + " or ".join(
                    (["Hugging Face"] if self.oauth else [])
                    + (["the owner key"] if self.owner_key else [])
                )
                if self.can_sign_in
                else f"no owner sign-in is set up ({OWNER_KEY_ENV}), so nobody can change anything"
            ),
            "viewer": "viewer mode (--viewer): everyone looks, nobody changes anything",
            "open": "open mode (--open): a public host where every visitor owns every job",
        }[self.mode]


class GuardedStudio:
    """`engine.api.Studio` for the web: the same methods, with the mutating ones (`MUTATING`)
    refused to viewers, checked against the request being served. It satisfies the
    `engine.contract.Studio` protocol the tabs are typed against: every attribute is the
    wrapped studio's (`__getattr__`), the mutating methods wrapped in the check."""

    def __init__(
        self, studio: Studio, access: Access, request: Callable[[], Any] = current_request
    ) -> None:
        self._studio, self.access, self._request = studio, access, request

    def may_change(self) -> bool:
        """Whether the request being served may start, stop, add or evaluate."""
        return self.access.may_change(self._request())

    @property
    def lenses(self) -> Lenses:
        """The wrapped studio's lenses, unguarded: a lens reads a model, it changes nothing."""
        return self._studio.lenses

    @property
    def paths(self) -> PathPolicy:
        return self._studio.paths

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._studio, name)
        if name not in MUTATING:
            return value

        @wraps(value)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            self.access.require_owner(self._request(), name)
            return value(*args, **kwargs)

        return guarded


def may_change(studio: object) -> bool:
    """For handlers given either a Studio (tests, the CLI) or a GuardedStudio."""
    check = getattr(studio, "may_change", None)
    return True if check is None else bool(check())
