"""The web app's handlers through the real engine API, its public API, and one job run through
a launched app with gradio_client. No browser here (see test_browser.py)."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
import pytest

from engine.api import Studio
from tests.webapp.helpers import free_port, kill_workers, wait_for
from webapp import figures
from webapp.app import build_app, launch_options
from webapp.forms import overrides
from webapp.jobs_tab import jobs_frame
from webapp.train_tab import TrainTab, submit_form

TERMINAL = ("completed", "cancelled", "failed", "interrupted")
TINY = {"steps": 3, "batch_size": 16, "image_size": 16, "warmup_steps": 1, "precision": "fp32"}
PUBLIC = {"submit", "cancel", "resume", "jobs", "job"}


@pytest.fixture
def studio(tmp_path):
    s = Studio(tmp_path / "home")
    yield s
    kill_workers(s)


@pytest.fixture
def train_tab(studio):
    with gr.Blocks() as demo:
        tab = TrainTab(studio)
        tab.build()
        tab.wire(demo)
    return tab


def form_values(tab: TrainTab, **changes) -> list:
    """The Train form as a browser would send it: every widget's value, some changed."""
    values = []
    for widget in tab.form.widgets:
        name = widget.key[0]
        values.append(changes.get(name, widget.component.value))
    return values


def prop(update, name):
    """A property of a handler's update, whether a gr.update dict or a component instance."""
    if isinstance(update, dict):
        return update.get(name)
    return update.constructor_args.get(name, getattr(update, name, None))


# ---- the Train form ----------------------------------------------------------------------
def test_start_with_defaults_queues_a_job_with_no_overrides(studio, train_tab):
    out = train_tab.start("simclr", "digits", "quick", 0, "convnet", *form_values(train_tab))
    assert "Job #1 submitted" in out[train_tab.note]
    [job] = studio.jobs()
    assert job["status"] == "queued" and job["method"] == "simclr"
    assert studio.job(job["id"])["spec"] == {
        "method": "simclr",
        "dataset": "digits",
        "preset": "quick",
        "seed": 0,
        "params": {},
    }
    timer = out[train_tab.timer]
    assert isinstance(timer, gr.Timer) and timer.active
    assert set(out) <= {train_tab.note, *train_tab.follow_outputs}  # all wired as outputs


def test_start_sends_only_changed_values(studio, train_tab):
    # Number boxes send floats; a whole float for an int field is an int in the spec.
    raw = form_values(train_tab, steps=5.0, temperature=0.3, small_stem=False)
    train_tab.start("simclr", "digits", "quick", 3.0, "convnet", *raw)
    spec = studio.job(studio.jobs()[0]["id"])["spec"]
    assert spec["seed"] == 3
    assert spec["params"] == {"steps": 5, "temperature": 0.3, "small_stem": False}


@pytest.mark.parametrize(
    "values, words",
    [
        ({"steps": 0}, "steps must be at least 1"),
        ({"nonsense_key": 3}, "unknown setting"),
        ({"batch_size": 100_000}, "larger than"),
        ({"steps": 2.5}, "whole number"),
    ],
)
def test_a_refused_form_shows_the_message_and_creates_nothing(studio, values, words):
    job_id, note = submit_form(studio, "simclr", "digits", "quick", 0, values)
    assert job_id is None
    assert words in note and "ps-error" in note and "Traceback" not in note
    assert studio.jobs() == []


def test_a_refused_form_through_the_tab_handler(studio, train_tab):
    out = train_tab.start(
        "simclr", "digits", "quick", 0, "convnet", *form_values(train_tab, steps=0)
    )
    assert list(out) == [train_tab.note]  # the rest stays as it is
    assert "ps-error" in out[train_tab.note] and "steps" in out[train_tab.note]
    assert studio.jobs() == []


def test_changing_method_swaps_fields_and_defaults(studio, train_tab):
    ups = train_tab.on_method("mae", "digits", "quick")
    dataset, backbone = ups[train_tab.dataset], ups[train_tab.backbone]
    assert dataset["value"] == "scenes" and ups[train_tab.preset]["value"] == "quick"  # its own
    assert backbone["value"] == "vit-tiny" and "vit-base" in backbone["choices"]
    shown = {
        w.key[0]: ups[w.component]
        for w in train_tab.form.widgets
        if prop(ups[w.component], "visible")
    }
    assert "mask_ratio" in shown and "temperature" not in shown
    assert prop(shown["steps"], "value") == studio.method_form("mae", "quick")[1]["default"]
    assert prop(shown["mask_ratio"], "maximum") == 0.95
    paper = train_tab.on_preset("simclr", "paper")
    assert paper[train_tab.backbone]["value"] == "resnet50"
    by_name = {
        w.key[0]: paper[w.component]
        for w in train_tab.form.widgets
        if prop(paper[w.component], "visible")
    }
    assert prop(by_name["batch_size"], "value") == 1024


def test_overrides_pass_unknown_keys_and_drop_defaults():
    fields = [
        {"name": "steps", "type": "int", "default": 200, "choices": None},
        {"name": "lr", "type": "float", "default": 1e-3, "choices": None},
    ]
    assert overrides(fields, {"steps": 200.0, "lr": 1e-3}) == {}
    assert overrides(fields, {"steps": 7.0, "x": 1}) == {"steps": 7, "x": 1}


# ---- figures -----------------------------------------------------------------------------
def test_formatting():
    assert figures.format_duration(83) == "1m 23s"
    assert figures.format_duration(4.4) == "4s"
    assert figures.format_duration(7500) == "2h 05m"
    assert len(figures.format_time("2024-05-01T12:00:00Z")) == len("2024-05-01 12:00:00")
    assert figures.format_time(None) == ""


def test_curves_grow_incrementally_and_thin_for_the_browser():
    class FakeStudio:
        def __init__(self):
            self.step, self.asked = 0, []

        def job(self, job_id):
            return {"id": job_id, "step": self.step, "status": "running", "total_steps": 10_000}

        def metrics(self, job_id, since):
            self.asked.append(since)
            return [
                {"step": s, "name": n, "value": float(s)}
                for s in range(since + 1, self.step + 1)
                for n in ("loss", "lr")
            ]

    fake = FakeStudio()
    curves = figures.empty_curves(7)
    fake.step = 5000
    curves, _, changed = figures.poll(fake, curves)
    fake.step = 5003
    curves, _, changed = figures.poll(fake, curves)
    assert changed and fake.asked == [-1, 5000]
    assert len(figures.curve_frame(curves, "loss")) <= figures.MAX_PLOT_POINTS + 1
    zoomed = figures.curve_frame(curves, "loss", [100, 200])
    assert len(zoomed) == 103 and zoomed["step"].iloc[1] == 100  # full resolution + edges
    fake.step = 3000  # resumed from an earlier checkpoint: newer points are dropped
    curves, _, _ = figures.poll(fake, curves)
    assert curves["since"] == 3000 and curves["points"]["loss"][-1][0] == 3000


def test_jobs_frame_columns(studio):
    studio.submit({"method": "simclr", "dataset": "digits", "params": TINY})
    frame = jobs_frame(studio.jobs())
    assert list(frame.columns) == [
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
    assert frame.iloc[0]["steps"] == "0/3" and frame.iloc[0]["status"] == "queued"


# ---- the app and its public API ----------------------------------------------------------
def test_app_builds_and_lists_only_the_named_endpoints(studio):
    demo = build_app(studio)
    assert isinstance(demo, gr.Blocks)
    named = {name.lstrip("/") for name in demo.get_api_info()["named_endpoints"]}
    assert named >= PUBLIC
    assert not any(
        word in name
        for name in named
        for word in ("tick", "zoom", "start", "on_", "refresh", "follow", "_1")
    )
    private = {fn.api_name for fn in demo.fns.values() if fn.api_visibility == "private"}
    assert {"tick", "start", "zoom"} <= private


def test_one_job_runs_through_the_launched_app(studio):
    from gradio_client import Client

    demo = build_app(studio)
    studio.start_manager()
    port = free_port()
    demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        **launch_options(),
    )
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        with pytest.raises(Exception, match="steps must be at least 1"):
            client.predict(
                {"method": "simclr", "dataset": "digits", "params": dict(TINY, steps=0)},
                api_name="/submit",
            )
        job_id = client.predict(
            {"method": "simclr", "dataset": "digits", "params": TINY}, api_name="/submit"
        )
        assert isinstance(job_id, int)
        job = wait_for(
            lambda: (j := client.predict(job_id, api_name="/job"))["status"] in TERMINAL and j,
            timeout=120,
        )
        assert job["status"] == "completed", job["error"]
        assert job["step"] == 3
        assert [j["id"] for j in client.predict(api_name="/jobs")] == [job_id]
        # The follow view of that job, as the Train tab would draw it.
        train = TrainTab(studio)
        with gr.Blocks():
            train.build()
        out = train.follow(job_id)
        figure = json.loads(out[train.panel.plot].plot)
        [loss] = [t for t in figure["data"] if t["name"] == "loss"]
        assert loss["x"] == [1, 2, 3] and "markers" in loss["mode"]
        assert not out[train.timer].active
        assert not prop(out[train.stop_btn], "interactive")  # a completed job: nothing to stop
        with pytest.raises(Exception, match="only"):
            client.predict(job_id, api_name="/resume")
    finally:
        demo.close()


def test_the_webapp_imports_no_torch():
    import subprocess
    import sys

    # engine.contract, engine.errors and engine.checks (plain Python) are the only engine
    # modules it may use.
    code = (
        "import sys, webapp.app, webapp.train_tab, webapp.jobs_tab, webapp.endpoints; "
        "allowed = {'engine', 'engine.contract', 'engine.errors', 'engine.checks'}; "
        "bad = [m for m in sys.modules if m in ('torch', 'transformers') "
        "or m.startswith('engine') and m not in allowed]; "
        "assert not bad, bad"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )


def test_add_dataset_handler(tmp_path):
    import zipfile

    from engine.api import Studio
    from tests.engine.data.test_user_images import _png
    from webapp.data_panel import add_dataset

    studio = Studio(tmp_path / "home")
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(3):
            zf.writestr(f"a/{i}.png", _png((255, 0, 0)))
            zf.writestr(f"b/{i}.png", _png((0, 255, 0)))
        zf.writestr("a/bad.png", b"broken")
    name, note = add_dataset(studio, str(archive), "", "uploaded")
    assert name == "uploaded" and "Skipped 1" in note and "ps-ok" in note
    name, note = add_dataset(studio, None, str(tmp_path / "nowhere"), "x")
    assert name is None and "does not exist" in note and "ps-error" in note
    name, note = add_dataset(studio, None, "", "x")
    assert name is None and "Upload a .zip" in note


def test_method_cards(tmp_path):
    from engine.api import Studio
    from webapp.cards import card_markdown, cards_table

    methods = Studio(tmp_path / "home").methods()
    simclr = next(m for m in methods if m["name"] == "simclr")
    text = card_markdown(simclr)
    assert "SimCLR" in text and "2020" in text and "arxiv.org/abs/2002.05709" in text
    table = cards_table(methods)
    assert set(table["method"]) == {m["name"] for m in methods}
    assert (table.loc[table["method"] == "mae", "year"] == 2021).all()


def test_text_methods_see_their_datasets_and_samples_render():
    from webapp.train_tab import dataset_choices, latest_sample_text

    datasets = [
        {"name": "shapes", "kind": "image", "modalities": ["image", "image-text"]},
        {"name": "captions", "kind": "text", "modalities": ["text"]},
    ]
    assert [v for _, v in dataset_choices(datasets, "image-text")] == ["shapes"]
    assert [v for _, v in dataset_choices(datasets, "text")] == ["captions"]
    assert latest_sample_text([{"step": 3, "text": "a red star"}]) == "step 3: a red star"
    assert "prediction: x" in latest_sample_text(
        [{"step": 4, "input": "a", "target": "b", "prediction": "x"}]
    )
    assert latest_sample_text([]) == ""


def test_a_method_starts_on_its_own_builtin_dataset_but_keeps_a_users():
    from webapp.train_tab import pick_dataset

    datasets = [
        {"name": "shapes", "kind": "image", "builtin": True, "available": True},
        {"name": "scenes", "kind": "image", "builtin": True, "available": True},
        {"name": "mine", "kind": "image", "builtin": False, "available": True},
        {"name": "captions", "kind": "text", "builtin": True, "available": True},
    ]
    assert pick_dataset(datasets, "image", None, "scenes") == "scenes"
    assert pick_dataset(datasets, "image", "shapes", "scenes") == "scenes"  # a builtin: swapped
    assert pick_dataset(datasets, "image", "mine", "scenes") == "mine"  # the user's: kept
    assert pick_dataset(datasets, "image", "captions", None) == "shapes"  # text: first image
    assert pick_dataset(datasets, "text", "shapes", "captions") == "captions"
    gone = [dict(d, available=d["name"] != "scenes") for d in datasets]
    assert pick_dataset(gone, "image", "shapes", "scenes") == "shapes"  # unavailable: kept
