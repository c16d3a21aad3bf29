"""A finished job's method reopened from its newest checkpoint, cached for the explorer.

    loader = RunLoader(home.cache_dir)
    loaded = loader.job(store.get_job(3))          # job 3 at its LATEST checkpoint, eval mode
    baseline = loader.random(store.get_job(3))     # the same architecture, freshly initialised

Jobs are opened by `engine.runs.open_run` (from the constructor inputs their checkpoint
recorded, without loading the dataset). Loaded models are kept in a small LRU cache bounded by
count and by parameter bytes, keyed by (job, checkpoint step), so a resumed job that wrote a
newer checkpoint is loaded again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine import checkpoints
from engine.config import TrainConfig, build_config
from engine.errors import JobError
from engine.methods.base import SSLMethod
from engine.registry import get_method
from engine.runs import new_method, open_run

# Jobs whose newest checkpoint a lens may load (a running job's weights still move).
LOADABLE_STATUSES = ("completed", "cancelled", "interrupted")
MAX_MODELS = 3
MAX_MODEL_BYTES = 2 * 1024**3


@dataclass
class LoadedMethod:
    """A method in eval mode and what it is."""

    key: str  # "#3 simclr @ step 150", "#3's simclr at random init (seed 0)"
    method: SSLMethod
    method_name: str
    backbone: str
    image_size: int
    modality: str  # the method's: "image", "image-text", "text"
    step: int | None  # checkpoint step; None at random initialisation
    job_id: int | None


def checkpoint_step(job: Any) -> tuple[Path, int]:
    """(newest checkpoint folder, its step) of a job; JobError when it has none."""
    latest = checkpoints.latest(Path(job.run_dir)) if job.run_dir else None
    if latest is None:
        raise JobError(
            f"job {job.id} has no checkpoint yet; it can be explored once it has saved one"
        )
    return latest, int(latest.name.rsplit("_", 1)[-1])


def model_bytes(module: torch.nn.Module) -> int:
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


class LRU:
    """A thread-safe LRU of values with a size: at most `max_items` and `max_bytes` (the newest
    entry is kept even when it alone is larger)."""

    def __init__(self, max_items: int, max_bytes: int, size: Callable[[Any], int]) -> None:
        self.max_items, self.max_bytes, self.size = max_items, max_bytes, size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: Any, value: Any) -> Any:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > 1 and (
                len(self._items) > self.max_items
                or sum(self.size(v) for v in self._items.values()) > self.max_bytes
            ):
                self._items.popitem(last=False)
        return value

    def keys(self) -> list[Any]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class RunLoader:
    """Builds and caches jobs' methods (trained, or at random initialisation)."""

    def __init__(
        self,
        cache_dir: Path | None = None,
        max_items: int = MAX_MODELS,
        max_bytes: int = MAX_MODEL_BYTES,
    ) -> None:
        self.cache_dir = cache_dir
        self.cache = LRU(max_items, max_bytes, lambda loaded: model_bytes(loaded.method))
        self._build_lock = threading.Lock()  # two requests for one model build it once

    def job(self, job: Any) -> LoadedMethod:
        """The job's method with its newest checkpoint loaded, in eval mode."""
        if job.status not in LOADABLE_STATUSES:
            raise JobError(
                f"job {job.id} is {job.status}; explore it once it has finished "
                f"(or stop it: a cancelled job keeps its last checkpoint)"
            )
        step = checkpoint_step(job)[1]

        def build() -> SSLMethod:
            return open_run(job, step, cache_dir=self.cache_dir)[0]

        return self._get(
            ("job", job.id, step), f"#{job.id} {job.method} @ step {step}", build, step, job.id
        )

    def random(self, job: Any, seed: int = 0) -> LoadedMethod:
        """The job's architecture and settings at random initialisation (seeded)."""

        def build() -> SSLMethod:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return open_run(job, weights=False, cache_dir=self.cache_dir)[0]

        return self._get(
            ("random", job.id, seed),
            f"#{job.id}'s {job.method} at random init (seed {seed})",
            build,
            None,
            job.id,
        )

    def random_method(self, method_name: str, image_size: int = 32, seed: int = 0) -> LoadedMethod:
        """A method's quick-preset network at `image_size`, freshly initialised (no job)."""
        cls = get_method(method_name)
        config = build_config(cls.Config, "quick", {"image_size": image_size})

        def build() -> SSLMethod:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return new_method(method_name, config, cls.default_dataset, None, self.cache_dir)

        return self._get(
            ("random-method", method_name, image_size, seed),
            f"{method_name} {config.backbone} at random init (seed {seed})",
            build,
            None,
            None,
        )

    def _get(
        self,
        key: tuple,
        name: str,
        build: Callable[[], SSLMethod],
        step: int | None,
        job_id: int | None,
    ) -> LoadedMethod:
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        with self._build_lock:
            cached = self.cache.get(key)
            if cached is not None:
                return cached
            method = build().eval()
            config: TrainConfig = method.config
            loaded = LoadedMethod(
                name,
                method,
                method.name,
                config.backbone,
                config.image_size,
                method.modality,
                step,
                job_id,
            )
            return self.cache.put(key, loaded)
