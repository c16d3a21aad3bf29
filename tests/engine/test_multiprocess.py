"""Jobs on two processes (two gloo ranks on CPU under `accelerate launch`), through the real
JobManager, worker processes and SQLite file: they complete, stop, resume and are evaluated
like one-process jobs, with rank 0 the only writer; a rank that dies fails the job by name
and leaves no process behind."""

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import psutil
import pytest

from engine import checkpoints, hardware
from engine.api import Studio
from engine.jobs import _log_text, kill_tree
from tests.conftest import ROOT, TINY
from tests.engine.test_lifecycle import TERMINAL, wait_for

pytestmark = pytest.mark.skipif(
    hardware.detect()["max_processes"] < 2, reason="needs two cores (or GPUs) for two ranks"
)


def spec(**params):
    return {"method": "simclr", "dataset": "digits", "params": {**TINY, "processes": 2, **params}}


def ended(studio, job_id):
    return wait_for(lambda: (j := studio.job(job_id))["status"] in TERMINAL and j, timeout=240)


def points_per_step(studio, job_id):
    return Counter((p["step"], p["name"]) for p in studio.metrics(job_id))


@pytest.fixture
def studio(tmp_path):
    s = Studio(tmp_path / "home")
    yield s
    s.shutdown()
    for job in s.jobs():  # never leave a launcher or a rank behind
        if job["status"] == "running" and job["pid"] not in (None, os.getpid()):
            kill_tree(job["pid"])


def test_two_processes_complete_with_one_point_per_step_and_are_evaluated(studio):
    two = studio.submit(dict(spec(steps=6), evals=["knn"]))
    one = studio.submit(dict(spec(steps=6, processes=1), evals=["knn"]))
    studio.start_manager()
    job = ended(studio, two)
    assert job["status"] == "completed", job["error"]
    assert job["step"] == 6 and job["config"]["processes"] == 2
    counts = points_per_step(studio, two)
    assert {step for step, name in counts if name == "loss"} == set(range(1, 7))
    assert set(counts.values()) == {1}  # rank 1 wrote nothing
    assert checkpoints.latest(studio.home.run_dir(two)).name == "step_0000006"
    assert ended(studio, one)["status"] == "completed"
    (evaluated,) = studio.evaluations(two)
    (reference,) = studio.evaluations(one)
    assert evaluated["protocol"] == reference["protocol"] == "knn"
    assert evaluated["figures"].keys() == reference["figures"].keys()
    assert 0.0 <= evaluated["figures"]["knn_top1"] <= 1.0


def test_two_processes_stop_then_resume(studio):
    job_id = studio.submit(spec(steps=400, checkpoint_every=1000))
    studio.start_manager()
    wait_for(lambda: studio.job(job_id)["step"] >= 3, timeout=240)
    launcher = psutil.Process(studio.job(job_id)["pid"])
    assert len(launcher.children()) == 2  # the row names the launcher of both ranks
    assert studio.cancel(job_id) == "stopping"
    job = ended(studio, job_id)
    assert job["status"] == "cancelled", job["error"]
    assert 3 <= job["step"] < 400 and job["checkpoints"][-1]["step"] == job["step"]
    studio.resume(job_id, steps=job["step"] + 3)
    job = ended(studio, job_id)
    assert job["status"] == "completed", job["error"]
    assert job["step"] == job["total_steps"]
    loss_steps = [p["step"] for p in studio.metrics(job_id) if p["name"] == "loss"]
    assert loss_steps == list(range(1, job["step"] + 1))


def test_a_killed_rank_fails_the_job_by_name_and_leaves_no_process(studio):
    job_id = studio.submit(spec(steps=400, checkpoint_every=1000))
    studio.start_manager()
    wait_for(lambda: studio.job(job_id)["step"] >= 2, timeout=240)
    launcher = psutil.Process(studio.job(job_id)["pid"])
    ranks = {int(p.environ()["RANK"]): p for p in launcher.children()}
    family = [launcher, *ranks.values()]
    os.kill(ranks[1].pid, signal.SIGKILL)
    job = ended(studio, job_id)
    assert job["status"] == "failed"
    assert "rank 1 of 2 was killed (SIGKILL)" in job["error"]
    wait_for(lambda: not any(_alive(p) for p in family), timeout=60)


def test_cli_trains_on_two_processes_through_the_launcher(tmp_path, capsys):
    from engine.__main__ import main

    home = str(tmp_path / "home")
    settings = ["--set", "image_size=16", "--set", "precision=fp32", "--set", "warmup_steps=1"]
    args = ["train", "--home", home, "--method", "simclr", "--dataset", "digits"]
    args += ["--steps", "4", "--batch-size", "16", "--processes", "2", *settings, "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "completed" and summary["steps"] == 4, summary["error"]
    studio = Studio(tmp_path / "home")
    assert studio.job(summary["job_id"])["spec"]["params"]["processes"] == 2
    assert set(points_per_step(studio, summary["job_id"]).values()) == {1}


def test_ctrl_c_stops_a_cli_job_on_two_processes_and_resume_finishes_it(tmp_path, capsys):
    from engine.__main__ import main

    home = tmp_path / "home"
    args = ["train", "--home", str(home), "--method", "simclr", "--dataset", "digits"]
    args += ["--steps", "60", "--batch-size", "16", "--processes", "2", "--json"]
    args += ["--set", "image_size=16", "--set", "precision=fp32", "--set", "checkpoint_every=1000"]
    cli = subprocess.Popen(
        [sys.executable, "-m", "engine", *args], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        studio = Studio(home)
        wait_for(lambda: studio.jobs() and studio.jobs()[0]["step"] >= 2, timeout=240)
        cli.send_signal(signal.SIGINT)
        out, _ = cli.communicate(timeout=120)
    finally:
        if cli.poll() is None:
            kill_tree(cli.pid)
    job_id = json.loads(out.strip().splitlines()[-1])["job_id"]
    job = studio.job(job_id)
    assert job["status"] == "cancelled", job["error"]
    assert 2 <= job["step"] < 60 and job["checkpoints"][-1]["step"] == job["step"]
    # `resume` keeps the processes (they are in the stored spec) and runs them the same way.
    code = main(["resume", str(job_id), "--home", str(home), "--json"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # Seen once in CI: the resumed job failed with "rank 1 of 2 was killed (SIGSEGV)". The
    # ranks' log says where, should it happen again.
    assert code == 0 and summary["status"] == "completed", log_tail(summary)
    assert summary["steps"] == 60, summary["error"]
    assert set(points_per_step(studio, job_id).values()) == {1}
    loss_steps = [p["step"] for p in studio.metrics(job_id) if p["name"] == "loss"]
    assert loss_steps == list(range(1, 61))


def log_tail(summary: dict) -> str:
    """A job's error and the end of its latest start's worker.log (both ranks and the
    launcher write to it)."""
    text = _log_text(Path(summary["run_dir"]), summary["job_id"], limit=6000)
    return f"{summary.get('error')}\n--- worker.log ---\n{text or '(none)'}"


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
