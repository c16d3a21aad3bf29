"""The demo pack: one click (or `python -m engine demo`) queues the showcase runs.

Seven quick-preset jobs, one per lens family, each on its method's default dataset: SimCLR and
CLIP on `shapes`, MAE and DINOv2 on `scenes` (where MAE's reconstructions beat the fills and
DINOv2's attention finds the object; DINO's quick run on `shapes` shows neither: issue #17 and
`bench/RESULTS.md`), BERT, GPT and T5 on `captions`; the image ones with the k-NN and linear
evaluations. When they have run, every lens and the explorer have a studio run of their kind to
open (the pickers default to the newest completed run of the right kind), beside the public Hub
models they suggest.

The expected time is the presets' steps times the seconds per step measured on the studio's
reference machine (2 CPU cores whose bf16 is native, no GPU; `MEASURED` names the run behind
each figure), plus the measured time of the evaluations. The studio runs one job at a time by
default (`PRETEXT_MAX_JOBS`), so the times add up.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.config import build_config
from engine.contract import DemoJob, DemoPlan, HardwareInfo
from engine.registry import get_method

PRESET = "quick"
REFERENCE = "2 CPU cores with native bf16, no GPU"


@dataclass(frozen=True)
class Measured:
    """Seconds per step of a method's quick preset on the reference machine, and the source."""

    seconds_per_step: float
    source: str


# Queue order: the short text jobs first, so three lenses fill within minutes; SimCLR last,
# so the newest run (the explorer's default) is the image run with the best k-NN figure.
SHOWCASE: tuple[str, ...] = ("bert", "gpt", "t5", "clip", "mae", "dinov2", "simclr")

# Whole-job durations (minutes) over the preset's steps, 2 cores, nothing else training.
MEASURED: dict[str, Measured] = {
    "bert": Measured(0.1 * 60 / 200, "bench/RESULTS-text.md, third session: 200 steps, 0.1 min"),
    "gpt": Measured(0.3 * 60 / 200, "bench/RESULTS-text.md, third session: 200 steps, 0.3 min"),
    "t5": Measured(1.0 * 60 / 800, "bench/RESULTS-text.md, third session: 800 steps, 1.0 min"),
    "clip": Measured(
        4.1 * 60 / 4000, "bench/RESULTS-text.md, fourth session: 4000 steps, 4.1 min (CLI)"
    ),
    "mae": Measured(290 / 450, "bench/RESULTS.md, eighth session, mae450_s0: 450 steps in 290 s"),
    "dinov2": Measured(343 / 250, "bench/RESULTS.md, sixth session, d2_sc250: 250 steps in 343 s"),
    "simclr": Measured(
        120 / 523, "bench/RESULTS.md, shapes v2 benchmark: 523 steps in 120 s x 2 cores"
    ),
}
# k-NN + linear probe on `shapes` (5,000 train and 1,000 test images) by backbone: the CPU
# seconds (user + sys, less the 2.8 s of start-up imports) of `python -m engine eval
# --baseline random --backbone B --dataset shapes --protocol knn,linear`, the feature
# extraction and protocols a job's end-of-job evaluation runs. Measured 2026-12-06 on the
# 2-core machine under a load of 13-16, where wall time meant nothing (255-385 s) and CPU
# time is what the work costs: on 2 idle cores it takes at most this long.
EVAL_SECONDS: dict[str, float] = {"convnet": 44.0, "vit-tiny": 69.0}


def showcase_specs() -> list[dict]:
    """The seven specs, as `Studio.submit` takes them (quick preset, evaluations where the
    method has image features)."""
    from engine.evaluation import DEFAULT_EVALS
    from engine.evaluation.health import has_image_embed

    specs = []
    for method in SHOWCASE:
        dataset = get_method(method).default_dataset
        evals = list(DEFAULT_EVALS) if has_image_embed(get_method(method)) else []
        specs.append({"method": method, "dataset": dataset, "preset": PRESET, "evals": evals})
    return specs


def plan(hardware: HardwareInfo, describe: str) -> DemoPlan:
    """The seven jobs with their steps and expected seconds, and the total (no job queued)."""
    jobs: list[DemoJob] = []
    for spec in showcase_specs():
        config = build_config(get_method(spec["method"]).Config, PRESET, {})
        measured = MEASURED[spec["method"]]
        train_s = config.steps * measured.seconds_per_step
        eval_s = EVAL_SECONDS.get(config.backbone, max(EVAL_SECONDS.values()))
        eval_s = eval_s if spec["evals"] else 0.0
        jobs.append(
            {
                "method": spec["method"],
                "dataset": spec["dataset"],
                "preset": PRESET,
                "evals": spec["evals"],
                "steps": config.steps,
                "backbone": config.backbone,
                "expected_s": round(train_s + eval_s),
                "source": measured.source,
                "job_id": None,
            }
        )
    total = sum(job["expected_s"] for job in jobs)
    return {
        "jobs": jobs,
        "expected_s": total,
        "measured_on": REFERENCE,
        "hardware": describe,
        "note": hardware_note(hardware, total),
    }


def hardware_note(hardware: HardwareInfo, total_s: float) -> str:
    """One line: how this machine compares with the one the figures were measured on."""
    minutes = f"about {total_s / 60:.0f} minutes"
    if hardware["cuda_devices"]:
        return (
            f"{minutes} measured on {REFERENCE}; this machine has a GPU, which runs the image "
            "jobs faster (the figure is an upper bound)"
        )
    if hardware["cpu_cores"] == 2 and not hardware.get("fast_bf16", True):
        # The image jobs train in fp32 here: SimCLR's quick step took 1.7 s in fp32 on an
        # AVX2-only AMD EPYC, where the reference machine's whole quick job ran 0.23 s a step.
        return (
            f"{minutes} measured on {REFERENCE}; this CPU emulates bf16, so the image jobs "
            "train in fp32 and take several times longer"
        )
    if hardware["cpu_cores"] == 2:
        return f"{minutes} on this machine's 2 CPU cores (measured, one job at a time)"
    return (
        f"{minutes} measured on {REFERENCE}; this machine has {hardware['cpu_cores']} "
        "cores, so expect it to differ"
    )
