"""Train methods with `run_job` in this process, on its own or as one rank of an `accelerate
launch`, and write rank 0's loss and gradient-norm curves as JSON: the equivalence tests' entry point
(tests/engine/test_distributed.py).

    python -m tests.engine.distributed_entry OUT.json STEPS METHOD...
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 --num_machines 1 \\
        --mixed_precision no --dynamo_backend no --main_process_port PORT \\
        -m tests.engine.distributed_entry OUT.json STEPS METHOD...

Each method trains its tiny preset at global batch 64, fp32, seed 0, in a fresh run folder.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from engine import distributed
from engine.config import TrainSpec, build_config
from engine.registry import get_method
from engine.trainer import run_job

BATCH = 64


class CurveSink:
    """Keeps the loss of every step (rank 0 is the only caller)."""

    def __init__(self) -> None:
        self.loss: dict[int, float] = {}
        self.grad_norm: dict[int, float] = {}

    def metrics(self, step: int, values: dict[str, float]) -> None:
        self.loss[step] = values["loss"]
        self.grad_norm[step] = values["grad_norm"]  # before clipping

    def checkpoint(self, step: int, path: str) -> None:
        pass

    def flush(self) -> None:
        pass

    def started(self, first_step: int, total_steps: int) -> None:
        pass


def train(method: str, steps: int, folder: Path) -> dict[str, list[float]]:
    cls = get_method(method)
    params = dict(
        steps=steps,
        batch_size=BATCH,
        precision="fp32",
        log_every=1,
        health_every=0,
        checkpoint_every=10_000,
        grad_clip=1.0,  # TINY_PRESET's (CLIP's tiny preset has none): the norm gets logged
    )
    config = build_config(cls.Config, "tiny", params)
    spec = TrainSpec(method, cls.default_dataset, preset="tiny", seed=0, params=params)
    sink = CurveSink()
    run_dir = folder / method
    run_job(spec, config, run_dir, sink, lambda: False, data_cache_dir=folder / "cache")
    steps_logged = sorted(sink.loss)
    return {
        "loss": [sink.loss[step] for step in steps_logged],
        "grad_norm": [sink.grad_norm[step] for step in steps_logged],
    }


def main(argv: list[str]) -> None:
    out, steps, *methods = argv
    with tempfile.TemporaryDirectory() as scratch:
        # Every rank trains in rank 0's folder (a shared home, as on several nodes).
        folder = Path(distributed.broadcast_object(scratch))
        curves = {method: train(method, int(steps), folder) for method in methods}
        distributed.barrier()  # rank 0 removes the folder on leaving
    if distributed.is_main():
        result = {"processes": distributed.world_size(), "curves": curves}
        Path(out).write_text(json.dumps(result))
    distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
