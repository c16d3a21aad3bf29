"""Runs tab: compare jobs. A leaderboard of every evaluated job and baseline, several jobs'
loss and health curves overlaid (one colour per job), and on-demand evaluation.

Everything shown is read from the store through `studio.leaderboard()` and `studio.metrics()`;
only the Evaluate button computes (`studio.evaluate`, with a progress bar). The zoom works as in
`figures.CurvePanel`: brushing a step range sets `x_lim` on both plots, a double click clears it,
and refreshes send only new values, so the zoom survives every tick.
"""
from __future__ import annotations

import json
import logging
import re
from typing import Any

import gradio as gr
import pandas as pd

from webapp.figures import (ACTIVE_STATUSES, add_points, curve_frame, empty_curves,
                            format_duration, message, rewind)
from webapp.train_tab import eval_choices

log = logging.getLogger(__name__)
REFRESH_S = 3.0
FINISHED = ("completed", "cancelled", "interrupted", "failed")
# "run" is "#3 simclr" for a job (its method in the name), "pixels" or "random resnet18".
BASE_COLUMNS = ["run", "backbone", "dataset", "px", "steps", "time"]
# Health metrics the training loop logs (engine/evaluation/health.py), with what to look for.
HEALTH_METRICS: dict[str, str] = {
    "embedding_std": "embedding std",
    "effective_rank": "effective rank",
    "alignment": "alignment",
    "uniformity": "uniformity",
}
# Plot titles: what a healthy curve looks like.
HEALTH_TITLES: dict[str, str] = {
    "embedding_std": "Embedding std (healthy ~ 1/sqrt(d), collapsed ~ 0)",
    "effective_rank": "Effective rank, RankMe (collapsed = 1)",
    "alignment": "Alignment of two views (lower = more invariant)",
    "uniformity": "Uniformity (lower = more spread on the sphere)",
}
ALL_DATASETS = "all datasets"
# One colour per job, fixed by its id so a job keeps its colour whatever else is selected.
PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3",
           "#8c8c8c", "#ccb974", "#64b5cd"]


# ---- plain helpers (no components) ------------------------------------------------------
def _pct(key: str) -> float:
    match = re.match(r"([\d.]+)pct", key)
    return float(match.group(1)) if match else 0.0


def figure_columns(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(figure key, column header) for the figures any row has, in a fixed order; the four
    headline protocols always get a column so an empty board still says what it will hold."""
    keys = {k for row in rows for k in row if k.startswith(("knn_", "linear_", "fewshot_",
                                                            "finetune_"))}
    keys |= {"knn_top1", "linear_top1", "fewshot_5shot", "finetune_10pct"}
    out = [("knn_top1", "k-NN"), ("linear_top1", "linear")]  # k-NN top-5: in the API
    shots = sorted({int(m.group(1)) for k in keys
                    if (m := re.fullmatch(r"fewshot_(\d+)shot", k))})
    out += [(f"fewshot_{n}shot", f"{n}-shot") for n in shots]
    fractions = sorted({k.removeprefix("finetune_").removesuffix("_scratch") for k in keys
                        if k.startswith("finetune_")}, key=_pct)
    for frac in fractions:
        out += [(f"finetune_{frac}", f"FT {frac.replace('pct', '%')}"),
                (f"finetune_{frac}_scratch", f"scratch {frac.replace('pct', '%')}")]
    return [(k, h) for k, h in out if k in keys]


def leaderboard_frame(rows: list[dict[str, Any]], text: str = "",
                      dataset: str | None = None) -> pd.DataFrame:
    """The leaderboard as a table, filtered by words (every word must appear in the row's
    name, method, backbone or dataset) and by evaluation dataset."""
    words = (text or "").lower().split()
    kept = []
    for row in rows:
        if dataset and dataset != ALL_DATASETS and row["dataset"] != dataset:
            continue
        haystack = " ".join(str(row.get(k) or "") for k in
                            ("name", "method", "backbone", "dataset", "trained_on")).lower()
        if all(w in haystack for w in words):
            kept.append(row)
    columns = figure_columns(rows)
    table = []
    for row in kept:
        wall = format_duration(row["wall_time_s"]) if row.get("wall_time_s") else ""
        table.append([row["name"], row.get("backbone") or "", row["dataset"],
                      row.get("image_size"), row.get("eval_step", row.get("steps")) or None,
                      wall, *[row.get(k) for k, _ in columns]])
    headers = BASE_COLUMNS + [h for _, h in columns]
    frame = pd.DataFrame(table, columns=headers)
    for _, header in columns:
        frame[header] = pd.to_numeric(frame[header], errors="coerce").round(4)
    return frame


def board_datatypes(frame: pd.DataFrame) -> list[str]:
    return ["str", "str", "str", "number", "number", "str"] + \
        ["number"] * (len(frame.columns) - len(BASE_COLUMNS))


def board_key(frame: pd.DataFrame, datasets: list[str]) -> str:
    """What the browser shows now: refreshes send nothing while it stays the same."""
    return json.dumps([frame.to_json(), datasets])


def job_label(job: dict[str, Any]) -> str:
    return f"#{job['id']} {job['method']} on {job['dataset']} ({job['status']})"


def job_choices(jobs: list[dict[str, Any]], finished_only: bool = False
                ) -> list[tuple[str, int]]:
    """Dropdown choices (label, id), newest first."""
    return [(job_label(j), j["id"]) for j in sorted(jobs, key=lambda j: -j["id"])
            if not finished_only or j["status"] in FINISHED]


def dataset_choices(datasets: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Labelled image datasets (evaluation needs labels); "" means the job's own."""
    out = [("the job's eval dataset (else its training dataset)", "")]
    out += [(d["name"], d["name"]) for d in datasets
            if d.get("kind", "image") == "image" and d.get("labelled") and d.get("available")]
    return out


def short_name(job: dict[str, Any]) -> str:
    return f"#{job['id']} {job['method']}"


def sync_compare(studio: Any, compare: dict[str, Any], job_ids: list[int]
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
            except (ValueError, RuntimeError):
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


def overlay_frame(compare: dict[str, Any], metric: str, x_lim: list[float] | None = None
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
        return pd.DataFrame({"step": pd.Series(dtype="int64"),
                             "value": pd.Series(dtype="float64"),
                             "job": pd.Series(dtype="str")})
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


def evaluate_jobs(studio: Any, job_id: int | None, protocols: list[str], dataset: str | None,
                  report: Any = None) -> str:
    """The Evaluate button's logic: run each protocol on the job, return a status message.
    `report(fraction, text)` receives the progress of all protocols together."""
    if job_id is None:
        return message("Choose a finished job to evaluate.", "warn")
    if not protocols:
        return message("Tick at least one protocol.", "warn")
    done = []
    for i, protocol in enumerate(protocols):
        def on_progress(fraction: float, text: str, i: int = i, protocol: str = protocol
                        ) -> None:
            if report is not None:
                report((i + fraction) / len(protocols), f"{protocol}: {text}")

        try:
            row = studio.evaluate(int(job_id), protocol, dataset or None,
                                  on_progress=on_progress)
        except (ValueError, RuntimeError) as error:  # SpecError, DatasetError, JobError
            return message(str(error), "error")
        except Exception as error:  # a bug: keep the trace in the server log
            log.exception("evaluating job %s failed", job_id)
            return message(f"Evaluation failed: {error}", "error")
        done.append(", ".join(f"{k} {v:.3f}" for k, v in row["figures"].items()
                              if not k.endswith("_std")))
    return message(f"Job #{job_id} on {row['dataset']}: " + "; ".join(done), "ok")


# ---- the tab -----------------------------------------------------------------------------
class RunsTab:
    def __init__(self, studio: Any) -> None:
        self.studio = studio

    def build(self) -> None:
        jobs = self.studio.jobs()
        rows = self.studio.leaderboard()
        datasets = sorted({r["dataset"] for r in rows})
        gr.Markdown("Every evaluated job next to the **pixels** and **random-network** "
                    "baselines: did pretraining help? k-NN, linear and n-shot are test top-1 on "
                    "frozen features; FT n% fine-tunes on n% of the labels, scratch trains the "
                    "same network from random init on them. Click a header to sort; select a "
                    "job's row to add it to the curves below.", elem_classes=["ps-hint"])
        with gr.Row():
            self.filter = gr.Textbox(label="Filter", placeholder="words in method, backbone, "
                                     "dataset, e.g. simclr resnet18", scale=3)
            self.dataset_filter = gr.Dropdown([ALL_DATASETS, *datasets], value=ALL_DATASETS,
                                              label="Evaluated on", scale=1, min_width=160)
            self.refresh_btn = gr.Button("Refresh", size="sm", scale=0, min_width=100)
        frame = leaderboard_frame(rows)
        self.board = gr.Dataframe(frame, datatype=board_datatypes(frame), interactive=False,
                                  max_height=360, label="Leaderboard", show_label=False,
                                  elem_id="runs-board")
        self.board_key = gr.State(board_key(frame, datasets))
        self.jobs_key = gr.State(json.dumps(job_choices(jobs)))
        self.x_lim = gr.State(None)
        self.compare = gr.State({})
        self.style_key = gr.State("{}")  # the job colours the plots were last built with
        with gr.Row():
            with gr.Column(scale=3, min_width=480):
                gr.Markdown("#### Curves of several jobs")
                with gr.Row():
                    self.jobs = gr.Dropdown(job_choices(jobs), value=[], multiselect=True,
                                            label="Jobs", scale=3,
                                            info="Each job gets its own colour. Brush a step "
                                                 "range to zoom both plots; double-click to "
                                                 "zoom out.")
                    self.health_name = gr.Dropdown(health_choices({}), value="embedding_std",
                                                   label="Health metric", scale=2,
                                                   info="Logged every health_every steps "
                                                        "on a fixed batch of images.")
                common = dict(x="step", y="value", color="job", height=260, x_title="step",
                              tooltip="all")
                self.loss_plot = gr.LinePlot(overlay_frame({}, "loss"), title="Loss",
                                             y_title="loss", elem_id="runs-loss", **common)
                self.health_plot = gr.LinePlot(overlay_frame({}, "embedding_std"),
                                               title=HEALTH_TITLES["embedding_std"],
                                               y_title="embedding_std", elem_id="runs-health",
                                               **common)
            with gr.Column(scale=2, min_width=320):
                gr.Markdown("#### Evaluate a finished job")
                finished = job_choices(jobs, finished_only=True)
                self.eval_job = gr.Dropdown(finished, value=finished[0][1] if finished else None,
                                            label="Job")
                self.protocols = gr.CheckboxGroup(
                    eval_choices(self.studio.protocols()), value=["knn", "linear"],
                    label="Protocols", info="On frozen features of the dataset's fixed "
                    "train/test split; missing pixels and random baselines come too.")
                self.eval_dataset = gr.Dropdown(dataset_choices(self.studio.datasets()),
                                                value="", label="Labelled dataset")
                self.eval_btn = gr.Button("Evaluate", variant="primary")
                self.note = gr.HTML("", elem_classes=["ps-note"])
        self.timer = gr.Timer(REFRESH_S, active=False)

    def wire(self, demo: gr.Blocks) -> None:
        private = dict(api_visibility="private")
        quiet = dict(private, show_progress="hidden")
        board_in = [self.filter, self.dataset_filter, self.board_key]
        board_out = [self.board, self.board_key, self.dataset_filter]
        self.refresh_btn.click(self.refresh_board, board_in, board_out, **private)
        self.filter.submit(self.refresh_board, board_in, board_out, **private)
        self.dataset_filter.input(self.refresh_board, board_in, board_out, **private)
        self.board.select(self.on_row, [self.jobs], [self.jobs, self.eval_job], **private)
        plots = [self.loss_plot, self.health_plot]
        curve_in = [self.compare, self.jobs, self.health_name, self.x_lim]
        curve_out = [self.compare, *plots, self.health_name]
        # The selection and the ticks both write the curves state: one at a time, in the
        # order they were triggered, so a slow tick never writes back an older selection.
        serial = dict(concurrency_id="runs-curves", concurrency_limit=1)
        restyle = (self.restyle, [self.compare, self.style_key], [*plots, self.style_key])
        self.jobs.change(self.on_jobs, curve_in, curve_out, trigger_mode="always_last",
                         **serial, **quiet).then(*restyle, **quiet)
        self.health_name.input(self.on_health_name, [self.compare, self.health_name,
                                                     self.x_lim], [self.health_plot], **quiet)
        for plot in plots:
            plot.select(self.zoom, [self.compare, self.health_name], [self.x_lim, *plots],
                        **quiet)
            plot.double_click(self.unzoom, [self.compare, self.health_name],
                              [self.x_lim, *plots], **quiet)
        self.timer.tick(self.tick, [*board_in, *curve_in, self.jobs_key],
                        [*board_out, *curve_out, self.jobs, self.eval_job, self.jobs_key],
                        show_progress="hidden", trigger_mode="always_last", **serial,
                        **private).then(*restyle, **quiet)
        self.eval_btn.click(self.evaluate, [self.eval_job, self.protocols, self.eval_dataset,
                                            *board_in], [self.note, *board_out],
                            concurrency_limit=1, **private)

    def wire_visibility(self, tab_row: gr.Tabs, label: str) -> None:
        """Tick only while this tab is shown (the Jobs tab does the same)."""

        def on_tab(text: str, dataset: str, key: str, evt: gr.SelectData) -> list:
            if evt.value == label:
                return [*self.refresh_board(text, dataset, key), gr.Timer(active=True)]
            return [gr.skip(), gr.skip(), gr.skip(), gr.Timer(active=False)]

        tab_row.select(on_tab, [self.filter, self.dataset_filter, self.board_key],
                       [self.board, self.board_key, self.dataset_filter, self.timer],
                       api_visibility="private")

    # ---- handlers ----------------------------------------------------------------------
    def refresh_board(self, text: str, dataset: str, key: str) -> list:
        """[board, key, dataset filter]: the board and the filter's choices are sent only
        when they changed since `key`."""
        rows = self.studio.leaderboard()
        frame = leaderboard_frame(rows, text, dataset)
        datasets = sorted({r["dataset"] for r in rows})
        new_key = board_key(frame, datasets)
        if new_key == key:
            return [gr.skip(), key, gr.skip()]
        old_datasets = json.loads(key)[1] if key else None
        choices = (gr.skip() if datasets == old_datasets
                   else gr.update(choices=[ALL_DATASETS, *datasets]))
        return [gr.Dataframe(frame, datatype=board_datatypes(frame)), new_key, choices]

    def on_row(self, selected: list[int] | None, evt: gr.SelectData) -> list:
        """A job's row adds that job to the curves and picks it for Evaluate."""
        name = str((evt.row_value or [""])[0])
        match = re.match(r"#(\d+) ", name)
        if not match:
            return [gr.skip(), gr.skip()]
        job_id = int(match.group(1))
        selected = [int(j) for j in selected or []]
        if job_id not in selected:
            selected.append(job_id)
        return [gr.update(value=selected), gr.update(value=job_id)]

    def plots(self, compare: dict[str, Any], health_name: str | None,
              x_lim: list[float] | None) -> tuple[pd.DataFrame, pd.DataFrame]:
        return (overlay_frame(compare, "loss", x_lim),
                overlay_frame(compare, health_name or "embedding_std", x_lim))

    def on_jobs(self, compare: dict[str, Any], job_ids: list[int] | None,
                health_name: str | None, x_lim: list[float] | None) -> list:
        compare, _ = sync_compare(self.studio, compare or {}, job_ids or [])
        loss, health = self.plots(compare, health_name, x_lim)
        return [compare, loss, health, gr.update(choices=health_choices(compare))]

    def restyle(self, compare: dict[str, Any], style_key: str) -> list:
        """After new values are in: the job colours, when they changed (see `job_colors`)."""
        colors = job_colors(compare or {})
        key = json.dumps(colors, sort_keys=True)
        if key == style_key:
            return [gr.skip(), gr.skip(), style_key]
        return [gr.update(color_map=colors), gr.update(color_map=colors), key]

    def on_health_name(self, compare: dict[str, Any], health_name: str,
                       x_lim: list[float] | None) -> Any:
        title = HEALTH_TITLES.get(health_name, health_name)
        return gr.LinePlot(overlay_frame(compare, health_name, x_lim), title=title,
                           y_title=health_name, color_map=job_colors(compare))

    def zoom(self, compare: dict[str, Any], health_name: str | None,
             evt: gr.SelectData) -> list:
        low, high = (float(v) for v in evt.index[:2])
        x_lim = [min(low, high), max(low, high)]
        loss, health = self.plots(compare, health_name, x_lim)
        colors = job_colors(compare)
        return [x_lim, gr.LinePlot(loss, x_lim=x_lim, color_map=colors),
                gr.LinePlot(health, x_lim=x_lim, color_map=colors)]

    def unzoom(self, compare: dict[str, Any], health_name: str | None) -> list:
        loss, health = self.plots(compare, health_name, None)
        colors = job_colors(compare)
        return [None, gr.LinePlot(loss, x_lim=None, color_map=colors),
                gr.LinePlot(health, x_lim=None, color_map=colors)]

    def tick(self, text: str, dataset: str, key: str, compare: dict[str, Any],
             job_ids: list[int] | None, health_name: str | None,
             x_lim: list[float] | None, jobs_key: str) -> list:
        """Every REFRESH_S while shown: the board when it changed, new points of the followed
        jobs that are still running (values only: the zoom stays), and the job lists."""
        board = self.refresh_board(text, dataset, key)
        compare = compare or {}
        names = health_choices(compare)
        changed = False
        try:
            compare, changed = sync_compare(self.studio, compare, job_ids or [])
        except Exception:
            log.exception("polling the compared jobs failed")
        curves: list[Any] = [gr.skip()] * 4
        if changed:
            loss, health = self.plots(compare, health_name, x_lim)
            new_names = health_choices(compare)
            curves = [compare, loss, health,
                      gr.skip() if new_names == names else gr.update(choices=new_names)]
        choices = job_choices(self.studio.jobs())
        new_jobs_key = json.dumps(choices)
        if new_jobs_key == jobs_key:
            return [*board, *curves, gr.skip(), gr.skip(), jobs_key]
        finished = [(label, i) for label, i in choices if label.endswith(
            tuple(f"({status})" for status in FINISHED))]
        return [*board, *curves, gr.update(choices=choices), gr.update(choices=finished),
                new_jobs_key]

    def evaluate(self, job_id: int | None, protocols: list[str], dataset: str | None,
                 text: str, dataset_filter: str, key: str,
                 progress: gr.Progress = gr.Progress()) -> list:
        def report(fraction: float, what: str) -> None:
            progress(fraction, desc=what)

        note = evaluate_jobs(self.studio, job_id, protocols, dataset, report)
        return [note, *self.refresh_board(text, dataset_filter, key)]
