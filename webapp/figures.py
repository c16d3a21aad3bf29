"""Curves and the words around them: metric points, charts, status lines, dates.

Plain functions over plain types (no gradio objects here but in `CurvePanel`), so each is
testable on its own. A job's curves are held as a `Curves` dict in a `gr.State`:

    {"job_id": 3, "since": 120, "points": {"loss": [[1, 6.2], [2, 6.1], ...], "lr": [...]},
     "samples": [[monotonic_time, step], ...], "seen_step": 120}

`poll` adds only the points after `since` (what `studio.metrics(job_id, since)` returns); it
never fetches a job's history twice. The charts are plotly figures built in `webapp/charts.py`.

Handlers with several outputs return `Updates`, a dict keyed by component: Gradio leaves an
output that is not in it as it is, so nobody counts positions (see `respond`).
"""

from __future__ import annotations

import html
import math
import time
from datetime import UTC, datetime
from typing import Any, NotRequired, TypedDict

import gradio as gr
import pandas as pd
from gradio.components import Component

from engine.contract import JobDetail, JobStatus, MetricPoint, Studio
from webapp.charts import (
    MAX_PLOT_POINTS,
    SYSTEM_PREFIX,
    as_plot,
    system_figure,
    thin,
    training_figure,
)

Updates = dict[Component, Any]  # a handler's answer: {output component: its new value}

# Logged every step but shown in the status line, not as a curve of its own by default.
MAIN_CURVES = ("loss", "lr")
RATE_WINDOW_S = 60.0  # the ETA uses the step rate over about this many recent seconds
ETA_AFTER_STEPS = 10  # ... once the rate was measured over this many steps
ETA_AFTER_S = 10.0  # ... or this many seconds
DEFAULT_SMOOTHING = 0.6  # TensorBoard's default


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
    samples: list[list[float]]  # [[monotonic time, step], ...]: when each step was first seen
    seen_step: NotRequired[int | None]  # the step at the last poll (its time is unknown)
    status: NotRequired[str | None]  # the job's status at the last poll
    status_html: NotRequired[str]  # the status line last sent
    extra_names: NotRequired[list[str]]  # the metric choices last sent
    drawn_at: NotRequired[float]  # monotonic time of the last chart redraw
    stale: NotRequired[bool]  # points arrived that the charts do not show yet
    slow: NotRequired[bool]  # the poll has slowed down (webapp.train_tab.SLOW_POLL_S)


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
    curves["samples"], curves["seen_step"] = [], None
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
    else:
        curves["samples"], curves["seen_step"] = [], None  # a queued job's clock restarts
    return curves, job, changed


def note_progress(curves: Curves, step: int, now: float | None = None) -> None:
    """Record when the job's step was first seen to change. The step found at the first poll
    says nothing about time (the job may have been there for a minute, or still be loading its
    data), so rates are measured from the first change on; samples older than RATE_WINDOW_S
    go, except the newest of them, which anchors the window."""
    now = time.monotonic() if now is None else now
    seen = curves.get("seen_step")
    curves["seen_step"] = step
    if seen is None or step == seen:
        return
    samples = curves["samples"] + [[now, step]]
    old = [s for s in samples if now - s[0] > RATE_WINDOW_S]
    curves["samples"] = old[-1:] + [s for s in samples if now - s[0] <= RATE_WINDOW_S]


def steps_per_second(curves: Curves) -> float | None:
    """The step rate over the recent window, once it spans ETA_AFTER_STEPS steps or
    ETA_AFTER_S seconds (None before: a rate from one or two steps, or from start-up, is
    the "ETA 2h 20m at step 1" a user cannot trust)."""
    samples = curves.get("samples") or []
    if len(samples) < 2:
        return None
    (t0, s0), (t1, s1) = samples[0], samples[-1]
    if t1 <= t0 or s1 <= s0:
        return None
    if s1 - s0 < ETA_AFTER_STEPS and t1 - t0 < ETA_AFTER_S:
        return None
    return (s1 - s0) / (t1 - t0)


def eta_seconds(curves: Curves, job: JobDetail, now: float | None = None) -> float | None:
    """Seconds left: the steps left at the recent rate, less the time already spent on the
    step in progress (since the newest step was first seen)."""
    rate = steps_per_second(curves)
    if rate is None:
        return None
    now = time.monotonic() if now is None else now
    into_step = min(max(now - curves["samples"][-1][0], 0.0), 1.0 / rate)
    return max(max(job["total_steps"] - job["step"], 0) / rate - into_step, 0.0)


def curve_frame(
    curves: Curves, name: str, x_lim: list[float] | None = None, max_points: int = MAX_PLOT_POINTS
) -> pd.DataFrame:
    """A two-column frame (step, `name`) for a LinePlot (the Runs tab's), thinned to
    `max_points`. With a zoom window only the points inside it (plus one on each side, so the
    line reaches the edges) are thinned, so zooming in shows full resolution."""
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
    rows = thin(rows, max_points)
    return pd.DataFrame(rows, columns=["step", name]).astype({"step": "int64", name: "float64"})


# A running job's charts redraw at most this often once the loss has FAST_POINTS points (every
# poll before that, so the first points show at once): redrawing every second in headless
# Chromium took 0.45 of a core and the server 0.11, which halved a quick SimCLR run's speed on
# two cores (517 -> 246 img/s, bench/ui_overhead.py). The status line still updates each poll.
REDRAW_S = 5.0
FAST_POINTS = 50

# The trainer's online k-NN curve (engine.evaluation.health.KnnProbe, every knn_every steps).
ONLINE_KNN = "online_knn_top1"


def extra_metric_names(curves: Curves) -> list[str]:
    """Logged metrics other than loss, lr and the system ones (contrastive_acc, ...)."""
    names = [
        n for n in curves["points"] if n not in MAIN_CURVES and not n.startswith(SYSTEM_PREFIX)
    ]
    return sorted(names, key=lambda n: (n == "images_per_second", n))


def preferred_extra(curves: Curves, names: list[str]) -> str | None:
    """The other metric shown first: the online k-NN where the job logs it (what the encoder
    has learnt so far), else the most often logged one (a per-step metric such as
    contrastive_acc, not a health metric with a point every 25 steps), the rate last."""
    if not names:
        return None
    if ONLINE_KNN in names:
        return ONLINE_KNN
    return min(names, key=lambda n: (n == "images_per_second", -len(curves["points"][n]), n))


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


def throughput(job: JobDetail) -> str:
    """ "85 img/s", or for a text method (its config has a context_length) "21,760 tokens/s":
    the worker's examples per second times the positions in each (padding counted)."""
    per_second = job.get("images_per_second")
    if not per_second:
        return ""
    context = (job.get("config") or {}).get("context_length")
    if context:
        return f"{per_second * context:,.0f} tokens/s"
    return f"{per_second:.0f} img/s"


def status_line(job: JobDetail, curves: Curves, waiting_for: int | None = None) -> str:
    """ "#3 simclr on digits · running · step 120/200 · 85 img/s · ETA 1m 10s · elapsed 1m 40s".

    The ETA comes from the step rate this page observed over the last minute (see
    `note_progress`), so it includes everything that slows a step (logging, evaluation,
    checkpoints); elapsed is the job's own running time (`duration_s`), resumes added up."""
    status = job["status"]
    parts = [f"#{job['id']} {job['method']} on {job['dataset']}", status]
    if status == JobStatus.QUEUED:
        parts.append(
            f"waiting for the running job (#{waiting_for})" if waiting_for else "starting soon"
        )
    else:
        parts.append(f"step {job['step']}/{job['total_steps']}")
        if speed := throughput(job):
            parts.append(speed)
        if status == JobStatus.RUNNING:
            eta = eta_seconds(curves, job)
            if eta is not None:
                parts.append("ETA " + format_duration(eta))
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
    if warning := collapse_warning(curves, job.get("config") or {}):
        out += message(warning, "warn")
    return out


# Effective rank (RankMe) below which a probe's embeddings count as collapsed: every image maps
# to about one point (a healthy run of the quick presets stays at 5 to 35; bench/RESULTS.md).
COLLAPSED_RANK = 2.0
# A low rank that grew by more than this share since the last probe is a network leaving its
# start, not a collapse: a random DINOv2 (layer scale 1e-5) starts at rank 1.1 and a learning
# quick run on `scenes` reads 1.1, 1.8, 3.8, 8.0 at steps 25 to 100 (bench/RESULTS.md).
RISING_RANK = 1.25


def collapse_warning(curves: Curves, config: dict[str, Any] | None = None) -> str:
    """A sentence when the last two health probes (engine/evaluation/health.py) both found the
    embeddings collapsed (effective rank under COLLAPSED_RANK), or the last two steps of a
    DINO-style run (its config has `out_dim`) had a teacher as flat as a uniform distribution
    over the prototypes, on every image alike (teacher entropy and marginal entropy within 1%
    of log out_dim: DINO's collapse to uniform); else "". Two, so a run that passes through
    a dip and recovers is not flagged. Not flagged either: a low rank rising fast (a network
    leaving its start), and a uniform teacher while the embeddings' rank is healthy or while
    DINOv2's patch loss is on (it trains the network while the [CLS] teacher is still flat)."""
    advice = (
        "Stop and try a lower learning rate, a slower teacher or target (momentum) or "
        "another preset; see 'About this method' and the curves under Other metric."
    )
    points = curves["points"]
    ranks = points.get("effective_rank") or []
    rising = len(ranks) >= 2 and ranks[-1][1] > RISING_RANK * ranks[-2][1]
    low = len(ranks) >= 2 and max(value for _, value in ranks[-2:]) < COLLAPSED_RANK
    if low and not rising:
        step, rank = ranks[-1]
        return (
            f"Collapse: at step {int(step)} the embeddings' effective rank is {rank:.1f}: "
            f"nearly every image maps to one point. {advice}"
        )
    config = config or {}
    out_dim = config.get("out_dim")
    # Only where the [CLS] distillation is the whole objective: DINOv2's masked-patch loss
    # (ibot_loss_weight) trains the network while its [CLS] teacher is still flat, from step 1.
    cls_only = not config.get("ibot_loss_weight")
    flat = (
        math.log(out_dim) * 0.99 if isinstance(out_dim, int) and out_dim > 1 and cls_only else None
    )
    teacher = points.get("teacher_entropy") or []
    marginal = points.get("teacher_marginal_entropy") or []
    last = teacher[-2:] + marginal[-2:]
    healthy = bool(ranks) and ranks[-1][1] >= 2 * COLLAPSED_RANK
    uniform = (
        flat is not None
        and len(teacher) >= 2
        and len(marginal) >= 2
        and min(v for _, v in last) > flat
    )
    if uniform and not healthy:
        return (
            f"Collapse: at step {int(teacher[-1][0])} the teacher's output is uniform "
            f"over the {out_dim} prototypes for every image (entropy "
            f"{teacher[-1][1]:.2f}, log {out_dim} = {math.log(out_dim):.2f}), so the "
            f"student has nothing to learn. {advice}"
        )
    return ""


# ---- the curve panel (gradio) ------------------------------------------------------------
class CurvePanel:
    """A job's status line, its training chart (loss; lr and one chosen metric below), the
    chart controls (smoothing, log scale, the other metric) and its system chart (CPU,
    memory, GPU) in a group of its own.

    Zoom is plotly's (drag a box on any curve; double-click to zoom out): the three training
    curves share their step axis, and refreshes keep the zoom (see webapp/charts.py). The
    controls redraw from the points already held; refreshes draw with the controls' values.
    """

    def __init__(self, idle_text: str, prefix: str) -> None:
        self.idle_text = idle_text
        self.prefix = prefix
        self.curves = gr.State(empty_curves())
        self.status = gr.HTML(
            message(idle_text), elem_classes=["ps-status"], elem_id=f"{prefix}-status"
        )
        self.plot = gr.Plot(
            as_plot(training_figure({}, None)),
            show_label=False,
            elem_id=f"{prefix}-loss",
            elem_classes=["ps-chart"],
        )
        with gr.Row(equal_height=True, elem_classes=["ps-chart-controls"]):
            self.smoothing = gr.Slider(
                0,
                0.99,
                value=DEFAULT_SMOOTHING,
                step=0.01,
                label="Smoothing",
                info="Exponential moving average of every curve (raw curve faint behind).",
                elem_id=f"{prefix}-smoothing",
                min_width=160,
            )
            self.log_y = gr.Checkbox(
                False,
                label="Log scale",
                info="Every y axis; values at or below 0 are not drawn.",
                elem_id=f"{prefix}-log",
                min_width=120,
            )
            self.extra_name = gr.Dropdown(
                label="Other metric",
                choices=[],
                value=None,
                info="What the method logs besides loss and lr.",
                elem_id=f"{prefix}-extra",
                min_width=160,
            )
        with gr.Accordion("System: CPU, memory, GPU", open=False, elem_id=f"{prefix}-sys"):
            self.system = gr.Plot(
                as_plot(system_figure({})),
                show_label=False,
                elem_id=f"{prefix}-system",
                elem_classes=["ps-chart"],
            )
        self.view = [self.extra_name, self.smoothing, self.log_y]
        self.inputs = [self.curves, *self.view]  # what a refresh handler reads
        self.outputs = [self.curves, self.status, self.plot, self.extra_name, self.system]

    def wire(self) -> None:
        """The chart controls redraw from the points held (private: not API endpoints)."""
        quiet = dict(api_visibility="private", show_progress="hidden")
        for event in (self.smoothing.release, self.log_y.input, self.extra_name.input):
            event(self.redraw, self.inputs, [self.plot, self.system], **quiet)

    # Handlers: plain functions of plain values.
    def figures(
        self, curves: Curves, extra_name: str | None, smoothing: float, log_y: bool
    ) -> tuple[Any, Any]:
        """(training chart, system chart) as `gr.Plot` values."""
        revision = f"{self.prefix}-job-{curves.get('job_id')}"
        smoothing = float(smoothing or 0)
        points = curves["points"]
        training = training_figure(
            points, extra_name, smoothing=smoothing, log_y=bool(log_y), revision=revision
        )
        system = system_figure(points, smoothing=smoothing, revision=revision)
        return as_plot(training), as_plot(system)

    def redraw(self, curves: Curves, extra_name: str | None, smoothing: float, log_y: bool) -> list:
        return list(self.figures(curves, extra_name, smoothing, log_y))

    def values(
        self,
        curves: Curves,
        job: JobDetail | None,
        changed: bool,
        extra_name: str | None = None,
        smoothing: float = DEFAULT_SMOOTHING,
        log_y: bool = False,
        *,
        waiting_for: int | None = None,
        reset: bool = False,
    ) -> Updates:
        """Updates of `outputs` (the curves state always; the rest only where it changed).
        `reset` (a newly followed job) redraws everything; the charts' zoom resets with it,
        as their uirevision names the job."""
        status = status_line(job, curves, waiting_for) if job else message(self.idle_text)
        out: Updates = {self.curves: curves}
        if status != curves.get("status_html") or reset:
            out[self.status] = status
        curves["status_html"] = status
        names = extra_metric_names(curves)
        before = curves.get("extra_names") or []
        name_changed = reset or names != before
        if name_changed:
            curves["extra_names"] = names
            # The online k-NN takes over the plot when its first point arrives (step 0: the
            # random network); a metric picked after that stays picked.
            if extra_name not in names or (ONLINE_KNN in names and ONLINE_KNN not in before):
                extra_name = preferred_extra(curves, names)
            out[self.extra_name] = gr.update(choices=names, value=extra_name)
        stale = changed or curves.get("stale", False)
        if not (stale or reset or name_changed):
            return out
        now = time.monotonic()
        busy = job is not None and JobStatus(job["status"]).active
        if (
            busy
            and not (reset or name_changed)
            and len(curves["points"].get("loss", ())) >= FAST_POINTS
            and now - curves.get("drawn_at", -math.inf) < REDRAW_S
        ):
            curves["stale"] = True  # drawn at a later poll
            return out
        curves["stale"], curves["drawn_at"] = False, now
        out[self.plot], out[self.system] = self.figures(curves, extra_name, smoothing, log_y)
        return out
