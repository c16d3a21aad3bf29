"""The image-method leaderboard: every image method on `digits` and `shapes`, same time budget.

    python bench/methods.py [--methods simclr,byol] [--datasets digits,shapes | default]
                            [--budget-s 90] [--vit-budget-s 180] [--out results.json]
                            [--home DIR] [--set key=value ...] [--json]

Issue #17's goals, every method on the builtin set it suits, 3 CPU minutes for the convnets
and 6 for the ViTs:

    python bench/methods.py --datasets default --budget-s 180 --vit-budget-s 360

Each method trains with its `quick` preset for the same wall-time budget on each dataset, then
its last checkpoint is evaluated with k-NN and the linear probe on the dataset's test split,
next to two baselines through the same code: raw pixels, and the method's own network at random
initialisation (what pretraining has to beat). All of it goes through `engine.api.Studio`, in a
throwaway home folder per method (so each method's random baseline is its own network; pass
--home to keep them).

The budget is compute, not wall time: `--budget-s` seconds of the whole machine, i.e. that many
seconds times the number of cores in CPU time. A short calibration job (a few steps of the same
spec) measures the CPU seconds a step of the method takes, and a point of each probe the run
logs (the online k-NN every `knn_every` steps, the health metrics every `health_every`); the
real job then gets the number of steps that fills the budget with its probes, with the preset's
warmup scaled down when the run is short, so the learning-rate schedule runs its whole course
(stopping a longer job part-way would leave its cosine half done). Counting CPU time rather
than wall time keeps the budget the same for every method when other processes share the
machine (on an idle machine the two agree, up to the cores a step leaves idle); the wall time
and the load are recorded with every row. "images/s" is the speed this gives on the whole
machine: images per CPU second times the cores.

`--datasets default` runs each method on its own default dataset (the one the Train tab picks
for it). The methods their papers judge otherwise are also evaluated that way, next to their
twin (`JUDGED_BY`): MAE and BEiT by fine-tuning on 10% of the labels, DINO's and DINOv2's
attention (and MAE's) by the `segmentation` protocol where the dataset has object masks, MAE's
decoder by `reconstruction`.

Prints a markdown table (dataset, method, steps, images/s, k-NN top-1 and its gain over the
twin, linear top-1, the judged figures, and the baselines as rows; `--json` prints the rows as
JSON instead) and writes every figure to --out as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.budget import calibrate, steps_for
from engine.api import Studio
from engine.config import build_config
from engine.registry import get_method, list_methods

# Protocols beyond k-NN and linear, per method: how its paper judges it (issue #17).
JUDGED_BY = {
    "mae": ("finetune", "reconstruction", "segmentation"),
    "beit": ("finetune",),
    "dino": ("segmentation",),
    "dinov2": ("segmentation",),
}
CORES = os.cpu_count() or 1


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f}/{five:.1f}"


def image_methods() -> list[str]:
    return [m for m in list_methods() if get_method(m).modality == "image"]


def parse_set(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set wants key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def run_params(method: str, steps: int, extra: dict[str, str]) -> dict[str, Any]:
    """The quick preset with `steps`; warmup shortened to at most a tenth of a short run."""
    preset = build_config(get_method(method).Config, "quick", extra)
    return {
        **extra,
        "steps": steps,
        "warmup_steps": min(preset.warmup_steps, steps // 10),
        "checkpoint_every": steps,
    }


def plan_runs(methods: list[str], datasets: list[str]) -> list[tuple[str, str]]:
    """(dataset, method) pairs: every method on the first dataset before the next, or with
    `default` each method on its own default dataset."""
    if datasets == ["default"]:
        return [(get_method(m).default_dataset, m) for m in methods]
    return [(d, m) for d in datasets for m in methods]


def budget_of(method: str, extra: dict[str, str], budget: float, vit: float | None) -> float:
    """`vit` for a method whose network is a ViT (when given), else `budget`."""
    config = build_config(get_method(method).Config, "quick", extra)
    backbone = str(getattr(config, "backbone", ""))
    return vit if vit and backbone.startswith("vit") else budget


def bench_one(
    studio: Studio, method: str, dataset: str, budget: float, extra: dict[str, str]
) -> list[dict[str, Any]]:
    """Train `method` on `dataset` for `budget` seconds, evaluate; its row and its baselines'."""
    preset = build_config(get_method(method).Config, "quick", extra)
    batch = preset.batch_size
    busy = os.getloadavg()[0]
    costs = calibrate(studio, method, dataset, extra)
    if busy > CORES + 0.5:
        # Under load, PyTorch's threads spin waiting for cores and bill CPU time without
        # progress: the calibration overstates a step's cost and the method gets fewer steps
        # than its budget (SimSiam, 149 steps in bench/RESULTS.md).
        print(
            f"warning: {method} calibrated at load {busy:.1f} on {CORES} cores; its step "
            "count may be low: rerun it on a quiet machine",
            file=sys.stderr,
            flush=True,
        )
    steps = steps_for(budget * CORES, costs, preset.knn_every, preset.health_every)
    cpu_start = time.process_time()
    tick = time.monotonic()
    summary = studio.run_foreground(
        {"method": method, "dataset": dataset, "params": run_params(method, steps, extra)}
    )
    train_s = time.monotonic() - tick
    train_cpu_s = time.process_time() - cpu_start
    job = studio.job(summary["job_id"])
    row: dict[str, Any] = {
        "dataset": dataset,
        "method": method,
        "kind": "job",
        "job_id": job["id"],
        "status": summary["status"],
        "steps": job["step"],
        "batch_size": batch,
        "train_s": round(train_s, 1),
        "train_cpu_s": round(train_cpu_s, 1),
        "images_per_second": round(batch * CORES / costs.step, 1),
        "probe_cpu_s": {"knn": round(costs.knn, 2), "health": round(costs.health, 2)},
        "wall_images_per_second": job["images_per_second"],
        "first_loss": summary.get("first_loss"),
        "last_loss": job["last_loss"],
        "load": load(),
        "calibration_load": round(busy, 1),
    }
    if summary["status"] != "completed":
        row["error"] = summary["error"]
        return [row]
    baselines: dict[str, dict[str, Any]] = {}
    for protocol in ("knn", "linear"):
        result = studio.evaluate(job["id"], protocol)
        row[f"{protocol}_top1"] = result["figures"].get(f"{protocol}_top1")
    for protocol in JUDGED_BY.get(method, ()):
        try:  # segmentation refuses a set without object masks (digits): noted, not fatal
            row.update(studio.evaluate(job["id"], protocol)["figures"])
        except Exception as exc:  # noqa: BLE001 - keep the k-NN figures of the row
            row[f"{protocol}_error"] = f"{type(exc).__name__}: {exc}"
    for ev in studio.evaluations():
        params = ev["params"] or {}
        if ev["job_id"] is not None or ev["dataset"] != dataset:
            continue
        name = params.get("baseline")
        label = "pixels" if name == "pixels" else f"random init ({method}: {params['backbone']})"
        base = baselines.setdefault(
            label, {"dataset": dataset, "method": label, "kind": "baseline", "of": method}
        )
        base.update(ev["figures"])
    row["eval_s"] = round(time.monotonic() - tick - train_s, 1)
    return [row, *baselines.values()]


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def gain(value: Any, twin: Any) -> str:
    if value is None or twin is None:
        return "-"
    return f"{value - twin:+.3f}"


def judged(row: dict[str, Any], twin: dict[str, Any]) -> str:
    """The figures of JUDGED_BY, the job's against its twin's where the twin has one."""
    parts = []
    if row.get("finetune_10pct") is not None:
        parts.append(
            f"fine-tune 10% {fmt(row['finetune_10pct'])} / "
            f"{fmt(row.get('finetune_10pct_scratch', twin.get('finetune_10pct')))}"
        )
    if row.get("seg_jaccard_best") is not None:
        parts.append(
            f"Jaccard {fmt(row['seg_jaccard_best'])} / {fmt(twin.get('seg_jaccard_best'))}"
        )
    if row.get("recon_margin_db") is not None:
        parts.append(
            f"reconstruction {fmt(row['recon_psnr'], 2)} dB, "
            f"{row['recon_margin_db']:+.2f} dB over the fills"
        )
    return "; ".join(parts) or "-"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| dataset | method | steps | images/s | k-NN top-1 | twin k-NN | gain | "
        "linear top-1 | twin linear | judged by its paper: job / twin |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    pixels_done: set[str] = set()
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        here = [r for r in rows if r["dataset"] == dataset]
        for r in (r for r in here if r["kind"] == "job"):
            twin = next(
                (
                    b
                    for b in here
                    if b["kind"] == "baseline"
                    and b["of"] == r["method"]
                    and b["method"] != "pixels"
                ),
                {},
            )
            lines.append(
                f"| {dataset} | {r['method']} | {r['steps']} | "
                f"{fmt(r.get('images_per_second'), 0)} | {fmt(r.get('knn_top1'))} | "
                f"{fmt(twin.get('knn_top1'))} | {gain(r.get('knn_top1'), twin.get('knn_top1'))} | "
                f"{fmt(r.get('linear_top1'))} | {fmt(twin.get('linear_top1'))} | "
                f"{judged(r, twin)} |"
            )
        for b in (b for b in here if b["method"] == "pixels"):
            if dataset not in pixels_done:
                pixels_done.add(dataset)
                lines.append(
                    f"| {dataset} | baseline: raw pixels | 0 | - | "
                    f"{fmt(b.get('knn_top1'))} | | | {fmt(b.get('linear_top1'))} | | |"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--methods", default=",".join(image_methods()))
    parser.add_argument(
        "--datasets",
        default="digits,shapes",
        help="comma-separated; `default`: each method on its own default dataset",
    )
    parser.add_argument(
        "--budget-s",
        dest="budget",
        type=float,
        default=90.0,
        help="training seconds of the whole machine per run (x cores of CPU "
        "time; the calibration job comes on top)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a quick-preset setting for every method (exploration)",
    )
    parser.add_argument(
        "--vit-budget-s",
        dest="vit_budget",
        type=float,
        default=None,
        help="the budget of the ViT methods (default: --budget-s); issue #17 gives them twice "
        "the convnets' time",
    )
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    parser.add_argument(
        "--json", action="store_true", help="print the rows as JSON instead of the table"
    )
    parser.add_argument(
        "--home", default=None, help="keep the home folders (one per method) under this folder"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0: torch's default); 1 wastes no CPU time on "
        "thread synchronisation when other processes share the cores",
    )
    parser.add_argument(
        "--table",
        nargs="+",
        metavar="JSON",
        default=None,
        help="print the table of earlier --out files (merged) and exit",
    )
    args = parser.parse_args()
    if args.table:
        rows = [row for path in args.table for row in json.loads(Path(path).read_text())["rows"]]
        order = {d: i for i, d in enumerate(dict.fromkeys(r["dataset"] for r in rows))}
        print(table(sorted(rows, key=lambda r: order[r["dataset"]])))
        return
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    methods = [m for m in args.methods.split(",") if m]
    datasets = [d for d in args.datasets.split(",") if d]
    extra = parse_set(args.set)
    unknown = sorted(set(methods) - set(image_methods()))
    if unknown:
        raise SystemExit(
            f"not image methods: {', '.join(unknown)}; choose from {', '.join(image_methods())}"
        )
    started = time.strftime("%Y-%m-%d %H:%M")
    vit = f" ({args.vit_budget:g} s for the ViTs)" if args.vit_budget else ""
    report = sys.stderr if args.json else sys.stdout  # keep stdout to the JSON
    print(
        f"{started}, {CORES} cores, load (1/5 min) {load()}, budget {args.budget:g} s{vit} x "
        f"{CORES} cores of CPU time per run"
        f"{', overrides ' + str(extra) if extra else ''}",
        file=report,
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.home or tmp)
        studios = {method: Studio(root / method) for method in methods}
        for dataset, method in plan_runs(methods, datasets):
            studio = studios[method]
            budget = budget_of(method, extra, args.budget, args.vit_budget)
            try:
                found = bench_one(studio, method, dataset, budget, extra)
            except Exception as exc:  # noqa: BLE001 - one method failing must not lose the others
                found = [
                    {
                        "dataset": dataset,
                        "method": method,
                        "kind": "job",
                        "steps": 0,
                        "error": f"{type(exc).__name__}: {exc}",
                    }
                ]
            rows.extend(found)
            job = found[0]
            print(
                f"{dataset:>7} {method:<13} steps {job.get('steps')} in "
                f"{job.get('train_s')} s wall, {job.get('train_cpu_s')} s CPU "
                f"({fmt(job.get('images_per_second'), 0)} img/s), "
                f"k-NN {fmt(job.get('knn_top1'))}, linear {fmt(job.get('linear_top1'))}"
                + "".join(
                    f"; {b['method']} k-NN {fmt(b.get('knn_top1'))} linear "
                    f"{fmt(b.get('linear_top1'))}"
                    for b in found[1:]
                )
                + f"; eval {job.get('eval_s')} s, load {load()}"
                + (f"; {judged(job, {})}" if method in JUDGED_BY else "")
                + (f"; ERROR {job['error']}" if job.get("error") else ""),
                file=report,
                flush=True,
            )
            if args.out:
                Path(args.out).write_text(
                    json.dumps(
                        {
                            "started": started,
                            "budget_s": args.budget,
                            "vit_budget_s": args.vit_budget,
                            "overrides": extra,
                            "rows": rows,
                        },
                        indent=1,
                    )
                )
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print()
        print(table(rows))


if __name__ == "__main__":
    main()
