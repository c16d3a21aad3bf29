"""One loader for the lenses: a run id, a local folder or a Hub id -> (model, processor).

    model, processor = load("12", home=...)              # job 12's newest checkpoint
    model, processor = load("/path/to/run_or_checkpoint")  # a run, checkpoint or model folder
    model, processor = load("bert-base-uncased")         # the Hub, or its local cache offline

A run folder resolves to `checkpoints/<LATEST>/pretrained/` (what the methods export with
`save_pretrained`). Weights load with `use_safetensors=True` only. Whether the Hub can be
reached is decided once per process (HF_HUB_OFFLINE, else a one-second connection attempt);
offline, a Hub id loads from the local cache only and a missing one fails at once with one line,
instead of huggingface_hub retrying for ~23 s.
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from typing import Any

from engine import checks
from engine.errors import DatasetError

HUB_HOST = "huggingface.co"


class HubError(DatasetError):
    """A model cannot be found or loaded; the message says what to do."""


# model_type -> the transformers class that loads the whole pretrained model (with its head)
_MODEL_CLASSES = {
    "clip": "CLIPModel",
    "bert": "BertForMaskedLM",
    "gpt2": "GPT2LMHeadModel",
    "t5": "T5ForConditionalGeneration",
    "vit_mae": "ViTMAEForPreTraining",
}
_PROCESSOR_KINDS = {
    "clip": "processor",
    "bert": "tokenizer",
    "gpt2": "tokenizer",
    "t5": "tokenizer",
    "vit_mae": "image_processor",
    "vit": "image_processor",
}


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout_s: float = 1.0) -> bool:
    """False when HF_HUB_OFFLINE is set or huggingface.co:443 does not answer (checked once)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def hub_known_reachable() -> bool:
    """Whether `hub_reachable` already answered yes; never waits (app.py checks at start-up in
    a background thread, so a page built before the answer treats the Hub as unreachable)."""
    return hub_reachable.cache_info().currsize > 0 and hub_reachable()


def in_local_cache(repo_id: str) -> bool:
    """Whether a Hub model's config.json is in the local Hub cache (it loads offline)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except (ValueError, OSError):  # a malformed id, an unreadable cache: not cached
        return False


def resolve_folder(source: str | os.PathLike, home: str | os.PathLike | None = None) -> Path | None:
    """The model folder a run id or local path names, or None when `source` is neither."""
    text = checks.text(os.fspath(source), "model", checks.MAX_REF_CHARS, HubError).strip()
    if text.isdigit():
        from engine.home import Home

        run_dir = Home.resolve(home).run_dir(int(text))
        if not run_dir.exists():
            raise HubError(
                f"no run folder for job {text} ({run_dir}); `python -m engine jobs` lists the jobs"
            )
        path = run_dir
    else:
        path = Path(text).expanduser()
        try:
            if not path.exists():
                return None
        except OSError:  # e.g. a name past the filesystem's 255 bytes: not a folder here
            return None
    if (path / "config.json").exists():
        return path
    if (path / "pretrained" / "config.json").exists():
        return path / "pretrained"
    from engine import checkpoints

    latest = checkpoints.latest(path)
    if latest is not None and (latest / "pretrained" / "config.json").exists():
        return latest / "pretrained"
    raise HubError(
        f"{path} holds no transformers model (no config.json, pretrained/ or "
        "finished checkpoint); is the job still at its first step?"
    )


def load(
    source: str | os.PathLike, home: str | os.PathLike | None = None, device: str = "cpu"
) -> tuple[Any, Any]:
    """(model in eval mode, its processor or tokenizer) from a run id, folder or Hub id."""
    import transformers
    from transformers import AutoConfig

    folder = resolve_folder(source, home)
    local_only = folder is None and not hub_reachable()
    name = str(folder) if folder is not None else str(source).strip()
    options = {"local_files_only": True} if local_only or folder is not None else {}
    try:
        config = AutoConfig.from_pretrained(name, **options)
    except (OSError, ValueError) as exc:  # ValueError: huggingface_hub refuses the id's form
        if local_only:
            raise HubError(
                f"{checks.shown(name, 100)} is not a run id, a folder, or a model "
                "in the local Hub cache, and the Hub cannot be reached (offline)"
            ) from None
        raise HubError(
            f"cannot load {checks.shown(name, 100)}: {(str(exc).splitlines() or [repr(exc)])[0]}"
        ) from None
    model_type = config.model_type
    model_cls = getattr(transformers, _MODEL_CLASSES.get(model_type, "AutoModel"))
    model = model_cls.from_pretrained(name, use_safetensors=True, **options).to(device).eval()
    # Unlisted vision models (DINOv2 with or without registers, DeiT, BEiT, ...) take pixels:
    # their image processor (DINOv2's crops 224 px although its config says 518).
    vision = getattr(model, "main_input_name", "") == "pixel_values"
    kind = _PROCESSOR_KINDS.get(model_type, "image_processor" if vision else "tokenizer")
    auto = {
        "processor": transformers.AutoProcessor,
        "tokenizer": transformers.AutoTokenizer,
        "image_processor": transformers.AutoImageProcessor,
    }[kind]
    try:
        processor = auto.from_pretrained(name, **options)
    except (OSError, ValueError, KeyError):
        processor = None
    return model, processor
