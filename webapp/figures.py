"""Curves and the words around them: metric points, plot frames, status lines, dates.

Plain functions over plain types (no gradio objects here but in `CurvePanel`), so each is
testable on its own. A job's curves are held as a `Curves` dict in a `gr.State`:

    {"job_id": 3, "since": 120, "points": {"loss": [[1, 6.2], [2, 6.1], ...], "lr": [...]},
     "samples": [[monotonic_time, step], ...]}

`poll` adds only the points after `since` (what `studio.metrics(job_id, since)` returns); it
never fetches a job's history twice.

Handlers with several outputs return `Updates`, a dict keyed by component: Gradio leaves an
output that is not in it as it is, so nobody counts positions (see `respond`).
"""

from __future__ import annotations

import html
import time
from datetime import UTC, datetime
from typing import Any, NotRequired, TypedDict

import gradio as gr
import pandas as pd
from gradio.components import Component

from engine.contract import JobDetail, JobStatus, MetricPoint, Studio

Updates = dict[Component, Any]  # a handler's answer: {output component: its new value}

# Logged every step but shown in the status line, not as a curve of its own by default.
MAIN_CURVES = ("loss", "lr")
MAX_PLOT_POINTS = 2000  # per curve; longer histories are thinned for the browser
RATE_WINDOW_S = 30.0  # the ETA uses the step rate over this many recent seconds


def respond(updates: Updates) -> Any:
    """`updates` as a handler's return value. An empty dict would reach Gradio as a value (it
    expands only non-empty ones), so "nothing changed" is `gr.skip()`."""
    return updates or gr.skip()


# ---- curves state ------------------------------------------------------------------------
class Curves(TypedDict):
    """A followed job's points, kept in a gr.State between polls."""

    job_id: int | None
    since: int  # the newest step fetched (-1: none yet)
    points: dict[str, list[list[float]]]  # metric name -> [[step, value], ...]
    samples: list[list[float]]  # [[monotonic time, step], ...]: the ETA
    status: NotRequired[str | None]  # the job's status at the last poll
    status_html: NotRequired[str]  # the status line last sent
    extra_names: NotRequired[list[str]]  # the metric choices last sent


def empty_curves(job_id: int | None = None) -> Curves:
    return {"job_id": job_id, "since": -1, "points": {}, "samples": []}


def add_points(curves: Curves, points: list[MetricPoint]) -> Curves:
    """Append `studio.metrics` rows ({"step", "name", "value"}) to the curves, in place."""
    by_name: dict[str, list[list[float]]] = curves["points"]
    for point in points:
        by_name.setdefault(point["name"], []).append([point["step"], point["value"]])
        curves["since"] = max(curves["since"], int(point["step"]))
    return curves


def rewind(curves: Curves, step: int) -> Curves:
    """Drop the points after `step` (a resumed job re-logs the steps after its checkpoint)."""
    for name, rows in curves["points"].items():
        curves["points"][name] = [row for row in rows if row[0] <= step]
    curves["since"] = min(curves["since"], step)
    curves["samples"] = []
    return curves


def poll(studio: Studio, curves: Curves) -> tuple[Curves, JobDetail, bool]:
    """One refresh of a followed job: returns (curves, job, whether new points arrived).

    The job row is read before the metrics, so a job whose step went backwards (resumed from an
    earlier checkpoint) is noticed and its newer points are dropped before fetching again.
    """
    job_id = curves["job_id"]
    if job_id is None:
        raise ValueError("poll needs the curves of a followed job")
    job = studio.job(job_id)
    changed = False
    if job["step"] < curves["since"]:
        rewind(curves, job["step"])
        changed = True
    new = studio.metrics(job_id, curves["since"])
    if new:
        add_points(curves, new)
        changed = True
    if job["status"] == JobStatus.RUNNING:
        note_progress(curves, job["step"])
    return curves, job, changed


def note_progress(curves: Curves, step: int, now: float | None = None) -> None:
    now = time.monotonic() if now is None else now
    samples = [s for s in curves["samples"] if now - s[0] <= RATE_WINDOW_S]
    if not samples or samples[-1][1] != step:
        samples.append([now, step])
    curves["samples"] = samples


def steps_per_second(curves: Curves, job: JobDetail) -> float | None:
    """The recent step rate: observed progress over the last RATE_WINDOW_S, else the worker's
    images-per-second divided by the batch size."""
    samples = curves.get("samples") or []
    if len(samples) >= 2:
        (t0, s0), (t1, s1) = samples[0], samples[-1]
        if t1 > t0 and s1 > s0:
            return (s1 - s0) / (t1 - t0)
    batch = (job.get("config") or {}).get("batch_size")
    if job.get("images_per_second") and batch:
        return job["images_per_second"] / batch
    return None


# ---- plot frames -------------------------------------------------------------------------
def curve_frame(
    curves: Curves, name: str, x_lim: list[float] | None = None, max_points: int = MAX_PLOT_POINTS
) -> pd.DataFrame:
    """A two-column frame (step, `name`) for a LinePlot, thinned to `max_points`.

    With a zoom window only the points inside it (plus one on each side, so the line reaches
    the edges) are thinned, so zooming in shows full resolution.
    """
    rows = curves["points"].get(name, [])
    if x_lim is not None and rows:
        low, high = x_lim
        inside = [
            i
            for i, row in enumerate(rows)
            if (low is None or row[0] >= low) and (high is None or row[0] <= high)
        ]
        if inside:
            rows = rows[max(inside[0] - 1, 0) : inside[-1] + 2]
    if len(rows) > max_points:
        stride = -(-len(rows) // max_points)
        rows = rows[::stride] + ([rows[-1]] if (len(rows) - 1) % stride else [])
    return pd.DataFrame(rows, columns=["step", name]).astype({"step": "int64", name: "float64"})


def extra_metric_names(curves: Curves) -> list[str]:
    """Logged metrics other than loss and lr (contrastive_acc, images_per_second, ...)."""
    names = [n for n in curves["points"] if n not in MAIN_CURVES]
    return sorted(names, key=lambda n: (n == "images_per_second", n))


# ---- words -------------------------------------------------------------------------------
def parse_time(value: str | None) -> datetime | None:
    """An API timestamp ("2024-05-01T12:00:00Z", UTC) as an aware datetime."""
    if not value:
        return None
    when = datetime.fromisoformat(value.rstrip("Z"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def format_time(value: str | None) -> str:
    """UTC ISO time -> local "YYYY-MM-DD HH:MM:SS" ("" when missing)."""
    when = parse_time(value)
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S") if when else ""


def format_duration(seconds: float | None) -> str:
    """83 -> "1m 23s", 7500 -> "2h 05m", 4.2 -> "4s"."""
    if seconds is None:
        return ""
    total = round(max(seconds, 0))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def format_number(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}g}"


def message(text: str, kind: str = "info") -> str:
    """A status box (kind: info, ok, warn, error) as HTML; the text is escaped."""
    return f'<div class="ps-msg ps-{kind}">{html.escape(text)}</div>'


def status_line(job: JobDetail, curves: Curves, waiting_for: int | None = None) -> str:
    """ "#3 simclr on digits · running · step 120/200 · 85 img/s · ETA 1m 10s · elapsed 1m 40s"."""
    status = job["status"]
    parts = [f"#{job['id']} {job['method']} on {job['dataset']}", status]
    if status == JobStatus.QUEUED:
        parts.append(
            f"waiting for the running job (#{waiting_for})"
            if waiting_for
            else "waiting for the running job"
        )
    else:
        parts.append(f"step {job['step']}/{job['total_steps']}")
        if job.get("images_per_second"):
            parts.append(f"{job['images_per_second']:.0f} img/s")
        if status == JobStatus.RUNNING:
            rate = steps_per_second(curves, job)
            if rate:
                parts.append("ETA " + format_duration((job["total_steps"] - job["step"]) / rate))
            if job.get("cancel_requested"):
                parts.append("stopping after this step")
        parts.append("elapsed " + format_duration(job.get("duration_s")))
        if job.get("last_loss") is not None:
            parts.append(f"loss {format_number(job['last_loss'])}")
    kind = {
        JobStatus.FAILED: "error",
        JobStatus.INTERRUPTED: "warn",
        JobStatus.CANCELLED: "warn",
        JobStatus.COMPLETED: "ok",
    }.get(status, "info")
    text = " · ".join(parts)
    out = message(text, kind)
    if job.get("error"):
        out += message(job["error"], "error")
    return out


# ---- the curve panel (gradio) ------------------------------------------------------------
class CurvePanel:
    """A job's status line and its loss, learning-rate and one selectable metric plot.

    Zoom: brushing a range on any plot (LinePlot's `select` event, whose index is the
    [x_min, x_max] brushed) sets `x_lim` on all three; a double click clears it. The zoom lives
    in the plots' `x_lim` prop (mirrored in a State), and refreshes send only new `value`s, so
    they never touch `x_lim` and the user's zoom survives every tick.
    """

    def __init__(self, idle_text: str, prefix: str, height: int = 240) -> None:
        self.idle_text = idle_text
        self.curves = gr.State(empty_curves())
        self.x_lim = gr.State(None)
        self.status = gr.HTML(
            message(idle_text), elem_classes=["ps-status"], elem_id=f"{prefix}-status"
        )
        common = dict(x="step", height=height, x_title="step", tooltip="axis")
        with gr.Row(equal_height=True):
            self.loss = gr.LinePlot(
                y="loss", title="Loss", y_title="loss", elem_id=f"{prefix}-loss", **common
            )
            self.lr = gr.LinePlot(
                y="lr",
                title="Learning rate",
                y_title="lr",
                y_axis_format=".1e",
                elem_id=f"{prefix}-lr",
                **common,
            )
        with gr.Row(equal_height=True):
            self.extra = gr.LinePlot(
                y="value",
                title="Other metric",
                y_title="value",
                scale=3,
                elem_id=f"{prefix}-extra",
                **common,
            )
            self.extra_name = gr.Dropdown(
                label="Other metric",
                choices=[],
                value=None,
                info="Metrics the method logs besides loss and lr. "
                "Brush a step range on any plot to zoom all "
                "three; double-click to zoom out.",
                scale=1,
                min_width=180,
            )
        self.plots = [self.loss, self.lr, self.extra]
        self.outputs = [
            self.curves,
            self.x_lim,
            self.status,
            self.loss,
            self.lr,
            self.extra_name,
            self.extra,
        ]

    def wire(self) -> None:
        """Zoom and metric-choice events (private: not API endpoints)."""
        quiet = dict(api_visibility="private", show_progress="hidden")
        for plot in self.plots:
            plot.select(
                self.zoom, [self.curves, self.extra_name], [self.x_lim, *self.plots], **quiet
            )
            plot.double_click(
                self.unzoom, [self.curves, self.extra_name], [self.x_lim, *self.plots], **quiet
            )
        self.extra_name.input(
            self.show_extra, [self.curves, self.x_lim, self.extra_name], [self.extra], **quiet
        )

    # Handlers: plain functions of plain values.
    @staticmethod
    def frames(
        curves: Curves, x_lim: list[float] | None, extra_name: str | None
    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        extra = curve_frame(curves, extra_name or "", x_lim)
        extra.columns = ["step", "value"]
        return curve_frame(curves, "loss", x_lim), curve_frame(curves, "lr", x_lim), extra

    def zoom(self, curves: Curves, extra_name: str | None, evt: gr.SelectData) -> list:
        low, high = (float(v) for v in evt.index[:2])
        x_lim = [min(low, high), max(low, high)]
        loss, lr, extra = self.frames(curves, x_lim, extra_name)
        return [
            x_lim,
            gr.LinePlot(loss, x_lim=x_lim),
            gr.LinePlot(lr, x_lim=x_lim),
            gr.LinePlot(extra, x_lim=x_lim),
        ]

    def unzoom(self, curves: Curves, extra_name: str | None) -> list:
        loss, lr, extra = self.frames(curves, None, extra_name)
        return [
            None,
            gr.LinePlot(loss, x_lim=None),
            gr.LinePlot(lr, x_lim=None),
            gr.LinePlot(extra, x_lim=None),
        ]

    def show_extra(
        self, curves: Curves, x_lim: list[float] | None, extra_name: str | None
    ) -> gr.LinePlot:
        return gr.LinePlot(
            self.frames(curves, x_lim, extra_name)[2],
            title=extra_name or "Other metric",
            y_title=extra_name or "value",
        )

    def values(
        self,
        curves: Curves,
        job: JobDetail | None,
        changed: bool,
        x_lim: list[float] | None,
        extra_name: str | None,
        *,
        waiting_for: int | None = None,
        reset: bool = False,
    ) -> Updates:
        """Updates of `outputs` (the curves state always; the rest only where it changed).
        `reset` (a newly followed job) redraws everything and clears the zoom."""
        status = status_line(job, curves, waiting_for) if job else message(self.idle_text)
        out: Updates = {self.curves: curves}
        if status != curves.get("status_html") or reset:
            out[self.status] = status
        curves["status_html"] = status
        names = extra_metric_names(curves)
        name_changed = reset or names != curves.get("extra_names")
        if name_changed:
            curves["extra_names"] = names
            if extra_name not in names:
                extra_name = names[0] if names else None
            out[self.extra_name] = gr.update(choices=names, value=extra_name)
        if not (changed or reset):
            return out
        loss, lr, extra = self.frames(curves, None if reset else x_lim, extra_name)
        title = dict(title=extra_name or "Other metric", y_title=extra_name or "value")
        if reset:
            return {
                **out,
                self.x_lim: None,
                self.loss: gr.LinePlot(loss, x_lim=None),
                self.lr: gr.LinePlot(lr, x_lim=None),
                self.extra: gr.LinePlot(extra, x_lim=None, **title),
            }
        return {
            **out,
            self.loss: loss,
            self.lr: lr,
            self.extra: gr.LinePlot(extra, **title) if name_changed else extra,
        }
