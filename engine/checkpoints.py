"""Checkpoints in a run folder, written so a crash never leaves a half-written one.

Layout of `runs/<id>/checkpoints/step_000100/`:
  model.safetensors    the method's weights and persistent buffers (MoCo's queue and pointer,
                       DINO's centre, EMA targets), via `safetensors.torch.save_model`, which
                       handles shared and channels-last tensors
  training_state.pt    optimizer, scheduler, the rest of the epoch's order, and every random
                       state the next step draws from (the sampler, torch CPU and CUDA, numpy,
                       `random`); tensors and plain types only, read back with
                       `torch.load(weights_only=True)` and only from the job's own run folder
  constructor.json     what the method's constructor was given: its registry name, its config
                       and its `data_info` (the data's `TrainData.info`: number of classes,
                       vocabulary size, ...), so `engine.runs.open_run` rebuilds it without
                       loading the dataset; the info's tensors are in `data_info.safetensors`
                       and its tokenizer in `tokenizer/` (a folder named by its key)
  pretrained/          what the method exports for other tools (e.g. `save_pretrained`)
A checkpoint is written under a temporary name and renamed when complete; `LATEST` names the
newest one and is itself replaced atomically. `rotate` then keeps the KEEP newest; `sweep`
removes what a killed writer left behind (`.tmp-step_*` folders, `.LATEST-*` pointer files).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from engine.methods.base import SSLMethod

KEEP = 2
STEP_PREFIX = "step_"
CONSTRUCTOR_FILE = "constructor.json"
INFO_TENSORS_FILE = "data_info.safetensors"


class Restored(NamedTuple):
    step: int
    epoch_rest: torch.Tensor  # (n,) int64 row indices the epoch has not drawn yet; may be empty


class Constructor(NamedTuple):
    """A method's constructor inputs as a checkpoint recorded them."""

    method: str  # registry name
    config: dict[str, Any]  # the config's fields
    data_info: dict[str, Any]  # TrainData.info, its tensors and tokenizer read back


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def step_of(path: Path) -> int:
    """The step a checkpoint folder holds, from its name (`step_0000100` -> 100)."""
    name = Path(path).name
    if name.startswith(STEP_PREFIX) and name[len(STEP_PREFIX) :].isdigit():
        return int(name[len(STEP_PREFIX) :])
    state = torch.load(Path(path) / "training_state.pt", weights_only=True, map_location="cpu")
    return int(state["step"])


def save(
    run_dir: Path,
    step: int,
    method: SSLMethod,
    optimizer,
    scheduler,
    sampler: torch.Generator,
    epoch_rest: torch.Tensor,
) -> Path:
    """Write checkpoint `step` and make it the LATEST; older ones stay until `rotate`."""
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{STEP_PREFIX}{step:07d}"
    tmp = root / f".tmp-{STEP_PREFIX}{step:07d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_model(method, str(tmp / "model.safetensors"))
    _save_constructor(tmp, method)
    torch.save(
        {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "sampler": sampler.get_state(),
            "epoch_rest": epoch_rest.detach().to("cpu", torch.long).clone(),
            **_random_states(),
        },
        tmp / "training_state.pt",
    )
    method.export(tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    pointer = root / f".LATEST-{os.getpid()}"
    pointer.write_text(final.name)
    os.replace(pointer, root / "LATEST")
    return final


def _save_constructor(folder: Path, method: SSLMethod) -> None:
    """Write `constructor.json` (and the info's tensors and tokenizer) into `folder`. A
    `data_info` value that is neither a tensor, nor a tokenizer (anything with
    `save_pretrained`), nor JSON raises TypeError: the method's test catches it."""
    plain: dict[str, Any] = {}
    tensors: dict[str, torch.Tensor] = {}
    tokenizers: dict[str, str] = {}
    for key, value in method.data_info.items():
        if isinstance(value, torch.Tensor):
            tensors[key] = value.detach().to("cpu").contiguous()
        elif hasattr(value, "save_pretrained"):
            value.save_pretrained(folder / key)
            tokenizers[key] = key  # relative to the checkpoint folder
        else:
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                raise TypeError(
                    f"{method.name}'s data_info[{key!r}] is a "
                    f"{type(value).__name__}; a checkpoint stores tensors, "
                    "tokenizers and JSON values"
                ) from None
            plain[key] = value
    if tensors:
        save_file(tensors, str(folder / INFO_TENSORS_FILE))
    record = {
        "method": method.name,
        "config": dataclasses.asdict(method.config),
        "data_info": plain,
        "tensors": sorted(tensors),
        "tokenizers": tokenizers,
    }
    (folder / CONSTRUCTOR_FILE).write_text(json.dumps(record, indent=1))


def constructor(path: Path, data: bool = True) -> Constructor | None:
    """The constructor inputs checkpoint `path` recorded; None for a checkpoint written
    before checkpoints recorded them. Without `data`, only the JSON: the info's tensors and
    tokenizer are left out (quick, to read the config)."""
    path = Path(path)
    if not (path / CONSTRUCTOR_FILE).exists():
        return None
    record = json.loads((path / CONSTRUCTOR_FILE).read_text())
    info = dict(record["data_info"])
    if data and record["tensors"]:
        info.update(load_file(str(path / INFO_TENSORS_FILE)))
    if data and record["tokenizers"]:
        from transformers import AutoTokenizer

        for key, folder in record["tokenizers"].items():
            info[key] = AutoTokenizer.from_pretrained(path / folder)
    return Constructor(record["method"], record["config"], info)


def at_step(run_dir: Path, step: int) -> Path | None:
    """The complete checkpoint of `step` in a run, or None."""
    path = checkpoint_dir(run_dir) / f"{STEP_PREFIX}{step:07d}"
    return path if (path / "model.safetensors").exists() else None


def retiring(run_dir: Path) -> list[Path]:
    """The checkpoint folders `rotate` removes next: all but the KEEP newest."""
    root = checkpoint_dir(run_dir)
    return sorted(p for p in root.glob(f"{STEP_PREFIX}*") if p.is_dir())[:-KEEP]


def rotate(run_dir: Path) -> list[Path]:
    """Remove all but the KEEP newest checkpoints; returns the removed folders."""
    old = retiring(run_dir)
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
    return old


def sweep(run_dir: Path) -> list[Path]:
    """Remove what a writer killed mid-save left: `.tmp-step_*` folders and `.LATEST-*`
    pointer files. Call it only while no other process writes this run's checkpoints (a
    worker, when it starts). Returns what was removed."""
    root = checkpoint_dir(run_dir)
    stale = sorted([*root.glob(f".tmp-{STEP_PREFIX}*"), *root.glob(".LATEST-*")])
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return stale


def latest(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    pointer = checkpoint_dir(run_dir) / "LATEST"
    if pointer.exists():
        path = checkpoint_dir(run_dir) / pointer.read_text().strip()
        if (path / "model.safetensors").exists():
            return path
    return None


def load(path: Path, method: SSLMethod) -> int:
    """Restore a checkpoint's weights and buffers into `method`; returns its step. Touches no
    random state (evaluation and the lenses load checkpoints too)."""
    load_model(method, str(path / "model.safetensors"), strict=True)
    return step_of(path)


def restore(
    path: Path, method: SSLMethod, optimizer, scheduler, sampler: torch.Generator
) -> Restored:
    """Everything `save` wrote, to continue training exactly where it stopped: weights,
    optimizer, scheduler, the sampler, the global random states. Returns the step and the
    rest of the epoch's order (empty for checkpoints written before it was saved)."""
    load_model(method, str(path / "model.safetensors"), strict=True)
    state = torch.load(path / "training_state.pt", weights_only=True, map_location="cpu")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    sampler.set_state(state["sampler"])
    _set_random_states(state)
    return Restored(int(state["step"]), state.get("epoch_rest", torch.empty(0, dtype=torch.long)))


def _random_states() -> dict[str, Any]:
    """The global generators a step may draw from (the views draw from torch's CPU one; masks
    and shuffles on a GPU from its CUDA one), as types `torch.load(weights_only=True)` reads."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, words, gauss_next = random.getstate()
    states: dict[str, Any] = {
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python_rng": {"version": version, "words": list(words), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda_rng"] = torch.cuda.get_rng_state_all()
    return states


def _set_random_states(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch_rng"])
    if "numpy_rng" in state:
        saved = state["numpy_rng"]
        np.random.set_state(
            (
                saved["kind"],
                saved["keys"].numpy().astype(np.uint32),
                saved["position"],
                saved["has_gauss"],
                saved["cached_gaussian"],
            )
        )
    if "python_rng" in state:
        saved = state["python_rng"]
        random.setstate((saved["version"], tuple(saved["words"]), saved["gauss_next"]))
    if "cuda_rng" in state and torch.cuda.is_available():
        cuda_states = state["cuda_rng"]
        if len(cuda_states) == torch.cuda.device_count():  # else: resumed on other hardware
            torch.cuda.set_rng_state_all(cuda_states)
