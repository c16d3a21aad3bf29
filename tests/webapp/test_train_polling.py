"""How often the Train tab asks about the followed job: each poll is a Gradio event that the
server and the browser pay for, on the machine that trains (bench/ui_overhead.py)."""

from __future__ import annotations

import gradio as gr
import pytest

from engine.api import Studio
from tests.webapp.helpers import kill_workers
from tests.webapp.test_app import prop
from webapp.figures import FAST_POINTS
from webapp.train_tab import POLL_S, SLOW_POLL_S, TrainTab


@pytest.fixture
def tab(tmp_path):
    studio = Studio(tmp_path / "home")  # no job manager: jobs stay queued
    with gr.Blocks() as demo:
        train = TrainTab(studio)
        train.build()
        train.wire(demo)
    yield train
    kill_workers(studio)


def test_text_samples_are_polled_only_for_a_text_job(tab):
    image = tab.studio.submit({"method": "simclr", "dataset": "digits", "params": {"steps": 5}})
    out = tab.follow(image)
    assert prop(out[tab.timer], "active") and prop(out[tab.timer], "value") == POLL_S
    assert prop(out[tab.sample_timer], "active") is False
    text = tab.studio.submit({"method": "gpt", "dataset": "pydocs", "params": {"steps": 5}})
    assert prop(tab.follow(text)[tab.sample_timer], "active") is True


def test_the_poll_slows_down_once_the_curve_has_many_points(tab):
    job = tab.studio.submit({"method": "simclr", "dataset": "digits", "params": {"steps": 500}})
    curves = tab.follow(job)[tab.panel.curves]
    view = (None, 0.0, False)
    assert tab.timer not in tab.tick(curves, *view)  # few points: every POLL_S
    curves["points"]["loss"] = [[s, 1.0] for s in range(1, FAST_POINTS + 1)]
    out = tab.tick(curves, *view)
    assert prop(out[tab.timer], "value") == SLOW_POLL_S and curves["slow"]
    assert tab.timer not in tab.tick(curves, *view)  # said once
    # Following another job starts fast again.
    assert prop(tab.follow(job)[tab.timer], "value") == POLL_S
