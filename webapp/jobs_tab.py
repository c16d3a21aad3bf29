"""Jobs tab: every job in a table; a selected job's curves, configuration, error and actions.

The table is rebuilt from `studio.jobs()` on Refresh and every few seconds (sent only when it
changed). Selecting a row shows that job; while it is active its curves grow through the same
incremental `poll` the Train tab uses.
"""
from __future__ import annotations

import logging
from typing import Any

import gradio as gr
import pandas as pd

from engine.contract import ACTIVE_STATUSES, JobStatus, JobSummary, Studio
from engine.errors import StudioError
from webapp.errors import error_note
from webapp.figures import (CurvePanel, Curves, empty_curves, format_duration, format_number,
                            format_time, message, poll)
from webapp.access import may_change
from webapp.train_tab import button_states, waiting_for

log = logging.getLogger(__name__)
COLUMNS = ["id", "method", "dataset", "backbone", "status", "steps", "last loss", "started",
           "duration"]
REFRESH_S = 3.0
IDLE_TEXT = "Select a job in the table to see its curves and configuration."


def jobs_frame(jobs: list[JobSummary]) -> pd.DataFrame:
    """The table: one row per job, newest first."""
    rows = [[j["id"], j["method"], j["dataset"], j["backbone"], str(j["status"]),
             f"{j['step']}/{j['total_steps']}", format_number(j.get("last_loss")),
             format_time(j.get("started_at")),
             format_duration(j.get("duration_s")) if j.get("started_at") else ""]
            for j in sorted(jobs, key=lambda j: j["id"], reverse=True)]
    return pd.DataFrame(rows, columns=COLUMNS)


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
            gr.Markdown("Select a row to see that job's curves, configuration and actions.",
                        elem_classes=["ps-hint"])
            self.note = gr.HTML("", elem_classes=["ps-note"])
        self.table = gr.Dataframe(jobs_frame(self.studio.jobs()), headers=COLUMNS,
                                  interactive=False, max_height=360, label="Jobs",
                                  show_label=False, elem_classes=["ps-jobs"])
        self.table_key = gr.State("")
        self.selected = gr.State(None)
        with gr.Column(visible=False) as self.detail:
            with gr.Row():
                self.title = gr.Markdown("")
                self.stop_btn = gr.Button("Stop", variant="stop", size="sm", scale=0,
                                          min_width=90, interactive=False)
                self.resume_btn = gr.Button("Resume", size="sm", scale=0, min_width=90,
                                            interactive=False)
                self.open_btn = gr.Button("Follow in Train tab", size="sm", scale=0,
                                          min_width=170)
            self.panel = CurvePanel(IDLE_TEXT, "jobs", height=220)
            with gr.Row():
                self.config = gr.JSON(label="Resolved configuration", open=True)
                self.spec = gr.JSON(label="Spec (as asked)", open=True)
        # Ticks only while this tab is shown (see `shown`): an idle page polls nothing.
        self.timer = gr.Timer(REFRESH_S, active=False)
        self.detail_outputs = [self.detail, self.title, self.config, self.spec,
                               *self.panel.outputs, self.stop_btn, self.resume_btn]

    def wire(self, demo: gr.Blocks) -> None:
        private = dict(api_visibility="private")
        self.refresh_btn.click(self.refresh, [self.table_key], [self.table, self.table_key],
                               **private)
        self.table.select(self.on_select, None, [self.selected, *self.detail_outputs],
                          **private)
        self.timer.tick(self.tick, [self.table_key, self.selected, self.panel.curves,
                                    self.panel.x_lim, self.panel.extra_name],
                        [self.table, self.table_key, *self.panel.outputs, self.stop_btn,
                         self.resume_btn], show_progress="hidden", concurrency_limit=None,
                        **private)
        self.stop_btn.click(self.stop, [self.selected], [self.note], **private)
        self.resume_btn.click(self.resume, [self.selected], [self.note, *self.detail_outputs],
                              **private)
        self.panel.wire()

    def wire_visibility(self, tab_row: gr.Tabs, label: str) -> None:
        """Tick only while this tab is shown. (gr.Tabs' select, not each gr.Tab's: a Tab
        dispatches select for the initial tab on page load, which would open Gradio's
        heartbeat stream on every page view.)"""

        def on_tab(key: str, evt: gr.SelectData) -> list:
            if evt.value == label:
                return self.shown(key)
            return [gr.skip(), gr.skip(), self.hidden()]

        tab_row.select(on_tab, [self.table_key], [self.table, self.table_key, self.timer],
                       api_visibility="private")

    # ---- handlers ----------------------------------------------------------------------
    def shown(self, key: str) -> list:
        """The tab came into view: refresh the table now and every REFRESH_S from here on."""
        return [*self.refresh(key), gr.Timer(active=True)]

    def hidden(self) -> Any:
        return gr.Timer(active=False)

    def refresh(self, key: str) -> tuple[Any, str]:
        """The table, or a skip when nothing in it changed since `key`."""
        frame = jobs_frame(self.studio.jobs())
        new_key = frame.to_json()
        return (gr.skip() if new_key == key else frame), new_key

    def on_select(self, evt: gr.SelectData) -> list:
        return self.show(selected_job_id(evt.row_value))

    def show(self, job_id: int | None) -> list:
        """Updates for [selected, *detail_outputs] showing job `job_id`."""
        if job_id is None:
            return [None, gr.update(visible=False), *[gr.skip()] * (len(self.detail_outputs) - 1)]
        try:
            curves, job, _ = poll(self.studio, empty_curves(job_id))
        except StudioError:  # deleted meanwhile
            return [None, gr.update(visible=False), *[gr.skip()] * (len(self.detail_outputs) - 1)]
        curves["status"] = job["status"]
        wait = waiting_for(self.studio) if job["status"] == JobStatus.QUEUED else None
        title = (f"### Job #{job['id']}: {job['method']} on {job['dataset']} "
                 f"({job['backbone']}, {job['preset']} preset)")
        return [job_id, gr.update(visible=True), title, job.get("config"), job.get("spec"),
                *self.panel.values(curves, job, True, None, None, waiting_for=wait, reset=True),
                *button_states(job["status"], may_change(self.studio))]

    def tick(self, key: str, job_id: int | None, curves: Curves,
             x_lim: list[float] | None, extra_name: str | None) -> list:
        table, key = self.refresh(key)
        skip_panel = [gr.skip()] * (len(self.panel.outputs) + 2)
        if job_id is None or curves.get("job_id") != job_id:
            return [table, key, *skip_panel]
        if curves.get("status") not in ACTIVE_STATUSES and curves.get("status") is not None:
            return [table, key, *skip_panel]  # a finished job's curves do not move
        try:
            curves, job, changed = poll(self.studio, curves)
        except Exception:
            log.exception("polling job %s failed", job_id)
            return [table, key, *skip_panel]
        status_changed = job["status"] != curves.get("status")
        curves["status"] = job["status"]
        wait = waiting_for(self.studio) if job["status"] == JobStatus.QUEUED else None
        buttons = (button_states(job["status"], may_change(self.studio)) if status_changed
                   else (gr.skip(), gr.skip()))
        return [table, key, *self.panel.values(curves, job, changed, x_lim, extra_name,
                                               waiting_for=wait), *buttons]

    def stop(self, job_id: int | None) -> str:
        if job_id is None:
            return message("Select a job first.", "warn")
        try:
            outcome = self.studio.cancel(job_id)
        except Exception as error:  # noqa: BLE001 - the user's message, or a bug logged
            return error_note(error, "stop")
        return message(f"Job #{job_id}: {outcome}.", "info")

    def resume(self, job_id: int | None) -> list:
        if job_id is None:
            return [message("Select a job first.", "warn"),
                    *[gr.skip()] * len(self.detail_outputs)]
        try:
            self.studio.resume(job_id)
        except Exception as error:  # noqa: BLE001 - the user's message, or a bug logged
            return [error_note(error, "resume"), *[gr.skip()] * len(self.detail_outputs)]
        return [message(f"Job #{job_id} queued again.", "ok"), *self.show(job_id)[1:]]
