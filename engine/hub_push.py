"""Push an exported run folder to the Hugging Face Hub as a model repository.

    token = ready("user/name", token=None)         # HubPushError now, before any work
    url = push(folder, "user/name", token=token, private=False)

`ready` refuses at once, with one line, what cannot work: a malformed repo id, offline mode
(HF_HUB_OFFLINE, where huggingface_hub would raise `OfflineModeIsEnabled` on the first
request), or no token (the argument, else HF_TOKEN or the token `hf auth login` saved). `push`
then runs `create_repo(exist_ok=True)` and `upload_folder` (keyword arguments only in
huggingface_hub 2.4) and turns the Hub's refusals (a bad token, a repo of someone else) into
the same kind of line. A token is never logged, stored or put in a message.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from engine.errors import StudioError

# The Hub's rule for a repo id: namespace/name, letters, digits, "-", "_", ".", at most 96.
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


class HubPushError(StudioError, RuntimeError):
    """A push cannot happen; the message says why and what to do."""


def check_repo_id(repo_id: object) -> str:
    """`repo_id` as given when it has the form user/name; HubPushError otherwise."""
    text = repo_id.strip() if isinstance(repo_id, str) else ""
    if not _REPO_ID.match(text) or ".." in text or text.endswith((".git", ".")):
        shown = repr(repo_id)[:80]
        raise HubPushError(
            f"repo {shown} is not a Hub repo id; write it as USER/NAME (your user or "
            "organisation, a slash, the model's name: letters, digits, - _ .)"
        )
    return text


def ready(repo_id: object, token: str | None = None) -> str:
    """The token to push `repo_id` with, or HubPushError when a push cannot work here: a
    malformed repo id, offline mode, no token. Sends nothing anywhere."""
    from huggingface_hub import constants, get_token

    check_repo_id(repo_id)
    if constants.is_offline_mode():
        raise HubPushError(
            "the Hub is switched off here (HF_HUB_OFFLINE is set): start the studio without "
            "HF_HUB_OFFLINE=1 to push; nothing was uploaded"
        )
    token = (token or "").strip() or get_token()
    if not token:
        raise HubPushError(
            "no Hugging Face token: paste a write token (huggingface.co/settings/tokens) or "
            "set HF_TOKEN, then push again; nothing was uploaded"
        )
    return token


def push(
    folder: str | os.PathLike, repo_id: str, token: str | None = None, private: bool = False
) -> str:
    """Upload `folder` (an export) to model repo `repo_id`, creating it (private when asked)
    if needed; returns the repo's URL. HubPushError for everything the user can fix."""
    import httpx2  # huggingface_hub 2.4's HTTP client
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    folder = Path(folder)
    if not (folder / "README.md").exists():
        raise HubPushError(f"{folder} is not an export (no README.md); export the run first")
    repo_id = check_repo_id(repo_id)
    token = ready(repo_id, token)
    api = HfApi(token=token)
    try:
        url = api.create_repo(
            repo_id=repo_id, token=token, private=bool(private), repo_type="model", exist_ok=True
        )
        api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            token=token,
            repo_type="model",
            commit_message=f"Upload {folder.name} from Pretext Studio",
        )
    except OfflineModeIsEnabled:
        raise HubPushError(
            "the Hub is switched off here (HF_HUB_OFFLINE is set); nothing was uploaded"
        ) from None
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        hint = {
            401: "the token was refused: paste a valid write token",
            403: f"this token may not write to {repo_id}: use a write token of its owner",
            404: f"{repo_id} was not found: check the user or organisation name",
        }.get(status, "the Hub refused the upload")
        raise HubPushError(f"push to {repo_id} failed ({status}): {hint}") from None
    except (httpx2.TransportError, OSError) as error:  # no network: refused, DNS, timeouts
        raise HubPushError(
            f"cannot reach the Hub ({type(error).__name__}); check the network and push again"
        ) from None
    return str(url)
