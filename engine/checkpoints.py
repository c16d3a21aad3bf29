"""Checkpoints in a run folder, written so a crash never leaves a half-written one.

Layout of `runs/<id>/checkpoints/step_000100/`:
  model.safetensors    the method's weights (`safetensors.torch.save_model`, which handles
                       shared and channels-last tensors)
  training_state.pt    optimizer, scheduler, sampler RNG and torch RNG; tensors and plain types
                       only, read back with `torch.load(weights_only=True)` and only from the
                       job's own run folder
  pretrained/          what the method exports for other tools (e.g. `save_pretrained`)
A checkpoint is written under a temporary name and renamed when complete; `LATEST` names the
newest one and is itself replaced atomically. The two newest checkpoints are kept.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

from engine.methods.base import SSLMethod

KEEP = 2


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save(run_dir: Path, step: int, method: SSLMethod, optimizer, scheduler,
         sampler: torch.Generator) -> Path:
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:07d}"
    tmp = root / f".tmp-step_{step:07d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_model(method, str(tmp / "model.safetensors"))
    torch.save({"step": step, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "sampler": sampler.get_state(),
                "torch_rng": torch.get_rng_state()}, tmp / "training_state.pt")
    method.export(tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    pointer = root / f".LATEST-{os.getpid()}"
    pointer.write_text(final.name)
    os.replace(pointer, root / "LATEST")
    for old in sorted(p for p in root.glob("step_*") if p.is_dir())[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    pointer = checkpoint_dir(run_dir) / "LATEST"
    if pointer.exists():
        path = checkpoint_dir(run_dir) / pointer.read_text().strip()
        if (path / "model.safetensors").exists():
            return path
    return None


def load(path: Path, method: SSLMethod, optimizer=None, scheduler=None,
         sampler: torch.Generator | None = None) -> int:
    """Restore weights (and training state when given); returns the checkpoint's step."""
    missing, unexpected = load_model(method, str(path / "model.safetensors"), strict=True)
    state = torch.load(path / "training_state.pt", weights_only=True, map_location="cpu")
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    if sampler is not None:
        sampler.set_state(state["sampler"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])
