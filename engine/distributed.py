"""One job on N processes: the rank helpers and collectives the loop and the methods use.

Every function here is a no-op (or the identity) in one process, so a method calls `gather`
unconditionally and the one-process path is unchanged. The loop runs under `accelerate
launch` (torch.distributed underneath: gloo on CPU, NCCL on GPUs); this module only reads the
process group accelerate initialised.

Equivalence across process counts (a 2-process job at global batch B computes the loss of a
1-process job at batch B) rests on three pieces:

- **Gathers with gradients.** `gather` is `torch.distributed._functional_collectives.
  all_gather_single`, autograd-aware since torch 2.6 (its backward is a sum reduce-scatter) and
  passing gradients under gloo as under NCCL (checked on torch 2.14 with two gloo processes);
  `torch.distributed.nn.functional.all_gather` also works but is deprecated in its favour and
  refuses to run under torch.compile. A method that gathers its embeddings computes the loss of
  the global batch on every rank: each rank's local rows then receive the sum of every rank's
  gradient (N times the global loss's), and DDP's averaging divides by N, so the parameters get
  exactly the one-process gradient.
- **Views of the global batch.** `draw_rows` tells a view maker how many rows to draw random
  parameters for (the global batch) and which of them are this rank's (`batch_share`, set by
  the loop around each step), so every rank consumes the same random numbers as one process
  would and applies its own slice: a row's views do not depend on the process count.
- **Batch statistics over the global batch.** `sync_batch_norm` converts batch norm to
  `SyncBatchNorm` on CUDA and to `GlobalBatchNorm` (below) on CPU, where torch's SyncBatchNorm
  refuses to run.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn


def is_distributed() -> bool:
    """True in a job of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main() -> bool:
    return rank() == 0


def gather(x: Tensor) -> Tensor:
    """(b, ...) on every rank -> (N * b, ...), rank 0's rows first; gradients flow back to each
    rank's own rows (summed over the ranks' losses). Identity in one process."""
    if not is_distributed():
        return x
    from torch.distributed import _functional_collectives as fc

    out = fc.all_gather_single(x.contiguous(), 0, dist.group.WORLD)
    return fc.wait_tensor(out) if isinstance(out, fc.AsyncCollectiveTensor) else out


@torch.no_grad()
def gather_detached(x: Tensor) -> Tensor:
    """`gather` without gradients (keys for a queue, views for shuffled batch norm)."""
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


@torch.no_grad()
def mean_across(x: Tensor) -> Tensor:
    """The mean of `x` over the ranks (no gradient); `x` itself in one process."""
    if not is_distributed():
        return x
    out = x.detach().clone()
    dist.all_reduce(out)
    return out / dist.get_world_size()


@torch.no_grad()
def min_across(x: Tensor) -> Tensor:
    if not is_distributed():
        return x
    out = x.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.MIN)
    return out


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(value):
    """Rank 0's `value` on every rank."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class StopFlag:
    """Stop as rank 0 says: `should_stop` is read on rank 0 only and broadcast, so every rank
    leaves the loop at the same step. The broadcast goes through a gloo group on the CPU, so
    on CUDA it never waits for the device's queue of kernels."""

    def __init__(self, should_stop) -> None:
        self._should_stop = should_stop
        self._group = None
        if is_distributed():
            self._group = (
                dist.group.WORLD if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
            )

    def __call__(self) -> bool:
        if self._group is None:
            return bool(self._should_stop())
        flag = torch.tensor([int(bool(self._should_stop())) if is_main() else 0])
        dist.broadcast(flag, src=0, group=self._group)
        return bool(flag.item())


def shutdown(wait: bool = True) -> None:
    """Destroy the process group (after a barrier when `wait`); a no-op when there is none.

    Why: a gloo rank that left it to interpreter finalization aborted now and then at exit
    ("terminate called without an active exception", 3 of 9 tries, after correct results).
    Gloo's worker threads still held finished work items with tensors in them; freeing those
    while the interpreter is being torn down calls into Python too late (pytorch/pytorch#179291).
    `destroy_at_exit` registers this (without the barrier) for every multi-process job."""
    if dist.is_available() and dist.is_initialized():
        if wait:
            with contextlib.suppress(Exception):
                dist.barrier()
        dist.destroy_process_group()


_exit_hook = False


def destroy_at_exit() -> None:
    """Destroy the process group when the interpreter exits, while it is still whole (once)."""
    global _exit_hook
    if not _exit_hook:
        atexit.register(shutdown, False)
        _exit_hook = True


# --- this rank's share of the global batch --------------------------------------------------


@dataclass(frozen=True)
class BatchShare:
    """This rank's rows [start, stop) of a global batch of `size` rows."""

    size: int
    start: int
    stop: int


_share = threading.local()


@contextlib.contextmanager
def batch_share(size: int, start: int, stop: int) -> Iterator[None]:
    """While active, a view maker handed the local rows draws its parameters for the global
    batch and keeps this rank's (`draw_rows`). The loop sets it around each training step."""
    previous = getattr(_share, "value", None)
    _share.value = BatchShare(size, start, stop) if (start, stop) != (0, size) else None
    try:
        yield
    finally:
        _share.value = previous


def draw_rows(count: int) -> tuple[int, Tensor | None]:
    """(how many rows to draw random parameters for, the indices of this rank's rows among
    them or None when all) for a batch of `count` local rows.

    `count` may be a whole multiple m of the local batch (m views of each image stacked, as
    DINO's local crops are): the global draw then holds m blocks of the global batch and this
    rank's rows are its slice of each block, as one process would have laid them out."""
    share: BatchShare | None = getattr(_share, "value", None)
    if share is None:
        return count, None
    local = share.stop - share.start
    if count % local:
        return count, None
    blocks = count // local
    rows = torch.arange(share.start, share.stop)
    return blocks * share.size, torch.cat([rows + k * share.size for k in range(blocks)])


def local_rows(drawn: Tensor, rows: Tensor | None) -> Tensor:
    """The rows of a global draw (first dimension) that belong to this rank."""
    return drawn if rows is None else drawn[rows]


def share_rows() -> tuple[int, int, int] | None:
    """(global size, start, stop) while a `batch_share` is active, else None."""
    share: BatchShare | None = getattr(_share, "value", None)
    return None if share is None else (share.size, share.start, share.stop)


# --- batch norm over the global batch --------------------------------------------------------


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics cover every rank's rows, for the CPU (gloo), where
    torch's SyncBatchNorm refuses to run. Two-pass mean and variance through `gather` (so the
    gradients reach every rank's inputs); in eval mode, or in one process, plain batch norm."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and is_distributed()):
            return super().forward(input)
        dims = [0, *range(2, input.dim())]
        x = input.float() if input.dtype in (torch.float16, torch.bfloat16) else input
        count = x.numel() // x.shape[1] * dist.get_world_size()
        mean = gather(x.sum(dims)[None]).sum(0) / count  # (C,)
        shape = [1, -1] + [1] * (input.dim() - 2)
        centred = x - mean.view(shape)
        var = gather(centred.square().sum(dims)[None]).sum(0) / count  # biased, (C,)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
                unbiased = var * count / max(count - 1, 1)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(input.dtype)


def sync_batch_norm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every batch norm of `module` computing its statistics over the global batch: torch's
    SyncBatchNorm on CUDA, GlobalBatchNorm elsewhere. Weights and running statistics are kept."""
    if torch.device(device).type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert(module)


def _convert(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
        module, GlobalBatchNorm
    ):
        out = GlobalBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
        )
        if module.affine:
            with torch.no_grad():
                out.weight = module.weight
                out.bias = module.bias
        out.running_mean = module.running_mean
        out.running_var = module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.training = module.training
    for name, child in module.named_children():
        out.add_module(name, _convert(child))
    return out
