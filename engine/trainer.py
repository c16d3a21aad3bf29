"""`run_job`: the one training loop every method shares.

It knows nothing method-specific: it builds the method from the registry, holds the dataset as a
uint8 tensor on the device, draws a batch per step, and lets the method make its views and its
loss. Around that: AdamW/LARS/SGD, warmup + cosine schedule, gradient clipping, bf16 autocast,
channels-last for conv nets, metrics to a sink, periodic and final checkpoints, resume, and a
stop flag checked every step. A resumed job draws the same batches and views as an uninterrupted
one (the checkpoint holds the rest of the epoch's order and every random state), so its curve
is bitwise the same on CPU.
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
from engine.data.prefetch import Prefetcher, next_batch_index, streamed_tensors
from engine.evaluation.health import HealthProbe
from engine.methods.base import SSLMethod, TrainData
from engine.optim import build_optimizer, clip_gradients, warmup_cosine
from engine.registry import get_method

# Testing hooks: PRETEXT_FAULT=nan@5 makes the loss NaN at step 5; exit@5 ends the process
# right after step 5 as kill -9 would (no flush, no checkpoint), for the resume tests.
FAULT_ENV = "PRETEXT_FAULT"
# A weight tensor (parameter or buffer) whose norm passes this counts as diverged: float32
# cannot square such values, so norms, variances and weight decay overflow from there on.
# SimCLR at lr 1e6 without clipping kept a finite loss (its embeddings are normalised) while
# batch-norm variances grew to 1e27, and the job "completed".
WEIGHT_LIMIT = 2.0**64


class Sink(Protocol):
    """Where the loop reports; the worker's sink writes to the job store."""

    def metrics(self, step: int, values: dict[str, float]) -> None: ...

    def checkpoint(self, step: int, path: str) -> None:
        """Checkpoint `step` is published at `path` (older ones beyond checkpoints.KEEP are
        removed right after this returns: `checkpoints.retiring` names them)."""

    def flush(self) -> None:
        """Make every point reported so far durable. Called before a checkpoint becomes the
        one a resume starts from: a worker killed between the two must not leave a gap in
        the curves (resume re-logs only the steps after that checkpoint)."""

    def started(self, first_step: int, total_steps: int) -> None: ...


class Diverged(RuntimeError):
    """The loss or the gradient norm stopped being finite, or the weights did (or outgrew
    WEIGHT_LIMIT), at `step`; nothing from that step on is logged or saved."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


@dataclass
class RunResult:
    status: str  # "completed" or "cancelled"
    step: int  # optimizer steps done in total
    first_loss: float | None  # loss of the first step of this attempt
    final_loss: float | None
    images_per_second: float | None


def build_method(spec: TrainSpec, config: TrainConfig, data: TrainData) -> SSLMethod:
    return get_method(spec.method)(config, data.info)


def run_job(
    spec: TrainSpec,
    config: TrainConfig,
    run_dir: Path,
    sink: Sink,
    should_stop: Callable[[], bool],
    data_cache_dir: Path | None = None,
) -> RunResult:
    """Train `spec` to `config.steps`, resuming from `run_dir`'s latest checkpoint if any.

    Raises Diverged (naming the step) if the loss, the gradient norm or the weights stop being
    finite; nothing is saved after that point. Returns when done or when `should_stop()` turns
    true (after saving a checkpoint at the step it stopped at).
    """
    accelerator = Accelerator(mixed_precision="no")
    device = accelerator.device
    torch.manual_seed(spec.seed)
    run_dir = Path(run_dir)
    data = get_method(spec.method).load_data(spec.dataset, config, run_dir, data_cache_dir)
    if config.batch_size > len(data):
        raise ValueError(
            f"batch_size {config.batch_size} is larger than the {len(data)} "
            f"training examples of {spec.dataset}"
        )
    # The whole training set stays on the device (uint8 images or token ids): a step only
    # indexes it, no loader workers. A large stored set is streamed instead (`to` copies
    # nothing): a background thread reads the next batches from disk (engine.data.prefetch).
    tensors = {name: t.to(device) for name, t in data.tensors.items()}
    streamed = streamed_tensors(tensors)

    method = build_method(spec, config, data).to(device)
    if method.channels_last:
        method = method.to(memory_format=torch.channels_last)
    # Collapse/health metrics on a fixed batch every `health_every` steps (image methods only).
    health = None
    if config.health_every > 0 and accelerator.is_main_process:
        health = HealthProbe.for_method(type(method), tensors, config.image_size)
    optimizer = build_optimizer(method, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(config.warmup_steps, config.steps)
    )
    sampler = torch.Generator().manual_seed(spec.seed)

    checkpoints.sweep(run_dir)  # this worker is the run's only writer now
    latest = checkpoints.latest(run_dir)
    start_step, saved_step = 0, None
    # Row indices the current epoch has not drawn yet: saved with each checkpoint, so a job
    # killed mid-epoch resumes with the very batches an uninterrupted run would draw.
    epoch_rest = torch.empty(0, dtype=torch.long)
    if latest is not None:
        start_step, epoch_rest = checkpoints.restore(latest, method, optimizer, scheduler, sampler)
        saved_step = start_step
    model, optimizer = accelerator.prepare(method, optimizer)
    sink.started(start_step, config.steps)
    prefetch = None
    if streamed and start_step < config.steps:
        prefetch = Prefetcher(streamed, sampler, epoch_rest, len(data), config.batch_size, device)

    fault = _fault()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")
    first_loss = final_loss = None
    step = start_step
    timed_images, timed_seconds = 0, 0.0
    model.train()
    if start_step == 0:
        with torch.no_grad(), autocast:
            accelerator.unwrap_model(model).on_train_start(tensors)
    advice = f"lower the learning rate (now {config.lr:g})"
    while step < config.steps:
        if should_stop():
            break
        # A fresh permutation per epoch.
        batch_index, epoch_rest = next_batch_index(
            epoch_rest, len(data), config.batch_size, sampler
        )
        tick = time.perf_counter()
        with autocast:
            index = batch_index.to(device)
            batch = {name: t[index] for name, t in tensors.items() if name not in streamed}
            if prefetch is not None:
                batch.update(prefetch.next(batch_index))
            loss, logs = model({name: batch[name] for name in tensors})
        if fault == ("nan", step + 1):
            loss = loss * float("nan")
        if not torch.isfinite(loss):
            raise Diverged(
                f"loss became {loss.item()} at step {step + 1}; {advice} or turn on grad_clip",
                step + 1,
            )
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        grad_norm = clip_gradients(model, config, accelerator)
        if grad_norm is not None and not torch.isfinite(grad_norm):  # clipping: NaN weights
            raise Diverged(
                f"the gradient norm became {float(grad_norm)} at step {step + 1}; {advice}",
                step + 1,
            )
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
        health_now = health is not None and (
            step % config.health_every == 0 or step == config.steps
        )
        log_now = step % config.log_every == 0 or step == config.steps or health_now
        save_now = step % config.checkpoint_every == 0 and step < config.steps
        if log_now or save_now:  # not every step when log_every > 1: it reads every weight
            check_weights(accelerator.unwrap_model(model), step, advice)
        if log_now:
            values = {
                "loss": loss_value,
                "lr": lr,
                "images_per_second": config.batch_size / max(seconds, 1e-9),
            }
            values.update({k: float(v) for k, v in logs.items()})
            if health_now:
                values.update(health(accelerator.unwrap_model(model)))
            sink.metrics(step, values)
        if save_now:
            _save(
                accelerator, model, optimizer, scheduler, sampler, epoch_rest, run_dir, step, sink
            )
            saved_step = step
        if fault == ("exit", step):
            _exit_as_killed()

    if prefetch is not None:
        prefetch.close()
    if step != saved_step:  # a stop always leaves a checkpoint at the step it stopped at
        check_weights(accelerator.unwrap_model(model), step, advice)
        _save(accelerator, model, optimizer, scheduler, sampler, epoch_rest, run_dir, step, sink)
    images_per_second = timed_images / timed_seconds if timed_seconds > 0 else None
    status = "completed" if step >= config.steps else "cancelled"
    return RunResult(status, step, first_loss, final_loss, images_per_second)


def check_weights(method: torch.nn.Module, step: int, advice: str) -> None:
    """Raise Diverged if a parameter or floating buffer has a non-finite norm or one past
    WEIGHT_LIMIT. One fused norm over every tensor (about the cost of an optimizer step's
    read of the weights), then a single host sync."""
    named = [
        (name, t)
        for name, t in (*method.named_parameters(), *method.named_buffers())
        if t.is_floating_point() and t.numel()
    ]
    norms = torch.stack(torch._foreach_norm([t.detach() for _, t in named])).float()  # (T,)
    worst = int(norms.nan_to_num(nan=float("inf")).argmax())
    value = float(norms[worst])
    if not value <= WEIGHT_LIMIT:  # NaN compares false too
        name, tensor = named[worst]
        largest = float(tensor.detach().abs().max())
        what = (
            f"non-finite ({name} holds {largest})"
            if not math.isfinite(largest)
            else f"too large ({name} holds {largest:.3g}; float32 overflows squaring it)"
        )
        raise Diverged(f"the weights became {what} by step {step}; {advice}", step)


def _save(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer,
    scheduler,
    sampler,
    epoch_rest: torch.Tensor,
    run_dir: Path,
    step: int,
    sink: Sink,
) -> None:
    if not accelerator.is_main_process:
        return
    method = accelerator.unwrap_model(model)
    sink.flush()  # the points up to `step` are stored before LATEST names this checkpoint
    path = checkpoints.save(run_dir, step, method, optimizer, scheduler, sampler, epoch_rest)
    sink.checkpoint(step, str(path))  # the store forgets the retiring ones before they go
    checkpoints.rotate(run_dir)


def _fault() -> tuple[str, int] | None:
    """("nan" or "exit", step) from PRETEXT_FAULT, or None."""
    kind, sep, step = os.environ.get(FAULT_ENV, "").partition("@")
    if sep and kind in ("nan", "exit") and step.isdigit():
        return kind, int(step)
    return None


def _exit_as_killed() -> None:
    os._exit(137)  # 128 + SIGKILL, what a shell reports for kill -9; nothing is flushed


def is_finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
