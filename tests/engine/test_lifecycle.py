"""The job lifecycle with real worker processes and a real SQLite file."""

import os
import signal
import time

import pytest

from engine import checkpoints
from engine.api import Studio
from engine.errors import DatasetError, SpecError
from engine.jobs import recover_interrupted
from tests.conftest import TINY

TERMINAL = ("completed", "cancelled", "failed", "interrupted")


def wait_for(predicate, timeout=120.0, every=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


def spec(**params):
    return {
        "method": "simclr",
        "dataset": "digits",
        "preset": "quick",
        "seed": 0,
        "params": dict(TINY, **params),
    }


@pytest.fixture
def studio(tmp_path):
    s = Studio(tmp_path / "home")
    yield s
    s.shutdown()
    for job in s.jobs():  # never leave a worker behind
        if job["status"] == "running" and job["pid"] not in (None, os.getpid()):
            try:
                os.kill(job["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_submit_runs_to_completion(studio):
    job_id = studio.submit(spec(steps=6))
    assert studio.job(job_id)["status"] == "queued"
    studio.start_manager()
    assert wait_for(lambda: studio.job(job_id)["status"] in ("running", *TERMINAL))
    job = wait_for(lambda: (j := studio.job(job_id))["status"] in TERMINAL and j)
    assert job["status"] == "completed", job["error"]
    assert job["step"] == 6 and job["last_loss"] is not None
    assert [p["step"] for p in studio.metrics(job_id) if p["name"] == "loss"] == list(range(1, 7))
    assert [p["step"] for p in studio.metrics(job_id, since_step=4) if p["name"] == "loss"] == [
        5,
        6,
    ]
    assert checkpoints.latest(studio.home.run_dir(job_id)).name == "step_0000006"
    assert job["duration_s"] > 0


def test_one_job_at_a_time_then_queue(studio):
    first = studio.submit(spec(steps=400))
    second = studio.submit(spec(steps=3))
    studio.start_manager()
    wait_for(lambda: studio.job(first)["step"] >= 1)
    assert studio.job(second)["status"] == "queued"
    studio.cancel(first)
    wait_for(lambda: studio.job(second)["status"] == "completed")


def test_cancel_mid_run_leaves_a_checkpoint_and_resume_finishes(studio):
    job_id = studio.submit(spec(steps=400, checkpoint_every=1000))
    studio.start_manager()
    wait_for(lambda: studio.job(job_id)["step"] >= 3)
    assert studio.cancel(job_id) == "stopping"
    job = wait_for(lambda: (j := studio.job(job_id))["status"] in TERMINAL and j)
    assert job["status"] == "cancelled"
    assert 3 <= job["step"] < 400
    assert job["checkpoints"][-1]["step"] == job["step"]
    studio.resume(job_id, steps=job["step"] + 4)
    job = wait_for(lambda: (j := studio.job(job_id))["status"] in TERMINAL and j)
    assert job["status"] == "completed" and job["step"] == job["total_steps"]


def test_kill_9_then_recover_then_resume_from_checkpoint(studio):
    job_id = studio.submit(spec(steps=30, checkpoint_every=5))
    manager = studio.start_manager()
    wait_for(lambda: studio.job(job_id)["step"] >= 7)
    manager.stop()  # as if the web process died too
    studio.manager = None
    pid = studio.job(job_id)["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or _zombie(pid))
    assert recover_interrupted(studio.store) == [job_id]
    job = studio.job(job_id)
    assert job["status"] == "interrupted" and "Resume" in job["error"]
    saved_step = job["checkpoints"][-1]["step"]
    assert saved_step >= 5 and job["step"] == saved_step  # brought back to its checkpoint
    last_point_before = max(point_ids(studio, job_id))

    studio.resume(job_id)
    studio.start_manager()
    job = wait_for(lambda: (j := studio.job(job_id))["status"] in TERMINAL and j)
    assert job["status"] == "completed" and job["step"] == 30
    # Only the folders kept on disk are listed (checkpoints.KEEP newest).
    assert [c["step"] for c in job["checkpoints"]] == [25, 30]
    # It continued from the checkpoint: the points up to it are the first attempt's.
    ids = point_ids(studio, job_id)
    assert all((point <= last_point_before) == (step <= saved_step) for point, step in ids.items())
    loss_steps = [p["step"] for p in studio.metrics(job_id) if p["name"] == "loss"]
    assert loss_steps == list(range(1, 31))


def point_ids(studio, job_id):
    from sqlalchemy import select

    from storage.models import MetricPoint

    with studio.store.read() as s:
        return dict(
            s.execute(
                select(MetricPoint.id, MetricPoint.step).where(MetricPoint.job_id == job_id)
            ).all()
        )


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] == "Z"
    except OSError:
        return True


def test_injected_nan_fails_naming_the_step(studio, monkeypatch):
    monkeypatch.setenv("PRETEXT_FAULT", "nan@4")
    job_id = studio.submit(spec(steps=10, checkpoint_every=2))
    studio.start_manager()
    job = wait_for(lambda: (j := studio.job(job_id))["status"] in TERMINAL and j)
    assert job["status"] == "failed"
    assert "step 4" in job["error"]
    assert max(c["step"] for c in job["checkpoints"]) <= 2  # nothing saved after the NaN
    assert max(p["step"] for p in studio.metrics(job_id)) <= 3


@pytest.mark.parametrize(
    "bad,error,message",
    [
        (dict(method="simclrr"), SpecError, "unknown method 'simclrr'"),
        (dict(dataset="cifar99"), DatasetError, "cifar99"),
        (dict(params={"steps": 0}), SpecError, "steps must be at least 1"),
        (dict(params={"batch_size": 0}), SpecError, "batch_size must be at least"),
        (dict(params={"batch_size": 100000}), SpecError, "larger than the"),
        (dict(params={"lr": -1}), SpecError, "lr must be greater than 0"),
        (dict(params={"lr": "abc"}), SpecError, "lr must be a number"),
        (dict(params={"colour": 1}), SpecError, "unknown setting"),
    ],
)
def test_bad_specs_write_no_row(studio, bad, error, message):
    with pytest.raises(error, match=message):
        studio.submit({**spec(), **bad})
    assert studio.jobs() == []


def test_recovery_leaves_live_workers_alone(studio):
    job_id = studio.store.create_job(
        method="simclr",
        dataset="digits",
        spec={},
        config={},
        status="running",
        pid=os.getpid(),
        host=os.uname()[1],
    )
    assert recover_interrupted(studio.store) == []
    assert studio.job(job_id)["status"] == "running"


def test_the_jobs_rate_is_the_mean_of_recent_steps_not_the_last_one(studio, monkeypatch):
    from engine import worker
    from engine.worker import StoreSink

    monkeypatch.setattr(worker, "FLUSH_S", 3600.0)  # flushed by hand only
    job_id = studio.store.create_job(
        method="clip", dataset="shapes", spec={}, config={}, status="running"
    )
    sink = StoreSink(studio.store, job_id)
    for step in range(1, 200):  # 199 steps at 1000 images/s, then one that also evaluates
        sink.metrics(step, {"loss": 1.0, "images_per_second": 1000.0})
    sink.metrics(200, {"loss": 1.0, "images_per_second": 40.0})
    sink.flush()
    # The last RATE_STEPS = 100 steps, each a batch, in 99/1000 + 1/40 s of a batch's images:
    # 806 a second, where the last step alone would say 40 (an ETA 20 times too long).
    assert worker.RATE_STEPS == 100
    assert studio.job(job_id)["images_per_second"] == pytest.approx(100 / (0.099 + 0.025))
    sink.metrics(201, {"loss": 1.0})  # a step without a rate leaves the window as it is
    sink.flush()
    assert studio.job(job_id)["images_per_second"] == pytest.approx(100 / (0.099 + 0.025))
    for step in range(202, 302):
        sink.metrics(step, {"loss": 1.0, "images_per_second": 500.0})
    sink.flush()  # the slow step has left the window
    assert studio.job(job_id)["images_per_second"] == pytest.approx(500.0)
