"""The Train/Jobs charts and status line as handlers produce them (no browser): plotly figures
right from the first point, the chart controls, an ETA that can be trusted, tokens/s."""

from __future__ import annotations

import json
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
import pytest

from webapp import charts, figures


def points(names=("loss", "lr"), steps=range(1, 51), value=lambda s: 1.0 / s):
    return {name: [[s, value(s)] for s in steps] for name in names}


def traces(figure, axes=""):
    return [t for t in figure["data"] if t["yaxis"] == f"y{axes}"]


# ---- charts ------------------------------------------------------------------------------
def test_one_point_is_a_visible_marker_with_titled_axes():
    figure = charts.training_figure({"loss": [[1, 0.695823]], "lr": [[1, 3e-4]]}, None)
    [loss] = traces(figure)
    assert loss["x"] == [1] and loss["y"] == [0.695823] and "markers" in loss["mode"]
    layout = figure["layout"]
    for axis in ("xaxis", "yaxis", "xaxis2", "yaxis2", "xaxis3", "yaxis3"):
        assert layout[axis]["title"]["text"], axis  # axis titles always
        assert layout[axis]["automargin"]  # tick labels never cut
        assert layout[axis]["exponentformat"] == "e"  # 1e-3 in full
    assert layout["yaxis"]["title"]["text"] == "loss" and layout["yaxis2"]["title"]["text"] == "lr"
    assert layout["xaxis2"]["matches"] == "x" and layout["xaxis3"]["matches"] == "x"
    assert layout["xaxis"]["dtick"] == 1  # whole steps, not 0.5, 1, 1.5
    # One value: a range around it (plotly's own, [-1, 1], drew 3e-4 on the 0 line).
    assert layout["yaxis2"]["range"] == pytest.approx([1.5e-4, 4.5e-4])
    log = charts.training_figure({"lr": [[1, 1e-3]]}, None, log_y=True)["layout"]["yaxis2"]
    assert log["range"] == pytest.approx([-3.5, -2.5])
    many = charts.training_figure(points(steps=range(1, 500)), None)
    assert traces(many)[0]["mode"] == "lines" and "dtick" not in many["layout"]["xaxis"]
    assert "range" not in many["layout"]["yaxis"]  # values that vary: plotly fits them


def test_empty_chart_says_why_and_long_curves_are_thinned():
    figure = charts.training_figure({}, None)
    assert any("no points yet" in a["text"] for a in figure["layout"]["annotations"])
    long = charts.training_figure(points(steps=range(1, 10_001)), None)
    [loss] = traces(long)
    assert len(loss["x"]) <= charts.MAX_PLOT_POINTS + 1 and loss["x"][-1] == 10_000


def test_smoothing_is_debiased_ema_and_lr_stays_exact():
    assert charts.ema([2.0, 2.0, 2.0], 0.9) == pytest.approx([2.0, 2.0, 2.0])  # no pull to 0
    assert charts.ema([1.0, 3.0], 0.5) == pytest.approx([1.0, (0.5 * 0.5 + 0.5 * 3.0) / 0.75])
    assert charts.ema([1.0, 5.0], 0.0) == [1.0, 5.0]
    noisy = points(("loss", "lr", "acc"), value=lambda s: float(s % 2))
    figure = charts.training_figure(noisy, "acc", smoothing=0.8)
    raw, smooth = traces(figure)
    assert raw["opacity"] < 1 and smooth["name"] == "loss (smoothed)"
    assert max(smooth["y"][10:]) - min(smooth["y"][10:]) < 0.5  # the 0/1 zigzag is tamed
    assert len(traces(figure, "2")) == 1  # lr: exact
    assert len(traces(figure, "3")) == 2  # the other metric is smoothed too


def test_log_scale_and_zoom_revisions():
    linear = charts.training_figure(points(), None, revision="train-job-3")
    log = charts.training_figure(points(), None, log_y=True, revision="train-job-3")
    assert all(log["layout"][f"yaxis{a}"]["type"] == "log" for a in ("", "2", "3"))
    assert linear["layout"]["yaxis"]["type"] == "linear"
    # The same job keeps the user's zoom (uirevision); the y axes re-fit on a scale switch.
    assert linear["layout"]["uirevision"] == log["layout"]["uirevision"] == "train-job-3"
    assert linear["layout"]["yaxis"]["uirevision"] != log["layout"]["yaxis"]["uirevision"]


def test_system_metrics_have_their_own_chart():
    pts = {
        **points(),
        "system/cpu_percent": [[1, 150.0], [5, 190.0]],
        "system/rss_mb": [[1, 900.0], [5, 910.0]],
    }
    system = charts.system_figure(pts)
    assert [t["name"] for t in system["data"]] == ["CPU % (100 = one core)", "memory (resident MB)"]
    training = charts.training_figure(pts, None)
    assert not any("system" in t["name"] or "CPU" in t["name"] for t in training["data"])
    curves = figures.add_points(
        figures.empty_curves(1),
        [{"step": s, "name": n, "value": v} for n, rows in pts.items() for s, v in rows],
    )
    assert figures.extra_metric_names(curves) == []  # neither loss/lr nor system/*


def test_the_other_metric_shown_first_is_the_most_often_logged():
    rows = [{"step": s, "name": "contrastive_acc", "value": 0.1} for s in range(1, 30)]
    rows += [{"step": s, "name": "images_per_second", "value": 9.0} for s in range(1, 30)]
    rows += [{"step": 25, "name": "alignment", "value": 0.3}]
    curves = figures.add_points(figures.empty_curves(1), rows)
    names = figures.extra_metric_names(curves)
    assert figures.preferred_extra(curves, names) == "contrastive_acc"


# ---- the panel's handlers ----------------------------------------------------------------
JOB = {
    "id": 1,
    "method": "simclr",
    "dataset": "digits",
    "status": "running",
    "step": 50,
    "total_steps": 100,
    "duration_s": 10.0,
    "config": {},
}


def test_panel_refreshes_with_the_controls_and_redraws_on_them():
    with gr.Blocks():
        panel = figures.CurvePanel("idle", "t")
    curves = figures.add_points(
        figures.empty_curves(1),
        [
            {"step": s, "name": n, "value": float(s)}
            for s in range(1, 51)
            for n in ("loss", "lr", "contrastive_acc")
        ],
    )
    out = panel.values(curves, JOB, True, None, 0.0, True, reset=True)
    assert out[panel.extra_name]["value"] == "contrastive_acc"
    figure = json.loads(out[panel.plot].plot)
    assert figure["layout"]["yaxis"]["type"] == "log"
    assert figure["layout"]["uirevision"] == "t-job-1"
    assert traces(figure, "3")[0]["name"] == "contrastive_acc"
    again = panel.values(curves, JOB, False, "contrastive_acc", 0.0, True)
    assert list(again) == [panel.curves]  # nothing new: only the state goes back
    plot, system = panel.redraw(curves, "contrastive_acc", 0.6, False)
    figure = json.loads(plot.plot)
    assert figure["layout"]["yaxis"]["type"] == "linear" and len(traces(figure)) == 2
    assert json.loads(system.plot)["layout"]["height"] == charts.SYSTEM_HEIGHT


def test_the_online_knn_takes_the_plot_when_it_arrives_and_a_pick_then_stays():
    with gr.Blocks():
        panel = figures.CurvePanel("idle", "t")
    rows = [{"step": s, "name": n, "value": 0.5} for s in range(1, 100) for n in ("loss", "lr")]
    rows += [{"step": s, "name": "contrastive_acc", "value": 0.5} for s in range(1, 100)]
    curves = figures.add_points(figures.empty_curves(1), rows)
    out = panel.values(curves, JOB, True, None, 0.0, False, reset=True)
    assert out[panel.extra_name]["value"] == "contrastive_acc"
    # Step 100: the first online k-NN point; the plot switches to it once.
    curves = figures.add_points(curves, [{"step": 100, "name": "online_knn_top1", "value": 0.3}])
    out = panel.values(curves, JOB, True, "contrastive_acc", 0.0, False)
    assert out[panel.extra_name]["value"] == "online_knn_top1"
    assert traces(json.loads(out[panel.plot].plot), "3")[0]["name"] == "online_knn_top1"
    # The user goes back to contrastive_acc; more k-NN points do not take it away again.
    curves = figures.add_points(curves, [{"step": 200, "name": "online_knn_top1", "value": 0.4}])
    curves["drawn_at"] -= figures.REDRAW_S  # the next redraw is due
    out = panel.values(curves, JOB, True, "contrastive_acc", 0.0, False)
    assert panel.extra_name not in out
    assert traces(json.loads(out[panel.plot].plot), "3")[0]["name"] == "contrastive_acc"


def test_a_long_running_curve_redraws_at_most_every_few_seconds_and_at_the_end():
    with gr.Blocks():
        panel = figures.CurvePanel("idle", "t")
    curves = figures.add_points(
        figures.empty_curves(1),
        [{"step": s, "name": n, "value": 1.0} for s in range(1, 11) for n in ("loss", "lr")],
    )
    # Few points: every poll with new points redraws (the first points show at once).
    panel.values(curves, JOB, True, None, 0.0, False, reset=True)
    curves = figures.add_points(curves, [{"step": 11, "name": "loss", "value": 1.0}])
    assert panel.plot in panel.values(curves, JOB, True, None, 0.0, False)
    # Many points: a poll soon after a redraw sends the status but not the charts ...
    more = [{"step": s, "name": "loss", "value": 1.0} for s in range(12, 12 + figures.FAST_POINTS)]
    curves = figures.add_points(curves, more)
    out = panel.values(curves, JOB, True, None, 0.0, False)
    assert panel.plot not in out and panel.system not in out and curves["stale"]
    # ... and a later poll draws them even if nothing new arrived since.
    curves["drawn_at"] -= figures.REDRAW_S
    out = panel.values(curves, JOB, False, None, 0.0, False)
    assert panel.plot in out and not curves["stale"]
    # The job's last points are drawn at once when it finishes.
    curves = figures.add_points(curves, [{"step": 99, "name": "loss", "value": 0.5}])
    out = panel.values(curves, dict(JOB, status="completed"), True, None, 0.0, False)
    assert panel.plot in out


# ---- the status line ---------------------------------------------------------------------
def simulate(curves, total, step_s, startup_s, poll_s, flush_s=0.5, until=None):
    """Poll a job that starts after `startup_s` and then takes `step_s` per step, as the UI
    would every `poll_s` (the worker writes its step every `flush_s`). Yields (time, step,
    ETA shown)."""
    now = 0.0
    end = startup_s + total * step_s
    while now < (until or end):
        written = now - (now - startup_s) % flush_s if now > startup_s else 0.0
        step = min(total, max(0, int((written - startup_s) / step_s)))
        figures.note_progress(curves, step, now)
        job = dict(JOB, step=step, total_steps=total)
        yield now, step, figures.eta_seconds(curves, job, now), end - now
        now += poll_s


@pytest.mark.parametrize(
    "total, step_s, startup_s, poll_s",
    [(200, 0.9, 20.0, 1.0), (60, 3.0, 5.0, 1.0), (2000, 0.05, 8.0, 3.0), (300, 2.0, 40.0, 1.0)],
)
def test_eta_waits_for_10_steps_or_10_s_then_is_within_2x(total, step_s, startup_s, poll_s):
    curves = figures.empty_curves(1)
    for now, step, eta, left in simulate(curves, total, step_s, startup_s, poll_s):
        if now < startup_s + min(10 * step_s, 10.0):
            assert eta is None, (now, step, eta)  # never from start-up or a step or two
        if step >= 0.2 * total and step < total:
            assert eta is not None and left / 2 <= eta <= 2 * left, (now, step, eta, left)


def test_eta_of_a_page_opened_mid_job_and_after_a_rewind():
    curves = figures.empty_curves(1)
    figures.note_progress(curves, 500, now=1000.0)  # the step found: its time is unknown
    figures.note_progress(curves, 500, now=1001.0)
    assert figures.eta_seconds(curves, dict(JOB, step=500, total_steps=1000)) is None
    for i in range(1, 12):
        figures.note_progress(curves, 500 + i, now=1001.0 + i)
    eta = figures.eta_seconds(curves, dict(JOB, step=511, total_steps=1000), now=1012.0)
    assert eta == pytest.approx(489.0)
    figures.rewind(curves, 400)
    assert curves["samples"] == [] and figures.steps_per_second(curves) is None


def test_status_line_warns_of_a_collapse_seen_by_two_probes():
    curves = figures.empty_curves(1)
    figures.add_points(curves, [{"step": 25, "name": "effective_rank", "value": 1.6}])
    assert "Collapse" not in figures.status_line(JOB, curves)  # one probe may be a dip
    figures.add_points(curves, [{"step": 50, "name": "effective_rank", "value": 1.4}])
    line = figures.status_line(JOB, curves)
    assert "Collapse: at step 50" in line and "rank is 1.4" in line and "ps-warn" in line
    figures.add_points(curves, [{"step": 75, "name": "effective_rank", "value": 6.0}])
    assert "Collapse" not in figures.status_line(JOB, curves)  # recovered


def test_a_low_rank_rising_fast_is_a_network_leaving_its_start_not_a_collapse():
    # A DINOv2 quick run on scenes (bench/RESULTS.md): rank 1.08, 1.75, 3.8 at steps 25-75.
    curves = figures.empty_curves(1)
    for step, rank in ((25, 1.08), (50, 1.75)):
        figures.add_points(curves, [{"step": step, "name": "effective_rank", "value": rank}])
    assert "Collapse" not in figures.status_line(JOB, curves)
    figures.add_points(curves, [{"step": 75, "name": "effective_rank", "value": 1.8}])
    assert "Collapse: at step 75" in figures.status_line(JOB, curves)  # stalled low


def test_status_line_warns_of_a_dino_teacher_gone_uniform():
    job = dict(JOB, method="dino", config={"out_dim": 256})  # log 256 = 5.545
    curves = figures.empty_curves(1)
    rows = [(20, 2.0, 2.1), (40, 5.2, 5.3), (60, 5.54, 5.545), (80, 5.545, 5.545)]
    for step, entropy, marginal in rows[:3]:
        figures.add_points(
            curves,
            [
                {"step": step, "name": "teacher_entropy", "value": entropy},
                {"step": step, "name": "teacher_marginal_entropy", "value": marginal},
            ],
        )
    assert "Collapse" not in figures.status_line(job, curves)  # 5.2 is still learning
    figures.add_points(
        curves,
        [
            {"step": 80, "name": "teacher_entropy", "value": 5.545},
            {"step": 80, "name": "teacher_marginal_entropy", "value": 5.545},
        ],
    )
    line = figures.status_line(job, curves)
    assert "Collapse: at step 80" in line and "uniform over the 256 prototypes" in line
    # A sharp teacher on each image with a flat marginal is DINO working: no warning.
    figures.add_points(
        curves,
        [
            {"step": 100, "name": "teacher_entropy", "value": 1.0},
            {"step": 100, "name": "teacher_marginal_entropy", "value": 5.545},
        ],
    )
    assert "Collapse" not in figures.status_line(job, curves)


def flat_teacher(steps, entropy, rank=None):
    """Curves of a teacher at ln 4096 (its marginal) and `entropy` (per image) at `steps`,
    with an effective-rank probe of `rank` at each when given."""
    curves = figures.empty_curves(1)
    for step in steps:
        points = [
            {"step": step, "name": "teacher_entropy", "value": entropy},
            {"step": step, "name": "teacher_marginal_entropy", "value": 8.318},
        ]
        if rank is not None:
            points.append({"step": step, "name": "effective_rank", "value": rank})
        figures.add_points(curves, points)
    return curves


def test_a_flat_teacher_is_no_collapse_while_the_embeddings_rank_is_healthy():
    # DINOv2's [CLS] teacher can stay flat while its patch loss trains the network.
    job = dict(JOB, method="dinov2", config={"out_dim": 4096})  # log 4096 = 8.318
    curves = flat_teacher((175, 200), entropy=8.31, rank=18.0)
    assert "Collapse" not in figures.status_line(job, curves)
    figures.add_points(curves, [{"step": 225, "name": "effective_rank", "value": 3.0}])
    assert "output is uniform" in figures.status_line(job, curves)


def test_a_flat_cls_teacher_is_no_collapse_while_dinov2_patch_loss_trains():
    # A DINOv2 quick run on scenes from the Train tab: teacher entropy at ln 4096 from step 1,
    # before any rank probe, while the loss falls and the online k-NN rises (bench/RESULTS.md).
    curves = flat_teacher((3, 16), entropy=8.318)
    dinov2 = dict(JOB, method="dinov2", config={"out_dim": 4096, "ibot_loss_weight": 1.0})
    assert "Collapse" not in figures.status_line(dinov2, curves)
    without = dict(dinov2, config={"out_dim": 4096, "ibot_loss_weight": 0.0})  # DINO + KoLeo
    assert "output is uniform" in figures.status_line(without, curves)


def test_status_line_words():
    line = figures.status_line(dict(JOB, images_per_second=85.2), figures.empty_curves(1))
    assert "85 img/s" in line and "ETA" not in line and "elapsed 10s" in line
    text = dict(JOB, method="bert", images_per_second=20.0, config={"context_length": 64})
    assert "1,280 tokens/s" in figures.status_line(text, figures.empty_curves(1))
    assert "img/s" not in figures.status_line(text, figures.empty_curves(1))
