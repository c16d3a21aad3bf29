"""The Runs tab's plain helpers (no components): the leaderboard frame and its columns, job
labels and choices, the overlaid curves of several jobs (`sync_compare` fetches only new points)
and `evaluate_jobs`. The tab (`webapp/runs_tab.py`) wires them up."""

from __future__ import annotations

import json
import re
from typing import Any

import pandas as pd

from engine.contract import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    DatasetInfo,
    JobSummary,
    LeaderboardRow,
    Progress,
    Studio,
)
from engine.errors import StudioError
from webapp.errors import error_note
from webapp.figures import add_points, curve_frame, empty_curves, format_duration, message, rewind

FINISHED = TERMINAL_STATUSES  # the jobs that can be evaluated
# "run" is "#3 simclr" for a job (its method in the name), "pixels" or "random resnet18 (simclr)".
BASE_COLUMNS = ["run", "backbone", "dataset", "px", "steps", "time"]
# Health metrics the training loop logs (engine/evaluation/health.py), with what to look for.
HEALTH_METRICS: dict[str, str] = {
    "embedding_std": "embedding std",
    "effective_rank": "effective rank",
    "alignment": "alignment",
    "uniformity": "uniformity",
    "online_knn_top1": "online k-NN top-1",
}
# Plot titles: what a healthy curve looks like.
HEALTH_TITLES: dict[str, str] = {
    "embedding_std": "Embedding std (healthy ~ 1/sqrt(d), collapsed ~ 0)",
    "effective_rank": "Effective rank, RankMe (collapsed = 1)",
    "alignment": "Alignment of two views (lower = more invariant)",
    "uniformity": "Uniformity (lower = more spread on the sphere)",
    "online_knn_top1": "Online k-NN top-1 on training images (higher = learnt more)",
}
ALL_DATASETS = "all datasets"
# One colour per job, fixed by its id so a job keeps its colour whatever else is selected.
PALETTE = [
    "#4c72b0",
    "#dd8452",
    "#55a868",
    "#c44e52",
    "#8172b3",
    "#937860",
    "#da8bc3",
    "#8c8c8c",
    "#ccb974",
    "#64b5cd",
]


def _pct(key: str) -> float:
    match = re.match(r"([\d.]+)pct", key)
    return float(match.group(1)) if match else 0.0


def figure_columns(rows: list[LeaderboardRow]) -> list[tuple[str, str]]:
    """(figure key, column header) for the figures any row has, in a fixed order; the four
    headline protocols and the segmentation Jaccard always get a column so an empty board
    still says what it will hold; the reconstruction PSNR and its margin when a row has them."""
    prefixes = ("knn_", "linear_", "fewshot_", "finetune_", "seg_", "recon_")
    keys = {k for row in rows for k in row if k.startswith(prefixes)}
    keys |= {"knn_top1", "linear_top1", "fewshot_5shot", "finetune_10pct", "seg_jaccard_best"}
    out = [("knn_top1", "k-NN"), ("linear_top1", "linear")]  # k-NN top-5: in the API
    shots = sorted({int(m.group(1)) for k in keys if (m := re.fullmatch(r"fewshot_(\d+)shot", k))})
    out += [(f"fewshot_{n}shot", f"{n}-shot") for n in shots]
    fractions = sorted(
        {
            k.removeprefix("finetune_").removesuffix("_scratch")
            for k in keys
            if k.startswith("finetune_")
        },
        key=_pct,
    )
    for frac in fractions:
        out += [
            (f"finetune_{frac}", f"FT {frac.replace('pct', '%')}"),
            (f"finetune_{frac}_scratch", f"scratch {frac.replace('pct', '%')}"),
        ]
    # DINO's table 7: the best head's Jaccard (the mean over heads is in the API).
    out += [("seg_jaccard_best", "seg. Jaccard")]
    out += [("recon_psnr", "PSNR dB"), ("recon_margin_db", "PSNR margin")]
    return [(k, h) for k, h in out if k in keys]


def leaderboard_frame(
    rows: list[LeaderboardRow], text: str = "", dataset: str | None = None
) -> pd.DataFrame:
    """The leaderboard as a table, filtered by words (every word must appear in the row's
    name, method, backbone or dataset) and by evaluation dataset."""
    words = (text or "").lower().split()
    kept = []
    for row in rows:
        if dataset and dataset != ALL_DATASETS and row["dataset"] != dataset:
            continue
        haystack = " ".join(
            str(row.get(k) or "") for k in ("name", "method", "backbone", "dataset", "trained_on")
        ).lower()
        if all(w in haystack for w in words):
            kept.append(row)
    columns = figure_columns(rows)
    table = []
    for row in kept:
        wall = format_duration(row["wall_time_s"]) if row.get("wall_time_s") else ""
        table.append(
            [
                row["name"],
                row.get("backbone") or "",
                row["dataset"],
                row.get("image_size"),
                row.get("eval_step", row.get("steps")) or None,
                wall,
                *[row.get(k) for k, _ in columns],
            ]
        )
    headers = BASE_COLUMNS + [h for _, h in columns]
    frame = pd.DataFrame(table, columns=headers)
    for _, header in columns:
        frame[header] = pd.to_numeric(frame[header], errors="coerce").round(4)
    return frame


def board_datatypes(frame: pd.DataFrame) -> list[str]:
    return ["str", "str", "str", "number", "number", "str"] + ["number"] * (
        len(frame.columns) - len(BASE_COLUMNS)
    )


def board_key(frame: pd.DataFrame, datasets: list[str]) -> str:
    """What the browser shows now: refreshes send nothing while it stays the same."""
    return json.dumps([frame.to_json(), datasets])


def job_label(job: JobSummary) -> str:
    return f"#{job['id']} {job['method']} on {job['dataset']} ({job['status']})"


def job_choices(jobs: list[JobSummary], finished_only: bool = False) -> list[tuple[str, int]]:
    """Dropdown choices (label, id), newest first."""
    return [
        (job_label(j), j["id"])
        for j in sorted(jobs, key=lambda j: -j["id"])
        if not finished_only or j["status"] in FINISHED
    ]


def newest_with_curves(jobs: list[JobSummary]) -> int | None:
    """The newest job that has logged a step (a queued job has no curve yet); None if none."""
    started = [j["id"] for j in jobs if j["status"] != "queued" and (j.get("step") or 0) > 0]
    return max(started, default=None)


def dataset_choices(datasets: list[DatasetInfo]) -> list[tuple[str, str]]:
    """Labelled image datasets (evaluation needs labels); "" means the job's own."""
    out = [("the job's eval dataset (else its training dataset)", "")]
    out += [
        (d["name"], d["name"])
        for d in datasets
        if d.get("kind", "image") == "image" and d.get("labelled") and d.get("available")
    ]
    return out


def short_name(job: JobSummary) -> str:
    return f"#{job['id']} {job['method']}"


def sync_compare(
    studio: Studio, compare: dict[str, Any], job_ids: list[int]
) -> tuple[dict[str, Any], bool]:
    """Follow exactly `job_ids`: fetch new jobs' history, drop the rest; poll active ones for
    points after the last they have. Returns (compare, whether any curve changed)."""
    wanted = [str(int(j)) for j in job_ids or []]
    changed = set(compare) != set(wanted)
    out = {}
    for key in wanted:
        entry = compare.get(key)
        if entry is None:
            entry = {"curves": empty_curves(int(key)), "name": "", "status": None}
        if entry["status"] in ACTIVE_STATUSES or entry["status"] is None:
            try:
                job = studio.job(int(key))
            except StudioError:  # deleted meanwhile
                changed = True
                continue
            curves = entry["curves"]
            if job["step"] < curves["since"]:
                rewind(curves, job["step"])
                changed = True
            new = studio.metrics(int(key), curves["since"])
            if new:
                add_points(curves, new)
                changed = True
            entry.update(name=short_name(job), status=job["status"])
        out[key] = entry
    return out, changed


def overlay_frame(
    compare: dict[str, Any], metric: str, x_lim: list[float] | None = None
) -> pd.DataFrame:
    """Long format (step, value, job) of `metric` for every followed job, thinned per job."""
    parts = []
    for entry in compare.values():
        frame = curve_frame(entry["curves"], metric, x_lim)
        frame.columns = ["step", "value"]
        if frame.empty:
            # One invalid point (the chart skips it) keeps the job in the colour domain, so
            # the domain changes only when the selection does (see `job_colors`).
            frame = pd.DataFrame({"step": [float("nan")], "value": [float("nan")]})
        frame["job"] = entry["name"]
        parts.append(frame)
    if not parts:
        return pd.DataFrame(
            {
                "step": pd.Series(dtype="int64"),
                "value": pd.Series(dtype="float64"),
                "job": pd.Series(dtype="str"),
            }
        )
    return pd.concat(parts, ignore_index=True)


def job_colors(compare: dict[str, Any]) -> dict[str, str]:
    """{job name: colour} for the followed jobs.

    Gradio's LinePlot takes its colour domain from the data when it builds its chart, and a
    new `value` alone does not rebuild it: a job added to the selection would not be drawn.
    So a selection change sends the new values first, then (`restyle`, chained after) this
    map as `color_map`, whose change rebuilds the chart with the values already in place."""
    return {e["name"]: PALETTE[int(key) % len(PALETTE)] for key, e in compare.items()}


def health_choices(compare: dict[str, Any]) -> list[tuple[str, str]]:
    """The health metrics (always offered), then any other metric the followed jobs log."""
    logged = {n for e in compare.values() for n in e["curves"]["points"]}
    extra = sorted(logged - set(HEALTH_METRICS) - {"loss", "lr"})
    return [(label, name) for name, label in HEALTH_METRICS.items()] + [(n, n) for n in extra]


def evaluate_jobs(
    studio: Studio,
    job_id: int | None,
    protocols: list[str],
    dataset: str | None,
    report: Progress | None = None,
    model: str | None = None,
) -> str:
    """The Evaluate button's logic: run each protocol on the job (or, when `model` names one,
    on a Hub model or model folder), return a status message. `report(fraction, text)`
    receives the progress of all protocols together."""
    model = (model or "").strip()
    if not model and job_id is None:
        return message("Choose a finished job to evaluate, or type a Hub model.", "warn")
    if model and not dataset:
        return message(f"Choose the labelled dataset to evaluate {model} on (e.g. shapes).", "warn")
    if not protocols:
        return message("Tick at least one protocol.", "warn")
    done = []
    for i, protocol in enumerate(protocols):

        def on_progress(fraction: float, text: str, i: int = i, protocol: str = protocol) -> None:
            if report is not None:
                report((i + fraction) / len(protocols), f"{protocol}: {text}")

        try:
            if model:
                row = studio.evaluate_model(model, str(dataset), protocol, on_progress)
            else:
                row = studio.evaluate(
                    int(job_id), protocol, dataset or None, on_progress=on_progress
                )
        except Exception as error:  # noqa: BLE001 - the user's message, or a bug logged
            return error_note(error, f"evaluating {model or f'job {job_id}'}")
        done.append(
            ", ".join(f"{k} {v:.3f}" for k, v in row["figures"].items() if not k.endswith("_std"))
        )
    subject = model or f"Job #{job_id}"
    return message(f"{subject} on {row['dataset']}: " + "; ".join(done), "ok")
