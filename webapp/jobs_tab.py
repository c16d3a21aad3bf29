"""Jobs tab: every job in a table; a selected job's curves, configuration, error and actions.

The table is rebuilt from `studio.jobs()` on Refresh and every few seconds (sent only when it
changed). Selecting a row shows that job; while it is active its curves grow through the same
incremental `poll` the Train tab uses. Handlers answer `{component: value}` (figures.Updates).
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr
import pandas as pd

from engine.contract import ACTIVE_STATUSES, JobStatus, JobSummary, Studio
from engine.errors import StudioError
from webapp.access import may_change
from webapp.errors import error_note
from webapp.figures import (
    CurvePanel,
    Curves,
    Updates,
    empty_curves,
    format_duration,
    format_number,
    format_time,
    message,
    poll,
)
from webapp.jobs_export import ExportPanel
from webapp.train_tab import button_states, waiting_for

log = logging.getLogger(__name__)
COLUMNS = [
    "id",
    "method",
    "dataset",
    "backbone",
    "status",
    "steps",
    "last loss",
    "started",
    "duration",
]
REFRESH_S = 3.0
IDLE_TEXT = "Select a job in the table to see its curves and configuration."


def jobs_frame(jobs: list[JobSummary]) -> pd.DataFrame:
    """The table: one row per job, newest first."""
    rows = [
        [
            j["id"],
            j["method"],
            j["dataset"],
            j["backbone"],
            str(j["status"]),
            f"{j['step']}/{j['total_steps']}",
            format_number(j.get("last_loss")),
            format_time(j.get("started_at")),
            format_duration(j.get("duration_s")) if j.get("started_at") else "",
        ]
        for j in sorted(jobs, key=lambda j: j["id"], reverse=True)
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def tracker_hint(job: Any) -> str:
    """Where the job's tracker (its `report_to` setting) shows its curves, as Markdown."""
    report_to = (job.get("config") or {}).get("report_to", "none")
    if report_to == "tensorboard":
        folder = f"{job['run_dir']}/tensorboard"
        return f"\n\nTensorBoard event files: open them with `tensorboard --logdir {folder}`"
    if report_to in ("trackio", "wandb", "mlflow"):
        return f"\n\nAlso logged to {report_to}: project pretext-studio, run job-{job['id']}"
    return ""


def selected_job_id(row: list[Any] | None) -> int | None:
    """The job id from a selected table row (its first cell)."""
    if not row:
        return None
    try:
        return int(row[0])
    except (TypeError, ValueError):
        return None


class JobsTab:
    def __init__(self, studio: Studio) -> None:
        self.studio = studio

    def build(self) -> None:
        with gr.Row():
            self.refresh_btn = gr.Button("Refresh", size="sm", scale=0, min_width=100)
            gr.Markdown(
                "Select a row to see that job's curves, configuration and actions.",
                elem_classes=["ps-hint"],
            )
            self.note = gr.HTML("", elem_classes=["ps-note"])
        self.table = gr.Dataframe(
            jobs_frame(self.studio.jobs()),
            headers=COLUMNS,
            interactive=False,
            max_height=360,
            label="Jobs",
            show_label=False,
            elem_classes=["ps-jobs"],
        )
        self.table_key = gr.State("")
        self.selected = gr.State(None)
        with gr.Column(visible=False) as self.detail:
            with gr.Row():
                self.title = gr.Markdown("")
                self.stop_btn = gr.Button(
                    "Stop", variant="stop", size="sm", scale=0, min_width=90, interactive=False
                )
                self.resume_btn = gr.Button(
                    "Resume", size="sm", scale=0, min_width=90, interactive=False
                )
                self.open_btn = gr.Button("Follow in Train tab", size="sm", scale=0, min_width=170)
            self.panel = CurvePanel(IDLE_TEXT, "jobs")
            with gr.Row():
                self.config = gr.JSON(label="Resolved configuration", open=True)
                self.spec = gr.JSON(label="Spec (as asked)", open=True)
            self.export_panel = ExportPanel(self.studio)  # export as zip, push to the Hub
            self.export_panel.build()
        # Ticks only while this tab is shown (see `shown`): an idle page polls nothing.
        self.timer = gr.Timer(REFRESH_S, active=False)
        self.detail_outputs = [
            self.detail,
            self.title,
            self.config,
            self.spec,
            *self.panel.outputs,
            self.stop_btn,
            self.resume_btn,
        ]
        self.tick_outputs = [
            self.table,
            self.table_key,
            *self.panel.outputs,
            self.stop_btn,
            self.resume_btn,
        ]

    def wire(self, demo: gr.Blocks) -> None:
        private = dict(api_visibility="private")
        self.refresh_btn.click(
            self.refresh, [self.table_key], [self.table, self.table_key], **private
        )
        self.table.select(self.on_select, None, [self.selected, *self.detail_outputs], **private)
        self.timer.tick(
            self.tick,
            [self.table_key, self.selected, *self.panel.inputs],
            self.tick_outputs,
            show_progress="hidden",
            concurrency_limit=None,
            **private,
        )
        self.stop_btn.click(self.stop, [self.selected], [self.note], **private)
        self.resume_btn.click(
            self.resume, [self.selected], [self.note, *self.detail_outputs], **private
        )
        self.panel.wire()
        self.export_panel.wire(self.selected)

    def wire_visibility(self, tab_row: gr.Tabs, label: str) -> None:
        """Tick only while this tab is shown. (gr.Tabs' select, not each gr.Tab's: a Tab
        dispatches select for the initial tab on page load, which would open Gradio's
        heartbeat stream on every page view.)"""

        def on_tab(key: str, evt: gr.SelectData) -> Updates:
            if evt.value == label:
                return self.shown(key)
            return {self.timer: self.hidden()}

        tab_row.select(
            on_tab,
            [self.table_key],
            [self.table, self.table_key, self.timer],
            api_visibility="private",
        )

    # ---- handlers ----------------------------------------------------------------------
    def shown(self, key: str) -> Updates:
        """The tab came into view: refresh the table now and every REFRESH_S from here on."""
        return {**self.refresh(key), self.timer: gr.Timer(active=True)}

    def hidden(self) -> Any:
        return gr.Timer(active=False)

    def refresh(self, key: str) -> Updates:
        """The table's key, and the table when it changed since `key`."""
        frame = jobs_frame(self.studio.jobs())
        new_key = frame.to_json()
        if new_key == key:
            return {self.table_key: key}
        return {self.table: frame, self.table_key: new_key}

    def on_select(self, evt: gr.SelectData) -> Updates:
        job_id = selected_job_id(evt.row_value)
        detail = self.show(job_id)
        found = self.title in detail  # not a deleted job
        return {self.selected: job_id if found else None, **detail}

    def show(self, job_id: int | None) -> Updates:
        """Updates of `detail_outputs` showing job `job_id` (the panel hidden when it is gone)."""
        hidden = {self.detail: gr.update(visible=False)}
        if job_id is None:
            return hidden
        try:
            curves, job, _ = poll(self.studio, empty_curves(job_id))
        except StudioError:  # deleted meanwhile
            return hidden
        curves["status"] = job["status"]
        wait = waiting_for(self.studio) if job["status"] == JobStatus.QUEUED else None
        title = (
            f"### Job #{job['id']}: {job['method']} on {job['dataset']} "
            f"({job['backbone']}, {job['preset']} preset)"
        ) + tracker_hint(job)
        stop, resume = button_states(job["status"], may_change(self.studio))
        return {
            self.detail: gr.update(visible=True),
            self.title: title,
            self.config: job.get("config"),
            self.spec: job.get("spec"),
            **self.panel.values(curves, job, True, waiting_for=wait, reset=True),
            self.stop_btn: stop,
            self.resume_btn: resume,
        }

    def tick(self, key: str, job_id: int | None, curves: Curves, *view: Any) -> Updates:
        """The table, and the selected job's refresh; `view`: the chart controls' values."""
        out = self.refresh(key)
        if job_id is None or curves.get("job_id") != job_id:
            return out
        if curves.get("status") not in ACTIVE_STATUSES and curves.get("status") is not None:
            return out  # a finished job's curves do not move
        try:
            curves, job, changed = poll(self.studio, curves)
        except Exception:
            log.exception("polling job %s failed", job_id)
            return out
        status_changed = job["status"] != curves.get("status")
        curves["status"] = job["status"]
        wait = waiting_for(self.studio) if job["status"] == JobStatus.QUEUED else None
        out.update(self.panel.values(curves, job, changed, *view, waiting_for=wait))
        if status_changed:
            stop, resume = button_states(job["status"], may_change(self.studio))
            out.update({self.stop_btn: stop, self.resume_btn: resume})
        return out

    def stop(self, job_id: int | None) -> str:
        if job_id is None:
            return message("Select a job first.", "warn")
        try:
            outcome = self.studio.cancel(job_id)
        except Exception as error:  # noqa: BLE001 - the user's message, or a bug logged
            return error_note(error, "stop")
        return message(f"Job #{job_id}: {outcome}.", "info")

    def resume(self, job_id: int | None) -> Updates:
        if job_id is None:
            return {self.note: message("Select a job first.", "warn")}
        try:
            self.studio.resume(job_id)
        except Exception as error:  # noqa: BLE001 - the user's message, or a bug logged
            return {self.note: error_note(error, "resume")}
        return {self.note: message(f"Job #{job_id} queued again.", "ok"), **self.show(job_id)}
