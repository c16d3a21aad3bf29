"""System metrics of a training process, logged as metric points beside its curves.

What W&B's system panel shows, for the worker process: its CPU use (percent of one core, so
two busy cores read 200), its resident memory, and on CUDA the memory PyTorch holds and the
GPU's utilisation (the latter only where NVML answers). `SystemSink` wraps the trainer's sink:
at most every SAMPLE_EVERY_S seconds a logged step carries these readings, under the names in
`NAMES`, so they travel with that step's points (same store writes, same flush order, same
resume rewind) and no thread of its own touches the store.

    sink = SystemSink(StoreSink(store, job_id))   # rank 0's sink: the others write nothing
    run_job(spec, config, run_dir, sink, should_stop)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psutil
import torch

SAMPLE_EVERY_S = 5.0
CPU_PERCENT = "system/cpu_percent"
RSS_MB = "system/rss_mb"
GPU_MEMORY_MB = "system/gpu_memory_mb"
GPU_UTIL_PERCENT = "system/gpu_util_percent"
NAMES = (CPU_PERCENT, RSS_MB, GPU_MEMORY_MB, GPU_UTIL_PERCENT)
MB = 2**20


def read(process: psutil.Process) -> dict[str, float]:
    """One reading of `process`. CPU % is its use since the previous call (psutil's
    `cpu_percent(None)`), so readings taken every few seconds average over those seconds."""
    values = {
        CPU_PERCENT: float(process.cpu_percent(None)),
        RSS_MB: process.memory_info().rss / MB,
    }
    # is_initialized: a CPU job must not start CUDA just to learn it uses none.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        device = torch.cuda.current_device()
        values[GPU_MEMORY_MB] = torch.cuda.memory_reserved(device) / MB
        try:
            values[GPU_UTIL_PERCENT] = float(torch.cuda.utilization(device))
        except Exception:  # noqa: BLE001 - no NVML (pynvml) here: memory only
            pass
    return values


class SystemSink:
    """The trainer's sink with system readings added to a logged step every `every` seconds
    (the first logged step always carries one). Everything else goes to `sink` unchanged."""

    def __init__(
        self,
        sink: Any,
        every: float = SAMPLE_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        reader: Callable[[], dict[str, float]] | None = None,
    ) -> None:
        self.sink, self.every, self.clock = sink, every, clock
        if reader is None:
            process = psutil.Process()
            process.cpu_percent(None)  # the first call says 0.0: it only starts the count
            reader = lambda: read(process)
        self.reader = reader
        self._due = clock()

    def metrics(self, step: int, values: dict[str, float]) -> None:
        now = self.clock()
        if now >= self._due:
            values = {**values, **self.reader()}
            self._due = now + self.every
        self.sink.metrics(step, values)

    def started(self, first_step: int, total_steps: int) -> None:
        self.sink.started(first_step, total_steps)

    def checkpoint(self, step: int, path: str) -> None:
        self.sink.checkpoint(step, path)

    def flush(self) -> None:
        self.sink.flush()

    def __getattr__(self, name: str) -> Any:  # discard_from, close, ...: the wrapped sink's
        return getattr(self.sink, name)
