"""Batches of a streamed dataset (`engine.data.datasets.StreamedImages`) read ahead of the loop.

The training loop's epoch order is known ahead of time: a permutation per epoch drawn from its
seeded sampler. `Prefetcher` replays that order on a copy of the sampler (the loop's own sampler
and the order saved in checkpoints are untouched, so resuming is exact) and reads the next
`depth` batches on a background thread: sorted row reads from the memory map, resized on the
CPU, pinned when training on CUDA so the copy to the device overlaps the step. Only those
batches are ever held, so neither host nor device memory grows with the dataset.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import torch
from torch import Tensor

from engine.data.datasets import is_streamed

DEPTH = 2  # batches read ahead


def streamed_tensors(tensors: dict[str, Any]) -> dict[str, Any]:
    """The streamed entries of a loop's tensors ({} when everything is in memory)."""
    return {name: t for name, t in tensors.items() if is_streamed(t)}


def next_batch_index(
    rest: Tensor, count: int, batch_size: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """(the next batch's rows, the epoch's rows left after it): a fresh permutation when fewer
    than a batch are left. The loop and the prefetcher both draw with this."""
    if len(rest) < batch_size:
        rest = torch.randperm(count, generator=generator)
    return rest[:batch_size], rest[batch_size:]


class Prefetcher:
    """Reads the streamed tensors' next batches on a thread, in the order the loop draws them."""

    def __init__(
        self,
        streamed: dict[str, Any],
        sampler: torch.Generator,
        epoch_rest: Tensor,
        count: int,
        batch_size: int,
        device: torch.device,
        depth: int = DEPTH,
        rows: tuple[int, int] | None = None,
    ) -> None:
        """`rows`: on N processes, this rank's rows [start, stop) of each global batch; only
        those are read (the plan checked against the loop is still the global batch)."""
        generator = torch.Generator()
        generator.set_state(sampler.get_state())
        self.device = torch.device(device)
        self._streamed = streamed
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        pin = self.device.type == "cuda"
        self._thread = threading.Thread(
            target=_read_ahead,
            args=(
                streamed,
                generator,
                epoch_rest.clone(),
                count,
                batch_size,
                pin,
                self._queue,
                self._stop,
                rows,
            ),
            name="pretext-prefetch",
            daemon=True,
        )
        self._thread.start()

    def next(self, batch_index: Tensor) -> dict[str, Tensor]:
        """The batch of rows `batch_index` (the loop's own draw, checked against the plan), on
        the device."""
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        planned, batch = item
        if not torch.equal(planned, batch_index):
            raise RuntimeError("the prefetched batches left the loop's epoch order")
        # The resize runs here, between steps: on a thread it ran beside the step and the two
        # fought over the cores (streamed 82-88% of in-memory images/s on two cores).
        return {
            name: self._streamed[name].resize(t).to(self.device, non_blocking=True)
            for name, t in batch.items()
        }

    def close(self) -> None:
        self._stop.set()
        while True:  # unblock a reader waiting for room
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=10)

    def __del__(self) -> None:  # a loop that raised never calls close
        self._stop.set()


def _read_ahead(
    streamed: dict[str, Any],
    generator: torch.Generator,
    rest: Tensor,
    count: int,
    batch_size: int,
    pin: bool,
    out: queue.Queue,
    stop: threading.Event,
    rows: tuple[int, int] | None = None,
) -> None:
    try:
        while not stop.is_set():
            index, rest = next_batch_index(rest, count, batch_size, generator)
            mine = index if rows is None else index[rows[0] : rows[1]]
            batch = {name: t.read_stored(mine) for name, t in streamed.items()}
            if pin:
                batch = {name: t.pin_memory() for name, t in batch.items()}
            item: Any = (index, batch)
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
    except BaseException as exc:  # noqa: BLE001 - handed to the loop, which raises it
        while not stop.is_set():
            try:
                out.put(exc, timeout=0.1)
                break
            except queue.Full:
                continue
