"""One way to open a run: a stored spec resolved to its config, a checkpoint reopened as the
method that trained it.

    spec, config = resolve(job.spec)             # what the worker trains and validate stores
    method, info = open_run(job)                 # its newest checkpoint, in eval mode
    method, info = open_run(run_dir, step=100)   # a run folder and a step work too

Every checkpoint records its method's constructor inputs (`checkpoints.constructor`: the
registry name, the config, the data's `TrainData.info` with its tokenizer), so reopening builds
the method from them and loads the weights without loading the dataset: a CLIP run no longer
renders its 60,000 training pairs to learn its vocabulary size. A checkpoint written before
checkpoints recorded them is rebuilt as before, from the job's spec and `load_data`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from engine import checkpoints
from engine.config import TrainConfig, TrainSpec, build_config
from engine.data.presets import resolve_augmentation
from engine.errors import JobError
from engine.methods.base import SSLMethod
from engine.registry import get_method


@dataclass(frozen=True)
class RunInfo:
    """What `open_run` opened."""

    method: str  # registry name
    config: TrainConfig  # what the method was built with
    step: int | None  # the checkpoint's step; None when there is none (weights=False)
    checkpoint: Path | None
    run_dir: Path | None  # None: a job that has not started
    job_id: int | None
    # "checkpoint": built from the constructor inputs the checkpoint recorded; "dataset": from
    # the spec and `load_data` (a checkpoint older than that record, or none).
    rebuilt_from: Literal["checkpoint", "dataset"]


def resolve(spec: TrainSpec | dict[str, Any]) -> tuple[TrainSpec, TrainConfig]:
    """The one place a stored spec becomes its config: the method's defaults, then the preset,
    then the spec's params (each checked; SpecError names a bad one), then an `augmentation` of
    "auto" replaced by what the dataset suggests. The worker trains with it; `Studio.validate`
    checks it and stores it with the job."""
    spec = spec if isinstance(spec, TrainSpec) else TrainSpec.from_dict(spec)
    config = build_config(get_method(spec.method).Config, spec.preset, spec.params)
    return spec, resolve_augmentation(config, spec.dataset)


def new_method(
    method: str,
    config: TrainConfig,
    dataset: str,
    run_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> SSLMethod:
    """A freshly initialised method built as the trainer builds it, from `dataset`'s
    `load_data` (which may render, tokenise or fit a codebook: slow for some methods; a
    tokenizer or codebook saved in `run_dir` is reused)."""
    cls = get_method(method)
    return cls(config, cls.load_data(dataset, config, run_dir, cache_dir).info)


def describe(run: Any, step: int | None = None, *, required: bool = True) -> RunInfo:
    """What `open_run(run, step)` opens, without building it (it reads one small JSON file):
    the method, its config, the checkpoint. `run` is a job row (anything with `id`, `run_dir`
    and `spec`) or a run folder. JobError when the checkpoint is missing (unless not
    `required` and `run` is a job), or when a folder's checkpoint predates the constructor
    record (open it through its job then)."""
    is_job = not isinstance(run, (str, os.PathLike))
    job_id = run.id if is_job else None
    name = f"job {job_id}" if is_job else f"run folder {run}"
    run_dir = Path(run) if not is_job else Path(run.run_dir) if run.run_dir else None
    checkpoint = None
    if run_dir is not None:
        checkpoint = (
            checkpoints.latest(run_dir) if step is None else checkpoints.at_step(run_dir, int(step))
        )
    if checkpoint is None and (required or step is not None or not is_job):
        which = "no checkpoint yet" if step is None else f"no checkpoint of step {step}"
        raise JobError(f"{name} has {which}; open it once it has saved one")
    record = checkpoints.constructor(checkpoint, data=False) if checkpoint is not None else None
    if record is not None:
        cls = get_method(record.method)
        fields = {f.name for f in dataclasses.fields(cls.Config)}
        config = cls.Config(**{k: v for k, v in record.config.items() if k in fields})
        method = record.method
    elif is_job:
        spec, config = resolve(run.spec)
        method = spec.method
    else:
        raise JobError(
            f"{checkpoint} was saved before checkpoints recorded how to rebuild "
            "their method; open it through its job instead"
        )
    step_done = checkpoints.step_of(checkpoint) if checkpoint is not None else None
    return RunInfo(
        method,
        config,
        step_done,
        checkpoint,
        run_dir,
        job_id,
        "checkpoint" if record is not None else "dataset",
    )


def open_run(
    run: Any, step: int | None = None, *, weights: bool = True, cache_dir: Path | None = None
) -> tuple[SSLMethod, RunInfo]:
    """A run's method in eval mode with checkpoint `step` (default: the newest) loaded: built
    from the constructor inputs the checkpoint recorded, or, for a checkpoint older than that
    record, from the job's spec and `load_data` (`cache_dir`: the dataset cache).

    `run` and the errors are `describe`'s. With `weights=False` the method keeps its
    initialisation (seed torch first for a reproducible one), and a job without a checkpoint
    is built from its spec. With weights, the process's random state is left as it was."""
    info = describe(run, step, required=weights)
    with torch.random.fork_rng(devices=[], enabled=weights):  # the init is overwritten
        record = (
            checkpoints.constructor(info.checkpoint)
            if info.rebuilt_from == "checkpoint" and info.checkpoint is not None
            else None
        )
        if record is not None:
            method = get_method(info.method)(info.config, record.data_info)
        else:
            dataset = TrainSpec.from_dict(run.spec).dataset
            method = new_method(info.method, info.config, dataset, info.run_dir, cache_dir)
    if weights and info.checkpoint is not None:  # describe made sure there is one
        checkpoints.load(info.checkpoint, method)
    return method.eval(), info
