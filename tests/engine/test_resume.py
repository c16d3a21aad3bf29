"""Bitwise resume: a job killed at any step and resumed writes the very loss points an
uninterrupted run writes (CPU, fp32 and bf16), and the CLI verbs that go with it."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from engine import checkpoints, trainer
from engine.__main__ import main
from engine.config import TrainSpec, build_config
from engine.data.datasets import dataset_info
from engine.data.presets import resolve_augmentation
from engine.registry import get_method
from tests.conftest import ROOT, TINY

STEPS, EVERY, KILL_AT = 30, 10, 27
# On digits (1437 training images) with batch 16 an epoch is 89 steps: the kill at step 27 and
# the checkpoint at step 20 it resumes from both fall inside the first epoch, where the old
# loop lost the rest of the epoch's order.
STEPS_PER_EPOCH = dataset_info("digits")["num_train"] // TINY["batch_size"]
assert KILL_AT % STEPS_PER_EPOCH and (KILL_AT // EVERY * EVERY) % STEPS_PER_EPOCH
# MoCo with a queue that wraps every 4 steps, so its contents and pointer must both survive.
PARAMS = {"simclr": {}, "moco": {"queue_size": 64, "bn_splits": 2}}


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: these runs are tiny, and on a busy 2-core machine two threads each
    ran ~20x slower than one."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class StoreLikeSink:
    """Keeps points as the job store does: a resumed attempt drops those after its start."""

    def __init__(self, kill_at=None):
        self.points, self.saved, self.kill_at = {}, [], kill_at

    def started(self, first_step, total_steps):
        self.points = {s: v for s, v in self.points.items() if s <= first_step}

    def metrics(self, step, values):
        self.points[step] = {k: v for k, v in values.items() if k != "images_per_second"}
        if step == self.kill_at:  # the process dies right after this step
            self.kill_at = None
            raise Killed

    def checkpoint(self, step, path):
        self.saved.append(step)

    def flush(self):
        pass


class Killed(Exception):
    pass


def spec_and_config(method, precision):
    spec = TrainSpec(
        method,
        "digits",
        seed=3,
        params=dict(
            TINY, steps=STEPS, checkpoint_every=EVERY, precision=precision, **PARAMS[method]
        ),
    )
    config = build_config(get_method(method).Config, "quick", spec.params)
    return spec, resolve_augmentation(config, "digits")  # as the worker does


def run(method, precision, run_dir, sink, **params):
    spec, config = spec_and_config(method, precision)
    config = dataclasses.replace(config, **params)
    return trainer.run_job(spec, config, run_dir, sink, should_stop=lambda: False)


@pytest.mark.parametrize(
    "method,precision", [("simclr", "fp32"), ("simclr", "bf16"), ("moco", "fp32")]
)
def test_killed_mid_epoch_and_resumed_equals_uninterrupted(method, precision, tmp_path):
    reference = StoreLikeSink()
    assert run(method, precision, tmp_path / "whole", reference).step == STEPS

    resumed = StoreLikeSink(kill_at=KILL_AT)
    with pytest.raises(Killed):
        run(method, precision, tmp_path / "killed", resumed)
    assert max(resumed.points) == KILL_AT and resumed.saved == [10, 20]
    assert run(method, precision, tmp_path / "killed", resumed).step == STEPS
    assert resumed.saved == [10, 20, 30]

    assert sorted(resumed.points) == list(range(1, STEPS + 1))
    # Bitwise: every logged value (loss, lr, the method's own logs) compared with ==.
    for step in range(1, STEPS + 1):
        assert resumed.points[step] == reference.points[step], step


def test_killed_by_the_fault_hook_through_the_cli_then_resumed(tmp_path, capsys):
    """Real processes: `train` with PRETEXT_FAULT=exit@27 dies as kill -9 would (status 137,
    its row left running), `resume` continues it from step 20 in the foreground, and `metrics`
    shows the loss values of an uninterrupted MoCo run (bf16) to the last bit."""
    home = tmp_path / "home"
    args = [
        "--method",
        "moco",
        "--dataset",
        "digits",
        "--seed",
        "3",
        "--steps",
        str(STEPS),
        "--batch-size",
        "16",
        "--set",
        "image_size=16",
        "--set",
        "warmup_steps=2",
        "--set",
        f"checkpoint_every={EVERY}",
        "--set",
        "precision=bf16",
        "--set",
        "queue_size=64",
        "--set",
        "bn_splits=2",
    ]
    killed = cli("train", *args, "--json", home=home, PRETEXT_FAULT=f"exit@{KILL_AT}")
    assert killed.returncode == 137, killed.stderr
    out = cli("resume", "1", "--json", home=home)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.splitlines()[-1])
    assert (summary["job_id"], summary["status"], summary["steps"]) == (1, "completed", STEPS)

    reference = StoreLikeSink()
    run("moco", "bf16", tmp_path / "whole", reference)
    assert main(["metrics", "1", "--name", "loss", "--json", "--home", str(home)]) == 0
    points = json.loads(capsys.readouterr().out)  # json round-trips floats exactly
    assert [(p["step"], p["value"]) for p in points] == [
        (step, reference.points[step]["loss"]) for step in range(1, STEPS + 1)
    ]
    assert summary["final_loss"] == reference.points[STEPS]["loss"]

    assert main(["metrics", "1", "--name", "loss", "--home", str(home)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["step", "name", "value"] and len(lines) == STEPS + 1
    assert lines[-1].split() == [str(STEPS), "loss", repr(points[-1]["value"])]
    assert main(["resume", "1", "--home", str(home)]) == 2  # completed: not resumable
    assert "job 1 is completed" in capsys.readouterr().err
    assert main(["metrics", "7", "--home", str(home)]) == 2
    assert "no job 7" in capsys.readouterr().err


def cli(*args, home, **env):
    return subprocess.run(
        [sys.executable, "-m", "engine", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
    )


def test_a_weights_only_load_leaves_the_random_state_alone(tmp_path):
    import torch

    run("simclr", "fp32", tmp_path, StoreLikeSink(), steps=2)
    spec, config = spec_and_config("simclr", "fp32")
    cls = get_method("simclr")
    method = cls(config, cls.load_data("digits", config).info)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    assert checkpoints.load(checkpoints.latest(tmp_path), method) == 2
    assert torch.equal(torch.get_rng_state(), before)
