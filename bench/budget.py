"""What a CPU-time budget buys a job: the cost of a training step and of each probe point,
measured by a short calibration job, and the most steps whose training and probes fit.

`bench/methods.py` gives every image method the steps that `--budget-s` seconds of the whole
machine buy; a run logs the online k-NN every `knn_every` steps and the health metrics every
`health_every`, and those points cost several steps' worth each on a ViT, so the budget pays
for them too.
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

from engine.api import Studio

CALIBRATION_STEPS = 8  # see calibrate()
MIN_STEPS = 10


class Costs(NamedTuple):
    """CPU seconds (all threads) of one training step and of one point of each probe."""

    step: float
    knn: float
    health: float


def calibrate(studio: Studio, method: str, dataset: str, extra: dict[str, str]) -> Costs:
    """What a step and each probe of `method` cost, from one short job: its online k-NN
    runs at steps 4 and 8, its health probe at 6 and 8, and steps 2, 3, 5 and 7 are bare
    (the first step is not timed: warm-up allocations)."""
    marks: dict[int, float] = {}  # step -> CPU clock when its point was logged
    summary = studio.run_foreground(
        {
            "method": method,
            "dataset": dataset,
            "params": {
                **extra,
                "steps": CALIBRATION_STEPS,
                "warmup_steps": 0,
                "knn_every": 4,
                "health_every": 6,
            },
        },
        on_step=lambda step, values: marks.__setitem__(step, time.process_time()),
    )
    if summary["status"] != "completed" or set(range(1, CALIBRATION_STEPS + 1)) - set(marks):
        raise RuntimeError(
            f"calibration of {method} failed: {summary['error'] or 'a step logged nothing'}"
        )
    took = {step: marks[step] - marks[step - 1] for step in range(2, CALIBRATION_STEPS + 1)}
    step = sum(took[s] for s in (2, 3, 5, 7)) / 4
    return Costs(step, max(0.0, took[4] - step), max(0.0, took[6] - step))


def probe_points(steps: int, every: int, at_start: bool) -> int:
    """How many points a probe logs in a run of `steps` (the trainer's rule: every `every`
    steps and at the last; the online k-NN also at step 0, and only in a run that long)."""
    if every <= 0 or (at_start and every > steps):
        return 0
    return int(at_start) + steps // every + int(steps % every != 0)


def run_cost(steps: int, costs: Costs, knn_every: int, health_every: int) -> float:
    return (
        steps * costs.step
        + probe_points(steps, knn_every, True) * costs.knn
        + probe_points(steps, health_every, False) * costs.health
    )


def steps_for(cpu_budget: float, costs: Costs, knn_every: int, health_every: int) -> int:
    """The most steps whose training and probes fit `cpu_budget` CPU seconds."""
    per_step = costs.step
    per_step += costs.knn / knn_every if knn_every > 0 else 0.0
    per_step += costs.health / health_every if health_every > 0 else 0.0
    steps = max(MIN_STEPS, math.floor(cpu_budget / per_step))
    while run_cost(steps + 1, costs, knn_every, health_every) <= cpu_budget:
        steps += 1
    while steps > MIN_STEPS and run_cost(steps, costs, knn_every, health_every) > cpu_budget:
        steps -= 1
    return steps
