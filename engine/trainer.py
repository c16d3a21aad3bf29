"""`run_job`: the one training loop every method shares.

It knows nothing method-specific: it builds the method from the registry, holds the dataset as a
uint8 tensor on the device, draws a batch per step, and lets the method make its views and its
loss. Around that: AdamW/LARS/SGD, warmup + cosine schedule, gradient clipping, bf16 autocast,
channels-last for conv nets, metrics to a sink, periodic and final checkpoints, resume, and a
stop flag checked every step.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from accelerate import Accelerator

from engine import checkpoints
from engine.config import TrainConfig, TrainSpec
from engine.evaluation.health import HealthProbe
from engine.methods.base import SSLMethod, TrainData
from engine.optim import build_optimizer, warmup_cosine
from engine.registry import get_method

# Testing hook: PRETEXT_FAULT=nan@5 makes the loss NaN at step 5 (the NaN path has a test).
FAULT_ENV = "PRETEXT_FAULT"


class Sink(Protocol):
    """Where the loop reports; the worker's sink writes to the job store."""

    def metrics(self, step: int, values: dict[str, float]) -> None: ...

    def checkpoint(self, step: int, path: str) -> None: ...

    def flush(self) -> None:
        """Make every point reported so far durable. Called before a checkpoint becomes the
        one a resume starts from: a worker killed between the two must not leave a gap in
        the curves (resume re-logs only the steps after that checkpoint)."""

    def started(self, first_step: int, total_steps: int) -> None: ...


class NonFiniteLoss(RuntimeError):
    pass


@dataclass
class RunResult:
    status: str                 # "completed" or "cancelled"
    step: int                   # optimizer steps done in total
    first_loss: float | None    # loss of the first step of this attempt
    final_loss: float | None
    images_per_second: float | None


def build_method(spec: TrainSpec, config: TrainConfig, data: TrainData) -> SSLMethod:
    return get_method(spec.method)(config, data.info)


def run_job(spec: TrainSpec, config: TrainConfig, run_dir: Path, sink: Sink,
            should_stop: Callable[[], bool], data_cache_dir: Path | None = None) -> RunResult:
    """Train `spec` to `config.steps`, resuming from `run_dir`'s latest checkpoint if any.

    Raises NonFiniteLoss (naming the step) if the loss stops being finite; nothing is saved
    after that point. Returns when done or when `should_stop()` turns true (after saving).
    """
    accelerator = Accelerator(mixed_precision="no")
    device = accelerator.device
    torch.manual_seed(spec.seed)
    run_dir = Path(run_dir)
    data = get_method(spec.method).load_data(spec.dataset, config, run_dir, data_cache_dir)
    if config.batch_size > len(data):
        raise ValueError(f"batch_size {config.batch_size} is larger than the {len(data)} "
                         f"training examples of {spec.dataset}")
    # The whole training set stays on the device (uint8 images or token ids): a step only
    # indexes it, no loader workers.
    tensors = {name: t.to(device) for name, t in data.tensors.items()}

    method = build_method(spec, config, data).to(device)
    if method.channels_last:
        method = method.to(memory_format=torch.channels_last)
    # Collapse/health metrics on a fixed batch every `health_every` steps (image methods only).
    health = None
    if config.health_every > 0 and accelerator.is_main_process:
        health = HealthProbe.for_method(type(method), tensors, config.image_size)
    optimizer = build_optimizer(method, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(config.warmup_steps, config.steps))
    sampler = torch.Generator().manual_seed(spec.seed)

    start_step = 0
    latest = checkpoints.latest(run_dir)
    if latest is not None:
        start_step = checkpoints.load(latest, method, optimizer, scheduler, sampler)
    model, optimizer = accelerator.prepare(method, optimizer)
    sink.started(start_step, config.steps)

    fault_step = _fault_step()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                              enabled=config.precision == "bf16")
    first_loss = final_loss = None
    step = start_step
    order = torch.empty(0, dtype=torch.long)
    timed_images, timed_seconds = 0, 0.0
    model.train()
    if start_step == 0:
        with torch.no_grad(), autocast:
            accelerator.unwrap_model(model).on_train_start(tensors)
    while step < config.steps:
        if should_stop():
            break
        if len(order) < config.batch_size:  # a fresh permutation per epoch
            order = torch.randperm(len(data), generator=sampler)
        batch_index, order = order[:config.batch_size], order[config.batch_size:]
        tick = time.perf_counter()
        with autocast:
            index = batch_index.to(device)
            loss, logs = model({name: t[index] for name, t in tensors.items()})
        if fault_step == step + 1:
            loss = loss * float("nan")
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"loss became {loss.item()} at step {step + 1}; lower the "
                                f"learning rate (now {config.lr:g}) or turn on grad_clip")
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if config.grad_clip > 0:
            accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        step += 1
        accelerator.unwrap_model(model).after_step(step, config.steps)
        loss_value = loss.item()
        seconds = time.perf_counter() - tick
        if step > start_step + 1:  # the first step pays for warm-up allocations
            timed_images += config.batch_size
            timed_seconds += seconds
        first_loss = loss_value if first_loss is None else first_loss
        final_loss = loss_value
        health_now = health is not None and (step % config.health_every == 0
                                             or step == config.steps)
        if step % config.log_every == 0 or step == config.steps or health_now:
            values = {"loss": loss_value, "lr": lr,
                      "images_per_second": config.batch_size / max(seconds, 1e-9)}
            values.update({k: float(v) for k, v in logs.items()})
            if health_now:
                values.update(health(accelerator.unwrap_model(model)))
            sink.metrics(step, values)
        if step % config.checkpoint_every == 0 and step < config.steps:
            _save(accelerator, model, optimizer, scheduler, sampler, run_dir, step, sink)

    if step > start_step or latest is None:
        _save(accelerator, model, optimizer, scheduler, sampler, run_dir, step, sink)
    images_per_second = timed_images / timed_seconds if timed_seconds > 0 else None
    status = "completed" if step >= config.steps else "cancelled"
    return RunResult(status, step, first_loss, final_loss, images_per_second)


def _save(accelerator: Accelerator, model: torch.nn.Module, optimizer, scheduler, sampler,
          run_dir: Path, step: int, sink: Sink) -> None:
    if not accelerator.is_main_process:
        return
    method = accelerator.unwrap_model(model)
    sink.flush()  # the points up to `step` are stored before LATEST names this checkpoint
    path = checkpoints.save(run_dir, step, method, optimizer, scheduler, sampler)
    sink.checkpoint(step, str(path))


def _fault_step() -> int | None:
    fault = os.environ.get(FAULT_ENV, "")
    if fault.startswith("nan@"):
        return int(fault[4:])
    return None


def is_finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
