"""Housekeeping around jobs: stale checkpoint leftovers, checkpoint rows that follow their
folders, a stop that keeps its checkpoint, killed jobs brought back to it, the PRETEXT_MAX_JOBS
slots shared by the app and CLI processes, and diverging jobs that fail naming the step."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import accelerate
import pytest
import torch

from engine import checkpoints, trainer
from engine.__main__ import main
from engine.api import Studio
from engine.config import TrainSpec, build_config
from engine.jobs import JobManager, recover_interrupted
from engine.registry import get_method
from storage.db import Store, utcnow
from tests.conftest import TINY


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny runs; two threads on a busy 2-core machine crawl
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def studio(tmp_path):
    s = Studio(tmp_path / "home")
    yield s
    s.shutdown()


def spec(**params):
    return {"method": "simclr", "dataset": "digits", "seed": 0, "params": dict(TINY, **params)}


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def test_stale_leftovers_swept_and_rows_follow_rotated_folders(studio):
    root = checkpoints.checkpoint_dir(studio.home.run_dir(1))  # the first job's run folder
    (root / ".tmp-step_0000003-424242").mkdir(parents=True)  # a writer killed mid-save
    (root / ".tmp-step_0000003-424242" / "model.safetensors").write_bytes(b"half")
    (root / ".LATEST-424242").write_text("step_0000003")
    summary = studio.run_foreground(spec(steps=7, checkpoint_every=2))
    assert summary["status"] == "completed"
    assert sorted(p.name for p in root.iterdir()) == ["LATEST", "step_0000006", "step_0000007"]
    rows = studio.job(1)["checkpoints"]  # 2 and 4 were rotated away (KEEP = 2), rows too
    assert [r["step"] for r in rows] == [6, 7] and checkpoints.KEEP == 2
    assert all(os.path.isdir(r["dir"]) for r in rows)


def test_a_stop_saves_once_at_the_step_it_stopped_at(tmp_path):
    saved = []

    class Sink:
        def started(self, *_):
            pass

        def metrics(self, *_):
            pass

        def flush(self):
            pass

        def checkpoint(self, step, path):
            saved.append(step)

    asked = []

    def stop_after_four_steps():
        asked.append(True)  # asked before each step
        return len(asked) > 4

    config = build_config(
        get_method("simclr").Config, "quick", dict(TINY, steps=10, checkpoint_every=2)
    )
    trainer.run_job(
        TrainSpec("simclr", "digits", params={}), config, tmp_path, Sink(), stop_after_four_steps
    )
    assert saved == [2, 4]  # stopped after step 4: its checkpoint, not a second one
    assert checkpoints.step_of(checkpoints.latest(tmp_path)) == 4


def _fake_checkpoint(run_dir, step):
    folder = checkpoints.checkpoint_dir(run_dir) / f"step_{step:07d}"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"")
    (folder.parent / "LATEST").write_text(folder.name)


def _killed_job(studio, pid, step=13, saved=10):
    job_id = studio.store.create_job(
        method="simclr",
        dataset="digits",
        spec={},
        config={},
        status="running",
        pid=pid,
        host=socket.gethostname(),
        started_at=utcnow(),
        step=step,
        total_steps=50,
    )
    run_dir = studio.home.run_dir(job_id)
    studio.store.update_job(job_id, run_dir=str(run_dir), last_loss=float(step))
    studio.store.add_metrics(job_id, [(s, "loss", float(s)) for s in range(1, step + 1)])
    _fake_checkpoint(run_dir, saved)
    return job_id


def test_a_killed_job_is_brought_back_to_its_newest_checkpoint(studio):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    job_id = _killed_job(studio, dead.pid)
    assert recover_interrupted(studio.store) == [job_id]
    job = studio.job(job_id)
    assert (job["status"], job["step"], job["last_loss"]) == ("interrupted", 10, 10.0)
    assert max(p["step"] for p in studio.metrics(job_id)) == 10
    # Killed between writing the checkpoint's folder and its row: the job lists it now.
    assert [c["step"] for c in job["checkpoints"]] == [10]
    assert recover_interrupted(studio.store) == [] and len(studio.job(job_id)["checkpoints"]) == 1

    # The same when the manager reaps its own worker killed by kill -9 (or exit@N: 137).
    manager = JobManager(studio.home)
    proc = subprocess.Popen([sys.executable, "-c", "import os; os._exit(137)"])
    job_id = _killed_job(studio, proc.pid, step=27, saved=20)
    manager._procs[job_id] = proc
    proc.wait()
    manager._reap()
    job = studio.job(job_id)
    assert (job["status"], job["step"], job["last_loss"]) == ("interrupted", 20, 20.0)
    assert max(p["step"] for p in studio.metrics(job_id)) == 20


def test_a_resumed_attempt_starts_from_its_checkpoints_loss(studio):
    """Stop, Resume, Stop before a new step: the row keeps the loss logged at the checkpoint
    (a flush with no new point used to write an empty last loss)."""
    from engine.worker import StoreSink

    job_id = _killed_job(studio, None, step=27, saved=20)
    sink = StoreSink(studio.store, job_id, run_dir=studio.home.run_dir(job_id))
    sink.started(20, 40)
    sink.flush()
    job = studio.job(job_id)
    assert (job["step"], job["last_loss"]) == (20, 20.0)
    assert max(p["step"] for p in studio.metrics(job_id)) == 20


def test_a_stopping_worker_that_still_beats_is_not_killed(studio):
    # Ignores SIGTERM, like a worker busy writing its last checkpoint under load.
    busy = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
        ]
    )
    try:
        job_id = studio.store.create_job(
            method="simclr",
            dataset="digits",
            spec={},
            config={},
            status="running",
            pid=busy.pid,
            host=socket.gethostname(),
            cancel_requested=True,
            heartbeat_at=utcnow(),
        )
        manager = JobManager(studio.home, grace_s=0.1)
        for _ in range(4):  # well past SIGTERM (grace_s) and SIGKILL (2 grace_s)
            studio.store.update_job(job_id, heartbeat_at=utcnow())  # it still beats
            manager._escalate_cancels()
            time.sleep(0.1)
        assert busy.poll() is None
        time.sleep(0.2)  # now it goes quiet for longer than grace_s: hung, killed
        manager._escalate_cancels()
        assert busy.wait(timeout=10) == -signal.SIGKILL
    finally:
        busy.kill()


def test_claim_slot_is_atomic_across_connections(tmp_path):
    path = tmp_path / "pretext.db"
    ids = [
        Store.open(path).create_job(method="simclr", dataset="digits", spec={}, config={})
        for _ in range(8)
    ]
    stores = [Store(path) for _ in ids]  # a connection each, as separate processes have
    barrier, claimed = threading.Barrier(len(ids)), []

    def claim(store, job_id):
        barrier.wait()
        if store.claim_slot(job_id, 3, pid=os.getpid())[0]:
            claimed.append(job_id)

    threads = [threading.Thread(target=claim, args=pair) for pair in zip(stores, ids)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 3
    assert len(Store.open(path).list_jobs(("running",))) == 3
    # A job no longer queued is not claimed again, whatever the limit.
    assert Store.open(path).claim_slot(claimed[0], None) == (False, sorted(claimed))


def test_max_jobs_limits_the_manager_and_the_cli_waits_unless_now(studio, monkeypatch, capsys):
    home = str(studio.home.root)
    blocker = studio.store.create_job(
        method="mae",
        dataset="shapes",
        spec={},
        config={},
        status="running",
        pid=os.getpid(),
        host=socket.gethostname(),
        step=3,
        total_steps=9,
    )
    queued = studio.submit(spec(steps=2))
    spawned = []
    monkeypatch.setattr(JobManager, "_spawn", lambda self, job: spawned.append(job.id))
    monkeypatch.setenv("PRETEXT_MAX_JOBS", "1")
    JobManager(studio.home).tick()
    assert spawned == [] and studio.job(queued)["status"] == "queued"

    args = [
        "train",
        "--method",
        "simclr",
        "--dataset",
        "digits",
        "--steps",
        "2",
        "--batch-size",
        "16",
        "--set",
        "image_size=16",
        "--set",
        "precision=fp32",
        "--home",
        home,
    ]
    codes = []
    cli = threading.Thread(target=lambda: codes.append(main(args)))
    cli.start()
    err = wait_for(lambda: (e := capsys.readouterr().err) and "waiting" in e and e)
    assert "waiting for a free slot (PRETEXT_MAX_JOBS=1) behind job 1 (mae on shapes" in err
    waiting = max(j["id"] for j in studio.jobs())
    JobManager(studio.home, max_running=5).tick()  # slots, but the CLI's job is its own
    assert spawned == [queued] and studio.job(waiting)["status"] == "queued"
    studio.store.update_job(queued, status="completed")
    studio.store.update_job(blocker, status="completed")
    cli.join(timeout=60)
    assert codes == [0] and studio.job(waiting)["status"] == "completed"

    studio.store.update_job(blocker, status="running")
    assert main(args + ["--now"]) == 0  # beside the running blocker, at once
    assert "waiting" not in capsys.readouterr().err
    monkeypatch.setenv("PRETEXT_MAX_JOBS", "two")
    count = len(studio.jobs())
    assert main(args) == 2 and "PRETEXT_MAX_JOBS must be" in capsys.readouterr().err
    assert len(studio.jobs()) == count  # refused before a job was stored


def test_weights_past_float32_fail_the_job_naming_the_step(studio):
    # SimCLR at lr 1e6 unclipped: its loss stays finite (normalised embeddings), but batch
    # norm variances reach 1e22 by step 2 (1e27 by step 30, where the job used to complete).
    summary = studio.run_foreground(spec(steps=6, lr=1e6, grad_clip=0, checkpoint_every=2))
    assert summary["status"] == "failed" and summary["steps"] == 1
    assert "weights became too large" in summary["error"]
    assert "by step 2; lower the learning rate (now 1e+06)" in summary["error"]
    assert studio.job(summary["job_id"])["checkpoints"] == []  # none after the bad step
    assert {p["step"] for p in studio.metrics(summary["job_id"])} == {1}


def test_a_non_finite_gradient_norm_fails_naming_the_step(tmp_path, monkeypatch):
    backward = accelerate.Accelerator.backward
    calls = []

    def poisoned(self, loss, **kwargs):
        backward(self, loss, **kwargs)
        calls.append(loss)
        if len(calls) == 3:
            next(
                p for p in self.unwrap_model(self._models[0]).parameters() if p.grad is not None
            ).grad[0] = float("inf")

    monkeypatch.setattr(accelerate.Accelerator, "backward", poisoned)
    config = build_config(
        get_method("simclr").Config, "quick", dict(TINY, steps=6, checkpoint_every=2)
    )
    with pytest.raises(
        Exception, match="gradient norm became inf at step 3; lower the learning rate"
    ) as err:
        trainer.run_job(
            TrainSpec("simclr", "digits", params={}), config, tmp_path, StubSink(), lambda: False
        )
    assert isinstance(err.value, trainer.Diverged) and err.value.step == 3
    assert checkpoints.step_of(checkpoints.latest(tmp_path)) == 2  # nothing saved after


class StubSink:
    def started(self, *_):
        pass

    def metrics(self, *_):
        pass

    def flush(self):
        pass

    def checkpoint(self, *_):
        pass
