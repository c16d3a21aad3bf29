"""What every lens shares: its model reference, the model cache, torch threads (the input
images are in `engine.inference.images`).

    lens = Lens("attention", "DINO attention", model_types=("vit", "vit_mae", "clip"),
                wants="a ViT: a DINO run with a ViT backbone, an MAE run or a CLIP run",
                suggestions=("facebook/dino-vits16",))
    model = load_lens_model("12", lens, home)      # job 12's newest checkpoint, cached
    with model.lock, lens_threads():
        ...                                        # run it

A model reference is a run id, a local folder, or a Hub id; `engine.hub` turns it into a
transformers model (safetensors only). Here it is checked for the lens first (a run of the wrong
method, a pickle-only folder and a model of the wrong family are refused with a message that
says what would work), loaded once with eager attention (attention weights need it), and kept in
an LRU cache bounded by memory. `lock` serialises the requests on one cached model: some models
read settings from their shared config on every call (ViTMAE's mask ratio).

The web process runs lenses beside training workers on the same cores: `lens_threads` caps
torch's threads while a lens runs (PRETEXT_LENS_THREADS, default 1).
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.data.views import IMAGENET_MEAN, IMAGENET_STD
from engine.errors import StudioError

CACHE_MB = float(os.environ.get("PRETEXT_LENS_CACHE_MB", 1024))
# Runs that may still be written to are listed too: a checkpoint is complete once LATEST names it.
LISTED_STATUSES = ("completed", "cancelled", "interrupted", "failed", "running")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


class LensError(StudioError, ValueError):
    """A lens cannot use its input (image, model, setting); the message says what would work."""


@dataclass(frozen=True)
class Lens:
    """One lens's needs: the transformers model types it runs on, in words, and Hub ids to try."""

    name: str  # "attention", also the endpoint's name
    title: str  # "DINO attention"
    model_types: tuple[str, ...]  # config.model_type values it accepts
    wants: str  # "a ViT: a DINO run with a ViT backbone, ..."
    suggestions: tuple[str, ...] = ()  # Hub ids offered in the model picker


# lens name -> "module:attribute" of its Lens; a new lens adds its line here.
LENS_SPECS: dict[str, str] = {
    "attention": "engine.inference.attention:ATTENTION",
    "reconstruct": "engine.inference.reconstruct:RECONSTRUCT",
    "zero_shot": "engine.inference.zero_shot:ZERO_SHOT",
    "retrieve": "engine.inference.retrieve:RETRIEVE",
    "fill_mask": "engine.inference.fill_mask:FILL_MASK",
    "generate": "engine.inference.generate:GENERATE",
    "text2text": "engine.inference.text2text:TEXT2TEXT",
}


def get_lens(name: str) -> Lens:
    import importlib

    if name not in LENS_SPECS:
        raise LensError(f"unknown lens {name!r}; known lenses: {', '.join(LENS_SPECS)}")
    module, attribute = LENS_SPECS[name].split(":")
    return getattr(importlib.import_module(module), attribute)


# ---- torch threads -----------------------------------------------------------------------
_threads_lock = threading.Lock()
_threads_users = 0
_threads_saved = 0


@contextmanager
def lens_threads() -> Iterator[None]:
    """Cap torch's intra-op threads while any lens runs (counted, so overlapping requests from
    several web threads restore the process's setting only when the last one ends)."""
    import torch

    global _threads_users, _threads_saved
    wanted = max(1, int(os.environ.get("PRETEXT_LENS_THREADS", "1")))
    with _threads_lock:
        if _threads_users == 0:
            _threads_saved = torch.get_num_threads()
            torch.set_num_threads(wanted)
        _threads_users += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_saved)


# ---- models ------------------------------------------------------------------------------
@dataclass
class LensModel:
    """A loaded model with what the lenses need to know about it."""

    model: Any  # a transformers model in eval mode, eager attention
    processor: Any  # its processor or tokenizer, or None
    model_type: str  # config.model_type: "vit", "vit_mae", "clip", ...
    source: str  # what the user gave: "12", a folder, a Hub id
    label: str  # how messages name it: "job 12 (mae)", "facebook/dino-vits16"
    folder: Path | None  # the local folder it was loaded from (None: the Hub)
    weight_names: frozenset[str] | None  # tensor names in its weight files, when known
    nbytes: int
    lock: threading.RLock = field(default_factory=threading.RLock)
    input_size: int | None = None  # the side fed to the model when not its config's

    @property
    def vision_config(self) -> Any:
        config = self.model.config
        return getattr(config, "vision_config", None) or config

    @property
    def image_size(self) -> int:
        if self.input_size:
            return int(self.input_size)
        size = self.vision_config.image_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    @property
    def patch_size(self) -> int:
        size = self.vision_config.patch_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    @property
    def image_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) the model's pixels are normalised with: its processor's when it has one
        (Hub models, CLIP runs), else ImageNet's (what the studio's views use)."""
        processor = getattr(self.processor, "image_processor", self.processor)
        mean, std = getattr(processor, "image_mean", None), getattr(processor, "image_std", None)
        if mean is None or std is None:
            return IMAGENET_MEAN, IMAGENET_STD
        return tuple(float(v) for v in mean), tuple(float(v) for v in std)


class ModelCache:
    """Loaded models, least recently used evicted first once their parameters and buffers take
    more than `max_bytes` (a model larger than the bound alone is still kept, on its own)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[str, LensModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def get(self, key: str, load: Any) -> LensModel:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:  # two requests for one new model load it once
            with self._lock:
                if key in self._items:
                    return self._items[key]
            try:
                item = load()
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            with self._lock:
                self._items[key] = item
                while len(self._items) > 1 and self.total_bytes > self.max_bytes:
                    self._items.popitem(last=False)
            return item

    @property
    def total_bytes(self) -> int:
        return sum(item.nbytes for item in self._items.values())

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


MODEL_CACHE = ModelCache(int(CACHE_MB * 2**20))


def run_folder(run_dir: str | os.PathLike | None) -> Path | None:
    """The transformers folder (`checkpoints/<LATEST>/pretrained`) of a run, or None."""
    from engine import checkpoints

    if not run_dir:
        return None
    latest = checkpoints.latest(Path(run_dir))
    if latest is not None and (latest / "pretrained" / "config.json").exists():
        return latest / "pretrained"
    return None


def folder_model_type(folder: Path) -> str | None:
    try:
        return json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError):
        return None


def weight_names(folder: Path) -> frozenset[str] | None:
    """Names of the tensors in a folder's safetensors files (headers only), or None."""
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.exists():
        return frozenset(json.loads(index.read_text())["weight_map"])
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    names: set[str] = set()
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            names.update(f.keys())
    return frozenset(names)


def refuse_pickles(folder: Path) -> None:
    """Only safetensors weights are loaded: a folder with pickles and no safetensors is refused
    here, with a message, before transformers would say something less clear."""
    if any(folder.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise LensError(
            f"{folder} holds only {', '.join(pickles)}: pickle files, which can run "
            "code when loaded, so the studio does not load them. Save the model "
            "with save_pretrained() (safetensors) and use that folder"
        )


def wrong_family(label: str, model_type: str | None, lens: Lens) -> LensError:
    kind = f"a {model_type!r} model" if model_type else "not a model this lens knows"
    return LensError(f"{label} is {kind}; the {lens.title} lens needs {lens.wants}")


def check_job(job: dict[str, Any], lens: Lens) -> Path:
    """A job's model folder for `lens`, or a LensError saying why that job cannot be used."""
    label = f"job {job['id']} ({job['method']}, {job['backbone']})"
    folder = run_folder(job.get("run_dir"))
    if folder is None:
        if job["status"] in ("queued", "running"):
            raise LensError(
                f"{label} is {job['status']} and has no checkpoint yet; try again "
                "after its first checkpoint, or pick a finished run"
            )
        raise LensError(
            f"{label} exported no transformers model; the {lens.title} lens needs {lens.wants}"
        )
    model_type = folder_model_type(folder)
    if model_type not in lens.model_types:
        raise wrong_family(label, model_type, lens)
    return folder


def _nbytes(model: Any) -> int:
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def load_lens_model(
    source: str | os.PathLike,
    lens: Lens,
    home: str | os.PathLike,
    job: dict[str, Any] | None = None,
) -> LensModel:
    """The cached model `source` names (a run id with its `job` row, a folder or a Hub id),
    checked against `lens`; LensError/HubError with a message when it cannot serve."""
    from engine import hub

    text = str(source or "").strip()
    if not text:
        raise LensError(
            f"no model: pick a run or type a Hub id such as "
            f"{(lens.suggestions or ('a run id',))[0]}"
        )
    if job is not None:
        folder: Path | None = check_job(job, lens)
        label = f"job {job['id']} ({job['method']})"
    else:
        folder = hub.resolve_folder(text, home)
        label = str(folder) if folder is not None else text
        if folder is not None and folder_model_type(folder) not in lens.model_types:
            raise wrong_family(label, folder_model_type(folder), lens)
    if folder is not None:
        refuse_pickles(folder)
    key = str(folder.resolve()) if folder is not None else text

    def load() -> LensModel:
        try:
            model, processor = hub.load(str(folder) if folder is not None else text, home=home)
        except OSError as error:  # e.g. a Hub repo with pickle weights only
            first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise LensError(
                f"cannot load {label}: {first} (the studio loads safetensors weights only)"
            ) from None
        if hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation("eager")  # attention weights need the eager path
        return LensModel(
            model=model,
            processor=processor,
            model_type=str(model.config.model_type),
            source=text,
            label=label,
            folder=folder,
            weight_names=weight_names(folder) if folder else None,
            nbytes=_nbytes(model),
        )

    item = MODEL_CACHE.get(key, load)
    if item.model_type not in lens.model_types:
        raise wrong_family(label, item.model_type, lens)
    return item


def lens_choices(jobs: list[dict[str, Any]], lens: Lens) -> list[dict[str, Any]]:
    """The runs a lens can open: the newest completed one first (the pickers' default, e.g.
    after the demo pack), then the others newest first: [{"value": "12", "label": "..."}];
    then the lens's Hub suggestions (value = label = the Hub id)."""
    out, completed = [], []
    for job in sorted(jobs, key=lambda j: j["id"], reverse=True):
        if job["status"] not in LISTED_STATUSES:
            continue
        folder = run_folder(job.get("run_dir"))
        if folder is None or folder_model_type(folder) not in lens.model_types:
            continue
        state = "" if job["status"] == "completed" else f", {job['status']}"
        completed.append(job["status"] == "completed")
        out.append(
            {
                "value": str(job["id"]),
                "label": f"run {job['id']} · {job['method']} on {job['dataset']} "
                f"({job['backbone']}, {job['step']} steps{state})",
            }
        )
    # A run still training, or one that failed, is listed but not picked first when a
    # finished one of the same kind exists.
    if True in completed:
        out.insert(0, out.pop(completed.index(True)))
    out += [{"value": hub_id, "label": hub_id} for hub_id in lens.suggestions]
    return out
