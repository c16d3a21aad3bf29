"""Runs tab handlers through the real engine API: the leaderboard (with baselines, filters),
overlaid curves of several jobs that keep the zoom, and Evaluate's messages. No training here:
evaluations are written to the store directly (the engine tests compute real ones)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
import pandas as pd
import pytest

from engine.api import Studio
from webapp import runs_tab
from webapp.app import build_app
from webapp.runs_board import (
    ALL_DATASETS,
    evaluate_jobs,
    leaderboard_frame,
    overlay_frame,
    sync_compare,
)
from webapp.runs_tab import RunsTab

SPEC = {"method": "simclr", "dataset": "digits", "preset": "quick", "seed": 0, "params": {}}


def add_job(studio, status="completed", step=100, method="simclr"):
    job_id = studio.store.create_job(
        method=method,
        dataset="digits",
        backbone="resnet18",
        preset="quick",
        spec=dict(SPEC, method=method),
        config={},
        total_steps=100,
        status=status,
        step=step,
        elapsed_before=75.0,
    )
    return job_id


def add_eval(studio, job_id, protocol, results, baseline=None, dataset="digits"):
    params = {"image_size": 32, "checkpoint_step": 100}
    if baseline:
        params.update(baseline=baseline, backbone="pixels" if baseline == "pixels" else "resnet18")
    studio.store.add_evaluation(job_id, protocol, dataset, params, results)


@pytest.fixture
def studio(tmp_path):
    s = Studio(tmp_path / "home")
    first, second = add_job(s), add_job(s, method="mae")
    add_eval(s, first, "knn", {"top1": 0.91, "top5": 0.99})
    add_eval(s, first, "linear", {"top1": 0.93})
    add_eval(s, first, "fewshot", {"shots": {"5": {"mean": 0.7, "std": 0.02, "runs": []}}})
    add_eval(
        s,
        first,
        "finetune",
        {
            "fractions": {
                "10pct": {
                    "fraction": 0.1,
                    "num_labels": 144,
                    "pretrained_top1": 0.8,
                    "scratch_top1": 0.5,
                }
            }
        },
    )
    add_eval(s, second, "knn", {"top1": 0.85, "top5": 0.97})
    add_eval(s, None, "knn", {"top1": 0.97, "top5": 1.0}, baseline="pixels")
    add_eval(s, None, "knn", {"top1": 0.95, "top5": 1.0}, baseline="random")
    add_eval(s, None, "knn", {"top1": 0.5, "top5": 0.9}, baseline="pixels", dataset="shapes")
    return s


@pytest.fixture
def tab(studio):
    with gr.Blocks() as demo:
        tab = RunsTab(studio)
        tab.build()
        tab.wire(demo)
    return tab


def test_leaderboard_handler_shows_jobs_and_baselines(studio, tab):
    out = tab.refresh_board("", ALL_DATASETS, "")
    key = out[tab.board_key]
    assert out[tab.dataset_filter]["choices"] == [ALL_DATASETS, "digits", "shapes"]
    frame = out[tab.board].constructor_args["value"]
    assert list(frame["run"]) == ["#2 mae", "#1 simclr", "pixels", "random resnet18", "pixels"]
    row = frame[frame["run"] == "#1 simclr"].iloc[0]
    assert row["k-NN"] == 0.91 and row["linear"] == 0.93 and row["5-shot"] == 0.7
    assert row["FT 10%"] == 0.8 and row["scratch 10%"] == 0.5
    assert row["time"] == "1m 15s" and row["steps"] == 100
    assert frame[frame["run"] == "random resnet18"].iloc[0]["k-NN"] == 0.95
    # Nothing changed: the next refresh sends nothing.
    assert tab.refresh_board("", ALL_DATASETS, key) == {tab.board_key: key}


def test_filters(studio):
    rows = studio.leaderboard()
    assert list(leaderboard_frame(rows, "mae")["run"]) == ["#2 mae"]
    assert list(leaderboard_frame(rows, "pixels")["run"]) == ["pixels", "pixels"]
    assert list(leaderboard_frame(rows, "", "shapes")["run"]) == ["pixels"]
    assert list(leaderboard_frame(rows, "SIMCLR digits")["run"]) == ["#1 simclr"]
    empty = leaderboard_frame([])
    assert {"k-NN", "linear", "5-shot", "FT 10%"} <= set(empty.columns)


def test_new_evaluations_appear_after_refresh(studio, tab):
    key = tab.refresh_board("", ALL_DATASETS, "")[tab.board_key]
    third = add_job(studio)
    add_eval(studio, third, "knn", {"top1": 0.99, "top5": 1.0})
    out = tab.refresh_board("", ALL_DATASETS, key)
    assert out[tab.board_key] != key
    assert tab.dataset_filter not in out  # same datasets: the filter stays
    assert "#3 simclr" in list(out[tab.board].constructor_args["value"]["run"])


class Brush:
    index = [10.2, 20.4]


def test_overlaid_curves_one_colour_per_job_and_zoom_survives_ticks(studio, tab):
    first, second = 1, 2
    studio.store.add_metrics(
        first,
        [(s, "loss", 5.0 - s / 50) for s in range(1, 101)]
        + [(s, "embedding_std", 0.04) for s in (25, 50, 75, 100)],
    )
    studio.store.add_metrics(second, [(s, "loss", 1.0) for s in range(1, 51)])
    out = tab.on_jobs({}, [first, second], "embedding_std", None)
    compare, loss, health = out[tab.compare], out[tab.loss_plot], out[tab.health_plot]
    assert set(loss["job"]) == {"#1 simclr", "#2 mae"} and len(loss) == 150
    # A job without the metric keeps one invalid point: it stays in the colour domain.
    assert set(health["job"]) == {"#1 simclr", "#2 mae"} and health["value"].notna().sum() == 4
    # Then each job its own colour, sent once per selection (it rebuilds the chart).
    styles = tab.restyle(compare, "{}")
    loss_style, key = styles[tab.loss_plot], styles[tab.style_key]
    colors = loss_style["color_map"]
    assert set(colors) == {"#1 simclr", "#2 mae"} and len(set(colors.values())) == 2
    assert "x_lim" not in loss_style and "value" not in loss_style  # the zoom stays
    assert tab.restyle(compare, key) == {tab.style_key: key}
    zoomed = tab.zoom(compare, "embedding_std", Brush())
    x_lim, plots = zoomed[tab.x_lim], [zoomed[tab.loss_plot], zoomed[tab.health_plot]]
    assert x_lim == [10.2, 20.4] and all(p.constructor_args["x_lim"] == x_lim for p in plots)
    # A running job gets new points: the tick sends plain frames (values only), so the
    # zoom set on the plots stays.
    studio.store.update_job(second, status="running")
    compare, _ = sync_compare(studio, {}, [first, second])
    studio.store.add_metrics(second, [(51, "loss", 0.9)])
    out = tab.tick("", ALL_DATASETS, "", compare, [first, second], "embedding_std", x_lim, "")
    loss_out = out[tab.loss_plot]
    assert isinstance(loss_out, pd.DataFrame)
    assert loss_out["step"].max() <= 22  # still the zoomed window, at full resolution
    assert compare["2"]["curves"]["since"] == 51
    # Dropping a job drops its curve.
    out = tab.on_jobs(compare, [second], "embedding_std", None)
    compare, loss = out[tab.compare], out[tab.loss_plot]
    assert set(loss["job"]) == {"#2 mae"}
    assert list(compare) == ["2"]


def test_overlay_of_nothing_is_an_empty_frame():
    frame = overlay_frame({}, "loss")
    assert list(frame.columns) == ["step", "value", "job"] and frame.empty


def test_selecting_a_job_row_adds_it_to_the_curves(tab):
    class Row:
        row_value = ["#2 mae", "mae"]

    out = tab.on_row([1], Row())
    assert out[tab.jobs]["value"] == [1, 2] and out[tab.eval_job]["value"] == 2

    class Baseline:
        row_value = ["pixels", "baseline: pixels"]

    assert tab.on_row([1], Baseline()) == gr.skip()


def test_opening_the_tab_draws_the_newest_jobs_curves_unless_some_are_picked(studio, tab):
    """The curves start empty (the page is built once); opening the tab with nothing picked
    picks the newest job that has logged a step, which the selection's change then draws."""
    queued = add_job(studio, status="queued", step=0)
    newest = max(j["id"] for j in studio.jobs() if j["id"] != queued)
    picked = tab.default_curves([])[tab.jobs]
    assert picked["value"] == [newest]
    assert [i for _, i in picked["choices"]] == sorted(
        (j["id"] for j in studio.jobs()), reverse=True
    )
    assert tab.default_curves(None)[tab.jobs]["value"] == [newest]
    assert tab.default_curves([1]) == {}  # the user's pick stays
    empty = RunsTab(Studio(studio.home.root / "empty"))
    assert empty.default_curves([]) == {}


def test_evaluate_messages(studio):
    assert "Choose a finished job" in evaluate_jobs(studio, None, ["knn"], "")
    assert "at least one protocol" in evaluate_jobs(studio, 1, [], "")
    queued = add_job(studio, status="queued", step=0)
    note = evaluate_jobs(studio, queued, ["knn"], "")
    assert "ps-error" in note and "is queued" in note
    note = evaluate_jobs(studio, 1, ["svm"], "")
    assert "unknown protocol" in note
    # A Hub model needs a dataset named, and one that is no model folder says so.
    assert "Choose the labelled dataset" in evaluate_jobs(studio, 1, ["knn"], "", None, "org/m")
    note = evaluate_jobs(studio, None, ["knn"], "shapes", None, "random:1")
    assert "ps-error" in note and "not a Hub id or a model folder" in note


def test_app_has_the_runs_tab_and_public_endpoints(studio):
    demo = build_app(studio)
    named = {name.lstrip("/") for name in demo.get_api_info()["named_endpoints"]}
    assert {
        "leaderboard",
        "evaluate",
        "evaluate_baseline",
        "evaluate_model",
        "evaluations",
    } <= named
    assert not any("tick" in name for name in named)
    assert runs_tab.RunsTab in [t[2] for t in __import__("webapp.app").app.TABS]


# ---- the Train form's evaluation choices --------------------------------------------------
def test_train_form_sends_the_chosen_evaluations(tmp_path):
    from webapp.train_tab import TrainTab, submit_form

    studio = Studio(tmp_path / "home")
    with gr.Blocks() as demo:
        train = TrainTab(studio)
        train.build()
        train.wire(demo)
    assert train.evals.value == ["knn", "linear"]  # the default
    raw = [w.component.value for w in train.form.widgets]
    train.start("simclr", "digits", "quick", 0, "resnet18", *raw, ["knn", "fewshot"], "shapes")
    spec = studio.job(studio.jobs()[0]["id"])["spec"]
    assert spec["evals"] == ["knn", "fewshot"] and spec["eval_dataset"] == "shapes"
    train.start("simclr", "digits", "quick", 0, "resnet18", *raw, [], "")
    assert "evals" not in studio.job(studio.jobs()[0]["id"])["spec"]
    job_id, note = submit_form(studio, "simclr", "digits", "quick", 0, {}, ["svm"])
    assert job_id is None and "unknown protocol" in note
    texts = [m for m, info in train.methods.items() if info["modality"] != "image"]
    if texts:
        update = train.on_method_evals(texts[0])
        assert update["value"] == [] and update["interactive"] is False
    update = train.on_method_evals("simclr")
    assert update["value"] == ["knn", "linear"] and update["interactive"] is True


def test_the_job_to_evaluate_is_picked_when_the_list_fills(studio, tab):
    """The page may be built before any job finished: the first tick that lists finished jobs
    also picks one (the newest), and later ticks keep the user's pick while it is listed."""
    out = tab.tick("", ALL_DATASETS, "", {}, [], "embedding_std", None, "", None)
    finished = out[tab.eval_job]["choices"]
    assert len(finished) >= 2 and out[tab.eval_job]["value"] == finished[0][1]
    picked = finished[-1][1]
    out = tab.tick("", ALL_DATASETS, "", {}, [], "embedding_std", None, "", picked)
    assert out[tab.eval_job]["value"] == picked
    gone = tab.tick("", ALL_DATASETS, "", {}, [], "embedding_std", None, "", 987)
    assert gone[tab.eval_job]["value"] == finished[0][1]
    same = tab.tick(
        "",
        ALL_DATASETS,
        out[tab.board_key],
        {},
        [],
        "embedding_std",
        None,
        out[tab.jobs_key],
        picked,
    )
    assert list(same) == [tab.board_key]  # nothing changed: nothing else is sent
