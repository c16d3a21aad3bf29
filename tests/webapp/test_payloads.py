"""Every public endpoint against malformed payloads, through the real endpoint functions (and
the lens inputs' preprocessing, as Gradio runs it): each answers a gr.Error naming the field,
never "The upstream Gradio app has raised an exception". And the split between the user's
errors and bugs: a StudioError reaches the client as its message, anything else as
"internal error, logged on the server (id N)" with its traceback in the server log."""

from __future__ import annotations

import logging
import os
import re

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
import pytest

from engine.api import Studio
from engine.errors import JobError
from tests.webapp.helpers import free_port, kill_workers
from webapp.app import build_app, launch_options
from webapp.train_tab import submit_form

SPEC = {"method": "simclr", "dataset": "digits", "params": {"steps": 3, "batch_size": 16}}
LONG = "x" * 10_000
INTERNAL = re.compile(r"^internal error, logged on the server \(id ([0-9a-f]{6})\)$")


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    s = Studio(tmp_path_factory.mktemp("home"))
    yield s
    kill_workers(s)


@pytest.fixture(scope="module")
def demo(studio):
    return build_app(studio)


def call(demo: gr.Blocks, api_name: str, *payloads):
    """The endpoint `api_name` as Gradio runs it: each input's preprocess, then the function."""
    fn = next(f for f in demo.fns.values() if f.api_name == api_name)
    if fn.preprocess:
        payloads = tuple(c.preprocess(p) for c, p in zip(fn.inputs, payloads))
    return fn.fn(*payloads)


@pytest.mark.parametrize(
    "api_name, args, words",
    [
        ("submit", [dict(SPEC, seed=2**80)], "seed must be from 0 to 4294967295"),
        ("submit", [dict(SPEC, seed=-1)], "seed must be from 0"),
        ("submit", [dict(SPEC, params={"steps": True})], "steps must be a whole number, got True"),
        ("submit", [dict(SPEC, params={"steps": 1e15})], "steps must be at most 10000000"),
        ("submit", [dict(SPEC, params={"steps": 0})], "steps must be at least 1"),
        ("submit", [dict(SPEC, preset={"a": 1})], "preset must be text"),
        ("submit", [dict(SPEC, params=[1])], "params must be a JSON object"),
        ("submit", [dict(SPEC, dataset=LONG)], "dataset is too long"),
        ("submit", [None], "spec must be a JSON object"),
        ("submit", [[SPEC]], "spec must be a JSON object"),
        ("metrics", [1, 10**30], "since_step must be from -1"),
        ("metrics", [1, "abc"], "since_step must be a whole number, got 'abc'"),
        ("job", [-5], "job id must be a positive whole number, got -5"),
        ("job", [True], "job_id must be a whole number, got True"),
        ("job", [10**30], "job id must be a positive whole number"),
        ("cancel", ["abc"], "job_id must be a whole number, got 'abc'"),
        ("resume", [None], "job_id must be a whole number, got None"),
        ("evaluations", [2.5], "job_id must be a whole number, got 2.5"),
        ("evaluate", [1, {"a": 1}], "protocol must be text"),
        (
            "evaluate_baseline",
            ["pixels", "digits", "resnet18", "knn", True],
            "image_size must be a whole number, got True",
        ),
        ("evaluate_model", [{"a": 1}, "shapes"], "model must be text"),
        ("evaluate_model", ["facebook/dinov2-small", LONG], "dataset is too long"),
        ("method_form", [{"a": 1}], "method must be text"),
        ("embeddings", [LONG], "model is too long: 10,000 characters"),
        ("embeddings", ["pixels", LONG], "dataset is too long: 10,000 characters"),
        ("embeddings", ["pixels", "digits", True], "samples must be a whole number, got True"),
        ("embeddings", ["pixels", "digits", 100, "pca", [1]], "params must be a JSON object"),
        # The lenses: their inputs' types first, then the engine's checks.
        ("fill_mask", ["a [MASK]", LONG, 5], "model is too long: 10,000 characters"),
        ("fill_mask", ["a [MASK]", "1", True], "Top k must be a number, got True"),
        ("fill_mask", [{"a": 1}, "1", 5], "Text must be text, got {'a': 1}"),
        ("attention", [None, "1", {"a": 1}, 0.6], "Layer must be a number"),
        ("attention", [None, "1", None, 0.6], "Layer needs a number"),
        ("retrieve", ["a star", "1", "shapes", 10**30, "test", 100], "Top k: Value .* greater"),
        ("views", ["simclr", "digits", 2**80, 2], "seed must be from 0 to 4294967295"),
        ("views", ["simclr", "digits", 0, True], "Images must be a number, got True"),
        ("views", [{"a": 1}, "digits", 0, 2], "Method: Value"),
    ],
)
def test_a_malformed_payload_is_refused_with_a_message_naming_the_field(
    demo, studio, api_name, args, words
):
    with pytest.raises(gr.Error) as refused:
        call(demo, api_name, *args)
    assert re.search(words, refused.value.message), refused.value.message
    assert not INTERNAL.match(refused.value.message)
    assert studio.jobs() == []


def _internal_id(text: str) -> str:
    found = re.search(r"internal error, logged on the server \(id ([0-9a-f]{6})\)", text)
    assert found, text
    return found.group(1)


def test_a_bug_is_logged_with_its_traceback_and_the_client_gets_its_id(
    demo, studio, monkeypatch, caplog
):
    def bug(spec):
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(studio, "submit", bug)
    with caplog.at_level(logging.ERROR, logger="webapp.errors"):
        with pytest.raises(gr.Error) as refused:
            call(demo, "submit", SPEC)
    incident = INTERNAL.match(refused.value.message).group(1)
    assert "CUDA" not in refused.value.message
    [record] = [r for r in caplog.records if incident in r.getMessage()]
    assert "/submit" in record.getMessage() and record.exc_info is not None
    assert "Traceback" in caplog.text and "device-side assert triggered" in caplog.text

    def refused_job(spec):  # a user's error with the same wrapping keeps its message
        raise JobError("job 3 is running; stop it first")

    monkeypatch.setattr(studio, "submit", refused_job)
    with pytest.raises(gr.Error) as refused:
        call(demo, "submit", SPEC)
    assert refused.value.message == "job 3 is running; stop it first"


def test_a_bug_in_a_tab_or_a_lens_shows_its_id_and_is_logged(demo, studio, monkeypatch, caplog):
    from webapp.lens_views import ViewsTab

    def bug(*args, **kwargs):
        raise TypeError("unsupported operand type(s) for +: 'NoneType' and 'int'")

    monkeypatch.setattr(studio, "submit", bug)
    monkeypatch.setattr(studio.lenses, "preview_views", bug)
    with caplog.at_level(logging.ERROR, logger="webapp.errors"):
        job_id, note = submit_form(studio, "simclr", "digits", "quick", 0, {})
        assert job_id is None and "ps-error" in note and "NoneType" not in note
        with gr.Blocks():
            tab = ViewsTab(studio)
            tab.build()
        *outputs, lens_note = tab.run_ui("simclr", "digits", 0, 2)
        assert outputs == [None, None] and "NoneType" not in lens_note
    for shown in (note, lens_note):
        assert f"(id {_internal_id(shown)})" in caplog.text
    assert caplog.text.count("NoneType") >= 2 and "Traceback" in caplog.text


def test_through_the_launched_app(studio, monkeypatch):
    """What a gradio_client caller receives: the field's message, or the bug's id; never the
    generic 'The upstream Gradio app has raised an exception'."""
    from gradio_client import Client

    demo = build_app(studio)
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
        with pytest.raises(Exception, match="preset must be text"):
            client.predict(dict(SPEC, preset={"a": 1}), api_name="/submit")
        with pytest.raises(Exception, match="job_id must be a whole number, got True"):
            client.predict(True, api_name="/job")
        with pytest.raises(Exception, match="Top k must be a number, got True"):
            client.predict("a [MASK]", "1", True, api_name="/fill_mask")

        def bug(spec):
            raise KeyError("spec")

        monkeypatch.setattr(studio, "submit", bug)
        with pytest.raises(Exception, match=r"internal error, logged on the server \(id "):
            client.predict(SPEC, api_name="/submit")
        assert studio.jobs() == []
    finally:
        demo.close()
