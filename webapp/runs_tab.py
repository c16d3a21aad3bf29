"""Runs tab: compare jobs. A leaderboard of every evaluated job and baseline, several jobs'
loss and health curves overlaid (one colour per job), and on-demand evaluation.

Everything shown is read from the store through `studio.leaderboard()` and `studio.metrics()`;
only the Evaluate button computes (`studio.evaluate`, with a progress bar). The zoom works as in
`figures.CurvePanel`: brushing a step range sets `x_lim` on both plots, a double click clears it,
and refreshes send only new values, so the zoom survives every tick. Handlers answer
`{component: value}` (figures.Updates); what they leave out stays as it is.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import gradio as gr
import pandas as pd

from engine.contract import Studio
from webapp.figures import Updates
from webapp.runs_board import (
    ALL_DATASETS,
    FINISHED,
    HEALTH_TITLES,
    board_datatypes,
    board_key,
    dataset_choices,
    evaluate_jobs,
    health_choices,
    job_choices,
    job_colors,
    leaderboard_frame,
    newest_with_curves,
    overlay_frame,
    sync_compare,
)
from webapp.train_tab import eval_choices

log = logging.getLogger(__name__)
REFRESH_S = 3.0


# ---- the tab -----------------------------------------------------------------------------
class RunsTab:
    def __init__(self, studio: Studio) -> None:
        self.studio = studio

    def build(self) -> None:
        jobs = self.studio.jobs()
        rows = self.studio.leaderboard()
        datasets = sorted({r["dataset"] for r in rows})
        gr.Markdown(
            "Every evaluated job next to the **pixels** and **random-network** "
            "baselines: did pretraining help? k-NN, linear and n-shot are test top-1 on "
            "frozen features; FT n% fine-tunes on n% of the labels, scratch trains the "
            "same network from random init on them. Click a header to sort; select a "
            "job's row to add it to the curves below (the newest job's show first).",
            elem_classes=["ps-hint"],
        )
        with gr.Row():
            self.filter = gr.Textbox(
                label="Filter",
                placeholder="words in method, backbone, dataset, e.g. simclr resnet18",
                scale=3,
            )
            self.dataset_filter = gr.Dropdown(
                [ALL_DATASETS, *datasets],
                value=ALL_DATASETS,
                label="Evaluated on",
                scale=1,
                min_width=160,
            )
            self.refresh_btn = gr.Button("Refresh", size="sm", scale=0, min_width=100)
        frame = leaderboard_frame(rows)
        self.board = gr.Dataframe(
            frame,
            datatype=board_datatypes(frame),
            interactive=False,
            max_height=360,
            label="Leaderboard",
            show_label=False,
            elem_id="runs-board",
        )
        self.board_key = gr.State(board_key(frame, datasets))
        self.jobs_key = gr.State(json.dumps(job_choices(jobs)))
        self.x_lim = gr.State(None)
        self.compare = gr.State({})
        self.style_key = gr.State("{}")  # the job colours the plots were last built with
        with gr.Row():
            with gr.Column(scale=3, min_width=480):
                gr.Markdown("#### Curves of several jobs")
                with gr.Row():
                    self.jobs = gr.Dropdown(
                        job_choices(jobs),
                        value=[],
                        multiselect=True,
                        label="Jobs",
                        scale=3,
                        info="Each job gets its own colour. Brush a step "
                        "range to zoom both plots; double-click to "
                        "zoom out.",
                    )
                    self.health_name = gr.Dropdown(
                        health_choices({}),
                        value="embedding_std",
                        label="Health metric",
                        scale=2,
                        info="Logged every health_every steps on a fixed batch of images (the online k-NN every knn_every steps).",
                    )
                common = dict(
                    x="step", y="value", color="job", height=260, x_title="step", tooltip="all"
                )
                self.loss_plot = gr.LinePlot(
                    overlay_frame({}, "loss"),
                    title="Loss",
                    y_title="loss",
                    elem_id="runs-loss",
                    **common,
                )
                self.health_plot = gr.LinePlot(
                    overlay_frame({}, "embedding_std"),
                    title=HEALTH_TITLES["embedding_std"],
                    y_title="embedding_std",
                    elem_id="runs-health",
                    **common,
                )
            with gr.Column(scale=2, min_width=320):
                gr.Markdown("#### Evaluate a finished job, or a Hub model")
                finished = job_choices(jobs, finished_only=True)
                self.eval_job = gr.Dropdown(
                    finished, value=finished[0][1] if finished else None, label="Job"
                )
                self.eval_model = gr.Textbox(
                    "",
                    label="…or a Hub model",
                    placeholder="facebook/dinov2-small, or a model folder",
                    info="A transformers image model (DINOv2, ViT, CLIP) to score next to "
                    "your runs; leave empty to evaluate the job.",
                    max_length=300,
                )
                self.protocols = gr.CheckboxGroup(
                    eval_choices(self.studio.protocols()),
                    value=["knn", "linear"],
                    label="Protocols",
                    info="On frozen features of the dataset's fixed "
                    "train/test split; missing pixels and random baselines come too.",
                )
                self.eval_dataset = gr.Dropdown(
                    dataset_choices(self.studio.datasets()), value="", label="Labelled dataset"
                )
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
        self.jobs.change(
            self.on_jobs, curve_in, curve_out, trigger_mode="always_last", **serial, **quiet
        ).then(*restyle, **quiet)
        self.health_name.input(
            self.on_health_name,
            [self.compare, self.health_name, self.x_lim],
            [self.health_plot],
            **quiet,
        )
        for plot in plots:
            plot.select(self.zoom, [self.compare, self.health_name], [self.x_lim, *plots], **quiet)
            plot.double_click(
                self.unzoom, [self.compare, self.health_name], [self.x_lim, *plots], **quiet
            )
        self.timer.tick(
            self.tick,
            [*board_in, *curve_in, self.jobs_key, self.eval_job],
            [*board_out, *curve_out, self.jobs, self.eval_job, self.jobs_key],
            show_progress="hidden",
            trigger_mode="always_last",
            **serial,
            **private,
        ).then(*restyle, **quiet)
        self.eval_btn.click(
            self.evaluate,
            [self.eval_job, self.protocols, self.eval_dataset, *board_in, self.eval_model],
            [self.note, *board_out],
            concurrency_limit=1,
            **private,
        )

    def wire_visibility(self, tab_row: gr.Tabs, label: str) -> None:
        """Tick only while this tab is shown (the Jobs tab does the same)."""

        def on_tab(
            text: str, dataset: str, key: str, job_ids: list[int] | None, evt: gr.SelectData
        ) -> Updates:
            if evt.value == label:
                return {
                    **self.refresh_board(text, dataset, key),
                    **self.default_curves(job_ids),
                    self.timer: gr.Timer(active=True),
                }
            return {self.timer: gr.Timer(active=False)}

        tab_row.select(
            on_tab,
            [self.filter, self.dataset_filter, self.board_key, self.jobs],
            [self.board, self.board_key, self.dataset_filter, self.jobs, self.timer],
            api_visibility="private",
        )

    def default_curves(self, job_ids: list[int] | None) -> Updates:
        """Opening the tab with no job picked for the curves picks the newest that has any
        (the selection's change draws them), so the plots are not empty boxes."""
        if job_ids:
            return {}
        jobs = self.studio.jobs()
        newest = newest_with_curves(jobs)
        if newest is None:
            return {}
        # With its choices: the page may have been built before the job existed.
        return {self.jobs: gr.update(choices=job_choices(jobs), value=[newest])}

    # ---- handlers ----------------------------------------------------------------------
    def refresh_board(self, text: str, dataset: str, key: str) -> Updates:
        """The board's key; the board and the filter's choices only when they changed since
        `key`."""
        rows = self.studio.leaderboard()
        frame = leaderboard_frame(rows, text, dataset)
        datasets = sorted({r["dataset"] for r in rows})
        new_key = board_key(frame, datasets)
        if new_key == key:
            return {self.board_key: key}
        out: Updates = {
            self.board: gr.Dataframe(frame, datatype=board_datatypes(frame)),
            self.board_key: new_key,
        }
        old_datasets = json.loads(key)[1] if key else None
        if datasets != old_datasets:
            out[self.dataset_filter] = gr.update(choices=[ALL_DATASETS, *datasets])
        return out

    def on_row(self, selected: list[int] | None, evt: gr.SelectData) -> Any:
        """A job's row adds that job to the curves and picks it for Evaluate."""
        name = str((evt.row_value or [""])[0])
        match = re.match(r"#(\d+) ", name)
        if not match:
            return gr.skip()
        job_id = int(match.group(1))
        selected = [int(j) for j in selected or []]
        if job_id not in selected:
            selected.append(job_id)
        return {self.jobs: gr.update(value=selected), self.eval_job: gr.update(value=job_id)}

    def plots(
        self, compare: dict[str, Any], health_name: str | None, x_lim: list[float] | None
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        return (
            overlay_frame(compare, "loss", x_lim),
            overlay_frame(compare, health_name or "embedding_std", x_lim),
        )

    def on_jobs(
        self,
        compare: dict[str, Any],
        job_ids: list[int] | None,
        health_name: str | None,
        x_lim: list[float] | None,
    ) -> Updates:
        compare, _ = sync_compare(self.studio, compare or {}, job_ids or [])
        loss, health = self.plots(compare, health_name, x_lim)
        return {
            self.compare: compare,
            self.loss_plot: loss,
            self.health_plot: health,
            self.health_name: gr.update(choices=health_choices(compare)),
        }

    def restyle(self, compare: dict[str, Any], style_key: str) -> Updates:
        """After new values are in: the job colours, when they changed (see `job_colors`)."""
        colors = job_colors(compare or {})
        key = json.dumps(colors, sort_keys=True)
        if key == style_key:
            return {self.style_key: style_key}
        return {
            self.loss_plot: gr.update(color_map=colors),
            self.health_plot: gr.update(color_map=colors),
            self.style_key: key,
        }

    def on_health_name(
        self, compare: dict[str, Any], health_name: str, x_lim: list[float] | None
    ) -> Any:
        title = HEALTH_TITLES.get(health_name, health_name)
        return gr.LinePlot(
            overlay_frame(compare, health_name, x_lim),
            title=title,
            y_title=health_name,
            color_map=job_colors(compare),
        )

    def zoom(self, compare: dict[str, Any], health_name: str | None, evt: gr.SelectData) -> Updates:
        low, high = (float(v) for v in evt.index[:2])
        return self.zoomed(compare, health_name, [min(low, high), max(low, high)])

    def unzoom(self, compare: dict[str, Any], health_name: str | None) -> Updates:
        return self.zoomed(compare, health_name, None)

    def zoomed(
        self, compare: dict[str, Any], health_name: str | None, x_lim: list[float] | None
    ) -> Updates:
        loss, health = self.plots(compare, health_name, x_lim)
        colors = job_colors(compare)
        return {
            self.x_lim: x_lim,
            self.loss_plot: gr.LinePlot(loss, x_lim=x_lim, color_map=colors),
            self.health_plot: gr.LinePlot(health, x_lim=x_lim, color_map=colors),
        }

    def tick(
        self,
        text: str,
        dataset: str,
        key: str,
        compare: dict[str, Any],
        job_ids: list[int] | None,
        health_name: str | None,
        x_lim: list[float] | None,
        jobs_key: str,
        eval_job: Any = None,
    ) -> Updates:
        """Every REFRESH_S while shown: the board when it changed, new points of the followed
        jobs that are still running (values only: the zoom stays), and the job lists (the job
        to evaluate stays picked while it is listed; else the newest finished one is)."""
        out = self.refresh_board(text, dataset, key)
        compare = compare or {}
        names = health_choices(compare)
        changed = False
        try:
            compare, changed = sync_compare(self.studio, compare, job_ids or [])
        except Exception:
            log.exception("polling the compared jobs failed")
        if changed:
            loss, health = self.plots(compare, health_name, x_lim)
            out.update({self.compare: compare, self.loss_plot: loss, self.health_plot: health})
            new_names = health_choices(compare)
            if new_names != names:
                out[self.health_name] = gr.update(choices=new_names)
        choices = job_choices(self.studio.jobs())
        new_jobs_key = json.dumps(choices)
        if new_jobs_key == jobs_key:
            return out
        finished = [
            (label, i)
            for label, i in choices
            if label.endswith(tuple(f"({status})" for status in FINISHED))
        ]
        ids = [i for _, i in finished]
        keep = eval_job if eval_job in ids else (ids[0] if ids else None)
        return {
            **out,
            self.jobs: gr.update(choices=choices),
            self.eval_job: gr.update(choices=finished, value=keep),
            self.jobs_key: new_jobs_key,
        }

    def evaluate(
        self,
        job_id: int | None,
        protocols: list[str],
        dataset: str | None,
        text: str,
        dataset_filter: str,
        key: str,
        model: str = "",
        progress: gr.Progress = gr.Progress(),
    ) -> Updates:
        def report(fraction: float, what: str) -> None:
            progress(fraction, desc=what)

        note = evaluate_jobs(self.studio, job_id, protocols, dataset, report, model)
        return {self.note: note, **self.refresh_board(text, dataset_filter, key)}
