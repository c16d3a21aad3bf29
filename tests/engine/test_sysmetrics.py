"""System metrics: readings ride on logged steps every few seconds; a job stores them."""

from __future__ import annotations

from datetime import timedelta

import psutil
import pytest

from engine import sysmetrics
from engine.api import Studio
from storage.db import utcnow
from tests.conftest import TINY


class Recorder:
    def __init__(self):
        self.calls = []

    def metrics(self, step, values):
        self.calls.append(("metrics", step, dict(values)))

    def started(self, first_step, total_steps):
        self.calls.append(("started", first_step, total_steps))

    def checkpoint(self, step, path):
        self.calls.append(("checkpoint", step, path))

    def flush(self):
        self.calls.append(("flush",))

    def discard_from(self, step):
        self.calls.append(("discard_from", step))


def test_readings_ride_on_a_logged_step_every_few_seconds():
    clock = [100.0]
    inner = Recorder()
    sink = sysmetrics.SystemSink(
        inner, every=5.0, clock=lambda: clock[0], reader=lambda: {sysmetrics.RSS_MB: 42.0}
    )
    sink.started(0, 10)
    for step in range(1, 8):  # a step each 2 s: readings at steps 1 (the first), 4 and 7
        sink.metrics(step, {"loss": 1.0})
        clock[0] += 2.0
    sink.checkpoint(7, "/x")
    sink.flush()
    sink.discard_from(8)  # what the sink does not define goes to the wrapped one
    logged = {c[1]: c[2] for c in inner.calls if c[0] == "metrics"}
    assert [s for s, v in logged.items() if sysmetrics.RSS_MB in v] == [1, 4, 7]
    assert all(v["loss"] == 1.0 for v in logged.values())
    kinds = [c[0] for c in inner.calls]
    assert kinds[0] == "started" and kinds[-3:] == ["checkpoint", "flush", "discard_from"]


def test_a_real_reading_of_this_process():
    process = psutil.Process()
    process.cpu_percent(None)
    sum(i * i for i in range(200_000))  # some CPU to measure
    values = sysmetrics.read(process)
    assert values[sysmetrics.RSS_MB] > 10  # a Python with torch loaded holds more than 10 MB
    assert values[sysmetrics.CPU_PERCENT] >= 0
    assert set(values) <= set(sysmetrics.NAMES)
    assert sysmetrics.GPU_MEMORY_MB not in values  # no CUDA used here


def test_a_job_stores_system_curves_and_its_elapsed_time_never_resets(tmp_path):
    from engine.worker import run_worker

    studio = Studio(tmp_path / "home")
    job_id = studio.submit({"method": "simclr", "dataset": "digits", "params": dict(TINY)})
    # As the manager leaves it: claimed (running, its clock started) before the worker runs;
    # here the worker took an hour to come up.
    started = utcnow() - timedelta(hours=1)
    assert studio.store.claim_slot(job_id, None, pid=1, host="h", started_at=started)[0]
    run_worker(studio.home, job_id)
    job = studio.job(job_id)
    assert job["status"] == "completed", job["error"]
    assert job["duration_s"] >= 3600  # counted from the claim, not from the worker
    names = {p["name"] for p in studio.metrics(job_id)}
    assert {sysmetrics.CPU_PERCENT, sysmetrics.RSS_MB} <= names


@pytest.mark.parametrize("name", sysmetrics.NAMES)
def test_names_are_grouped_under_system(name):
    assert name.startswith("system/")
