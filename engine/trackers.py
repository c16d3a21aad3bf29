"""Experiment trackers: every metric point a job stores also goes where the user already looks.

A job's `report_to` setting names one of Accelerate's trackers (accelerate.tracking, used
directly: the studio has its own loop and no `Accelerator`). TensorBoard writes event files into
the run folder (`<home>/runs/<id>/tensorboard`, open with `tensorboard --logdir` on it or on
`<home>/runs` for every run); Trackio, W&B and MLflow log where their own settings say
(`TRACKIO_*`, `WANDB_*`, `MLFLOW_*` environment variables), project "pretext-studio", run
"job-<id>".

Accelerate's `log_with="tensorboard"` without the tensorboard package only warns and logs
nothing, so a tracker whose package is not installed is refused when the spec is validated
(`check_installed`, torch-free), before a job row is written. Only rank 0 opens a tracker.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.errors import SpecError

log = logging.getLogger(__name__)

REPORT_TO = ["none", "tensorboard", "trackio", "wandb", "mlflow"]
PACKAGES = {
    "tensorboard": "tensorboard",
    "trackio": "trackio",
    "wandb": "wandb",
    "mlflow": "mlflow",
}
PROJECT = "pretext-studio"
TENSORBOARD_DIR = "tensorboard"  # inside the run folder


def installed(report_to: str) -> bool:
    """Whether the package `report_to` needs can be imported here (without importing it)."""
    package = PACKAGES.get(report_to)
    return package is None or importlib.util.find_spec(package) is not None


def check_installed(report_to: str) -> None:
    """SpecError naming the missing package (and the pip line) for a tracker not installed."""
    if not installed(report_to):
        raise SpecError(
            f"report_to={report_to} needs the {PACKAGES[report_to]} package, which is not "
            f"installed on the server: `pip install {PACKAGES[report_to]}`, or choose "
            f"report_to=none (installed here: {', '.join(available())})"
        )


def available() -> list[str]:
    """The `report_to` choices whose package is installed (always "none")."""
    return [name for name in REPORT_TO if installed(name)]


def tensorboard_dir(run_dir: os.PathLike) -> Path:
    return Path(run_dir) / TENSORBOARD_DIR


class Tracker:
    """One job's tracker: `log(step, values)` per step, `close()` at the end. A tracker that
    fails while logging is logged once and turned off: the job never fails for its tracker."""

    def __init__(self, backend: Any, report_to: str) -> None:
        self.backend, self.report_to = backend, report_to

    def log(self, points: Iterable[tuple[int, str, float]]) -> None:
        """Metric points (step, name, value), grouped into one call per step."""
        if self.backend is None:
            return
        by_step: dict[int, dict[str, float]] = {}
        for step, name, value in points:
            by_step.setdefault(step, {})[name] = value
        try:
            for step in sorted(by_step):
                self.backend.log(by_step[step], step=step)
        except Exception:  # a tracker's outage must not fail the training
            log.exception("%s tracker failed; no more points go to it", self.report_to)
            self.backend = None

    def close(self) -> None:
        if self.backend is None:
            return
        try:
            self.backend.finish()
        except Exception:
            log.exception("closing the %s tracker failed", self.report_to)
        self.backend = None


def open_tracker(
    report_to: str,
    job_id: int,
    run_dir: os.PathLike,
    first_step: int = 0,
    config: dict[str, Any] | None = None,
) -> Tracker | None:
    """The job's tracker, started (None for "none"). `first_step` is where a resumed job starts
    again: TensorBoard drops the points it wrote after it (`purge_step`), as the store does."""
    if report_to in (None, "", "none"):
        return None
    check_installed(report_to)
    from accelerate import PartialState, tracking

    # Accelerate's trackers log through its logger, which requires Accelerate's state: the
    # trainer's Accelerator made it before the sink starts (this only reads it); alone, a
    # process without a launcher gets the one-process state.
    PartialState()
    name = f"job-{job_id}"
    if report_to == "tensorboard":
        purge = {"purge_step": first_step + 1} if first_step > 0 else {}
        backend = tracking.TensorBoardTracker("", tensorboard_dir(run_dir), **purge)
    elif report_to == "trackio":
        backend = tracking.TrackioTracker(PROJECT, name=name, resume="allow")
    elif report_to == "wandb":
        backend = tracking.WandBTracker(PROJECT, name=name)
    elif report_to == "mlflow":
        backend = tracking.MLflowTracker(experiment_name=PROJECT, run_name=name)
    else:
        raise SpecError(f"report_to must be one of {REPORT_TO}, got {report_to!r}")
    backend.main_process_only = False  # the caller is rank 0 already
    backend.start()
    if config and report_to != "tensorboard":  # TensorBoard's hparams go to a second folder
        try:
            backend.store_init_configuration(
                {k: v for k, v in config.items() if isinstance(v, (bool, int, float, str))}
            )
        except Exception:
            log.exception("%s did not take the configuration", report_to)
    return Tracker(backend, report_to)


def is_main_process() -> bool:
    """Rank 0, or no launcher at all (torchrun and `accelerate launch` set RANK)."""
    return os.environ.get("RANK", "0") == "0"
