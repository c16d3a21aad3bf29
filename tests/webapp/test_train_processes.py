"""The Train tab's processes field: what the machine offers beside it, and its refusals."""

from __future__ import annotations

import gradio as gr
import pytest

from engine.api import Studio
from tests.webapp.helpers import kill_workers
from tests.webapp.test_app import form_values, prop
from webapp.train_tab import TrainTab, precision_note, processes_note, submit_form

CPU = {"cpu_cores": 2, "cuda_devices": [], "max_processes": 2}
GPUS = {
    "cpu_cores": 16,
    "cuda_devices": [{"index": i, "name": "NVIDIA H100", "memory_gb": 79.1} for i in range(4)],
    "max_processes": 4,
}


@pytest.fixture
def studio(tmp_path):
    s = Studio(tmp_path / "home")
    yield s
    kill_workers(s)


def test_processes_note_says_what_was_detected():
    assert processes_note(CPU) == "2 CPU cores, no GPU: up to 2 processes"
    assert processes_note(GPUS) == "4 GPUs (NVIDIA H100): up to 4 processes"
    one = dict(CPU, cpu_cores=1, max_processes=1)
    assert processes_note(one) == "1 CPU core, no GPU: up to 1 process"


def test_precision_note_says_what_auto_means_here():
    assert precision_note(dict(CPU, fast_bf16=False)) == (
        "auto trains in fp32: this CPU emulates bf16, many times slower"
    )
    assert precision_note(dict(GPUS, fast_bf16=True)) == (
        "auto trains under bf16 autocast: this GPU computes bf16 natively"
    )


def test_the_precision_field_says_what_auto_means_on_this_machine(studio):
    tab = TrainTab(studio)
    (field,) = [f for f in tab.forms["dino"] if f["name"] == "precision"]
    assert field["default"] == "auto" and "auto" in field["choices"]
    assert field["help"].endswith(f"Here: {precision_note(studio.hardware())}.")


def test_the_processes_field_shows_the_machine_after_every_method_change(studio):
    with gr.Blocks() as demo:
        tab = TrainTab(studio)
        tab.build()
        tab.wire(demo)
    note = f"Here: {processes_note(studio.hardware())}."
    (widget,) = [w.component for w in tab.form.widgets if w.key[0] == "processes"]
    assert widget.info.endswith(note) and widget.value == 1
    for out in (tab.on_method("mae", "shapes", "quick"), tab.on_preset("simclr", "quick")):
        assert prop(out[widget], "info").endswith(note)
    # Left at 1 it is no override: the stored spec stays what it was before the field.
    tab.start("simclr", "digits", "quick", 0, "convnet", *form_values(tab, steps=5))
    assert studio.job(studio.jobs()[0]["id"])["spec"]["params"] == {"steps": 5}


def test_the_form_refuses_processes_past_the_machine_or_the_batch(studio):
    most = studio.hardware()["max_processes"]
    job_id, note = submit_form(studio, "simclr", "digits", "quick", 0, {"processes": most + 1})
    assert job_id is None and f"processes {most + 1} is more than" in note
    if most >= 2:
        values = {"processes": 2, "batch_size": 31}
        job_id, note = submit_form(studio, "simclr", "digits", "quick", 0, values)
        assert job_id is None and "batch_size 31 does not divide among 2 processes" in note
    assert studio.jobs() == []
