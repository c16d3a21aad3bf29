"""`run_job`: the one training loop every method shares.

It knows nothing method-specific: it builds the method from the registry, holds the dataset as a
uint8 tensor on the device, draws a batch per step, and lets the method make its views and its
loss. Around that: AdamW/LARS/SGD (fused AdamW on CUDA), warmup + cosine schedule, gradient
clipping, bf16 autocast, TF32 matmuls on CUDA, channels-last for conv nets, optional
torch.compile of the networks, metrics to a sink, periodic and final checkpoints, resume, and a
stop flag checked every step. A resumed job draws the same batches and views as an uninterrupted
one (the checkpoint holds the rest of the epoch's order and every random state), so its curve
is bitwise the same on CPU.

The step never waits for the device: the loss and gradient norm stay there until a logging or
checkpoint step reads them all at once (a non-finite one still fails the job naming the step
where it first appeared). Under `accelerate launch` with N processes the batch is global: each
rank takes its slice of the seeded batch, its views are its rows of the global batch's views,
the methods gather what their loss needs (engine.distributed), DDP averages the gradients, and
rank 0 alone reports, probes and saves.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs

from engine import checkpoints, distributed, hardware
from engine.config import TrainConfig, TrainSpec
from engine.data.prefetch import Prefetcher, next_batch_index, streamed_tensors
from engine.evaluation.health import HealthProbe, KnnProbe
from engine.methods.base import SSLMethod, TrainData
from engine.optim import build_optimizer, clip_gradients, make_scheduler
from engine.registry import get_method

log = logging.getLogger(__name__)

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

    Under `accelerate launch` with N processes (engine.distributed) `config.batch_size` is the
    global batch: every rank draws the same seeded batch of rows and takes its slice of
    batch_size / N, DDP averages the gradients, and only rank 0 reports to `sink`, probes
    health and writes checkpoints; rank 0 reads `should_stop` and every rank obeys it.
    """
    method_cls = get_method(spec.method)
    accelerator = Accelerator(
        mixed_precision="no",
        # Buffers are not broadcast at each step: every rank computes the same ones (global
        # batch statistics, MoCo's queue from gathered keys, DINO's all-reduced centre), and
        # MoCo's split batch norm is local on purpose.
        kwargs_handlers=[
            DistributedDataParallelKwargs(
                find_unused_parameters=method_cls.unused_parameters, broadcast_buffers=False
            )
        ],
    )
    device = accelerator.device
    world, rank = accelerator.num_processes, accelerator.process_index
    is_main = accelerator.is_main_process
    if world > 1:
        distributed.destroy_at_exit()  # a gloo rank could otherwise abort at exit
    if config.batch_size % world:  # validation refuses it first, naming the numbers
        raise ValueError(f"batch_size {config.batch_size} does not divide over {world} processes")
    share = config.batch_size // world
    first_row, last_row = rank * share, (rank + 1) * share  # this rank's rows of each batch
    if device.type == "cuda":
        # TF32 matmuls and convolutions: float32 range, 10-bit mantissa, several times the
        # throughput of full fp32 on Ampere and later (bf16 autocast covers the rest).
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(spec.seed)
    run_dir = Path(run_dir)
    with accelerator.main_process_first():  # rank 0 fills the dataset cache, the others read it
        data = method_cls.load_data(spec.dataset, config, run_dir, data_cache_dir)
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
    sync_bn = method.sync_batch_norm
    if world > 1 and (method.channels_last if sync_bn is None else sync_bn):
        method = distributed.sync_batch_norm(method, device)
    if method.channels_last:
        method = method.to(memory_format=torch.channels_last)
    if getattr(config, "compile", False):
        compile_networks(method)
    # Collapse/health metrics on a fixed batch every `health_every` steps (image methods only).
    health = None
    if config.health_every > 0 and is_main:
        health = HealthProbe.for_method(type(method), tensors, config.image_size)
    probing = distributed.broadcast_object(health is not None)  # the same log steps everywhere
    # The online k-NN (online_knn_top1) every `knn_every` steps, where the data has class labels.
    knn = None
    if 0 < config.knn_every <= config.steps and is_main:
        knn = KnnProbe.for_method(type(method), tensors, data.labels)
    knn_probing = distributed.broadcast_object(knn is not None)
    optimizer = build_optimizer(method, config)
    scheduler = make_scheduler(optimizer, config.warmup_steps, config.steps)
    sampler = torch.Generator().manual_seed(spec.seed)

    if is_main:
        checkpoints.sweep(run_dir)  # this job is the run's only writer now
    # Every rank resumes from the checkpoint rank 0 picked.
    latest = distributed.broadcast_object(checkpoints.latest(run_dir) if is_main else None)
    start_step, saved_step = 0, None
    # Row indices the current epoch has not drawn yet: saved with each checkpoint, so a job
    # killed mid-epoch resumes with the very batches an uninterrupted run would draw.
    epoch_rest = torch.empty(0, dtype=torch.long)
    if latest is not None:
        start_step, epoch_rest = checkpoints.restore(latest, method, optimizer, scheduler, sampler)
        saved_step = start_step
    with warnings.catch_warnings():
        # torch 2.14 renames broadcast_buffers (accelerate 1.15 has no forward_sync_buffers);
        # False keeps its meaning, buffers are synchronised once, when DDP wraps the model.
        warnings.filterwarnings("ignore", "`broadcast_buffers` is deprecated", FutureWarning)
        model, optimizer = accelerator.prepare(method, optimizer)
    stop = distributed.StopFlag(should_stop)
    if is_main:
        sink.started(start_step, config.steps)
    if knn is not None and start_step == 0:
        start = knn(method)  # the network at random initialisation: where the curve starts
        if start:
            sink.metrics(0, start)
    prefetch = None
    if streamed and start_step < config.steps:
        rows = (first_row, last_row) if world > 1 else None
        prefetch = Prefetcher(
            streamed, sampler, epoch_rest, len(data), config.batch_size, device, rows=rows
        )
    try:
        return _loop(
            config, accelerator, model, optimizer, scheduler, sampler, epoch_rest, tensors,
            streamed, prefetch, health, probing, knn, knn_probing, stop, sink, run_dir,
            start_step, saved_step, (first_row, last_row),
        )  # fmt: skip
    finally:
        if prefetch is not None:
            prefetch.close()


def _loop(
    config: TrainConfig,
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer,
    scheduler,
    sampler: torch.Generator,
    epoch_rest: torch.Tensor,
    tensors: dict,
    streamed: dict,
    prefetch: Prefetcher | None,
    health: HealthProbe | None,
    probing: bool,
    knn: KnnProbe | None,
    knn_probing: bool,
    stop: Callable[[], bool],
    sink: Sink,
    run_dir: Path,
    start_step: int,
    saved_step: int | None,
    rows: tuple[int, int],
) -> RunResult:
    """The steps of `run_job`. Nothing here waits for the device except at logging and
    checkpoint steps: the loss and gradient norm of each step stay on the device
    (`pending`) until then, when one reduction over the ranks reads them all and the first
    non-finite one fails the job naming its step."""
    device, is_main = accelerator.device, accelerator.is_main_process
    count = len(next(iter(tensors.values())))
    fault = _fault()
    bf16 = hardware.use_bf16(config.precision, device)
    if is_main:  # at every start: a resumed job may run on another machine
        native = hardware.fast_bf16(device.type)
        log.info(
            "precision %s: %s (%s computes bf16 %s)",
            config.precision,
            "bf16 autocast" if bf16 else "fp32",
            device.type,
            "natively" if native else "by emulation, many times slower than fp32",
        )
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    first_loss = final_loss = None
    step = start_step
    timed_images, timed_seconds = 0, 0.0
    # (step, loss, gradient norm or None) of the steps not read back yet.
    pending: list[tuple[int, torch.Tensor, torch.Tensor | None]] = []
    since_step, since = start_step, time.perf_counter()  # the throughput window
    method = accelerator.unwrap_model(model)
    model.train()
    if start_step == 0:
        with torch.no_grad(), autocast:
            method.on_train_start(tensors)
    advice = f"lower the learning rate (now {config.lr:g})"

    def settle(logs: dict | None = None) -> tuple[float, dict[str, float]]:
        """Read the pending steps' losses (averaged over the ranks, with `logs`): raise
        Diverged at the first non-finite loss or gradient norm; (last loss, logs with the
        last step's gradient norm before clipping when clipping is on)."""
        nonlocal first_loss, final_loss
        names = list(logs or {})
        values = torch.stack(
            [
                torch.stack(
                    [
                        loss.float(),
                        grad.float()
                        if grad is not None
                        else loss.new_zeros((), dtype=torch.float32),
                    ]
                )
                for _, loss, grad in pending
            ]
        ).flatten()
        if names:
            extra = [torch.as_tensor(logs[n], dtype=torch.float32).to(device) for n in names]
            values = torch.cat([values, torch.stack(extra)])
        read = distributed.mean_across(values).tolist()  # the one host sync
        per_step = [read[2 * i : 2 * i + 2] for i in range(len(pending))]
        for (at, _, grad), (loss_value, grad_value) in zip(pending, per_step, strict=True):
            if not math.isfinite(loss_value):
                raise Diverged(
                    f"loss became {loss_value} at step {at}; {advice} or turn on grad_clip", at
                )
            if grad is not None and not math.isfinite(grad_value):
                raise Diverged(f"the gradient norm became {grad_value} at step {at}; {advice}", at)
        if pending[0][0] == start_step + 1:
            first_loss = per_step[0][0]
        final_loss = per_step[-1][0]
        last_grad = pending[-1][2]
        pending.clear()
        values = dict(zip(names, read[2 * len(per_step) :], strict=True))
        if last_grad is not None:
            values["grad_norm"] = per_step[-1][1]
        return final_loss, values

    while step < config.steps:
        if stop():
            break
        # The global batch's rows (a fresh permutation per epoch); this rank takes its slice.
        batch_index, epoch_rest = next_batch_index(epoch_rest, count, config.batch_size, sampler)
        with autocast, distributed.batch_share(config.batch_size, *rows):
            index = batch_index[rows[0] : rows[1]].to(device, non_blocking=True)
            batch = {name: t[index] for name, t in tensors.items() if name not in streamed}
            if prefetch is not None:
                batch.update(prefetch.next(batch_index))
            loss, logs = model({name: batch[name] for name in tensors})
        if fault == ("nan", step + 1):
            loss = loss * float("nan")
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        grad_norm = clip_gradients(model, config, accelerator)
        pending.append((step + 1, loss.detach(), None if grad_norm is None else grad_norm.detach()))
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        step += 1
        method.after_step(step, config.steps)
        health_now = probing and (step % config.health_every == 0 or step == config.steps)
        # (a probe exists only when the run has knn_every steps or more)
        knn_now = knn_probing and (step % config.knn_every == 0 or step == config.steps)
        log_now = step % config.log_every == 0 or step == config.steps or health_now or knn_now
        save_now = step % config.checkpoint_every == 0 and step < config.steps
        if log_now or save_now:  # not every step when log_every > 1: it reads every weight
            loss_value, log_values = settle(logs if log_now else None)
            seconds = time.perf_counter() - since
            images = config.batch_size * (step - since_step)
            if since_step > start_step:  # the first window pays for warm-up allocations
                timed_images += images
                timed_seconds += seconds
            check_weights(method, step, advice)
            if log_now and is_main:
                values = {
                    "loss": loss_value,
                    "lr": lr,
                    "images_per_second": images / max(seconds, 1e-9),
                    **log_values,
                }
                if health_now:
                    values.update(health(method))
                if knn_now:
                    values.update(knn(method))
                sink.metrics(step, values)
        if save_now:
            _save(
                accelerator, model, optimizer, scheduler, sampler, epoch_rest, run_dir, step, sink
            )
            saved_step = step
        if log_now or save_now:
            since_step, since = step, time.perf_counter()
        if fault == ("exit", step):
            _exit_as_killed()

    if pending:
        settle()
    if step != saved_step:  # a stop always leaves a checkpoint at the step it stopped at
        check_weights(method, step, advice)
        _save(accelerator, model, optimizer, scheduler, sampler, epoch_rest, run_dir, step, sink)
    images_per_second = timed_images / timed_seconds if timed_seconds > 0 else None
    status = "completed" if step >= config.steps else "cancelled"
    return RunResult(status, step, first_loss, final_loss, images_per_second)


def compile_networks(method: torch.nn.Module) -> None:
    """`torch.compile` each of the method's networks in place (`nn.Module.compile`: the
    state dict keeps its keys, so checkpoints and runs open as without it). The method's own
    step (views, random draws, the loss) stays eager; a network is a direct child holding
    parameters (the encoder, a head, a CLIPModel, DINO's student and teacher)."""
    for child in method.children():
        if any(True for _ in child.parameters()):
            child.compile()


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
