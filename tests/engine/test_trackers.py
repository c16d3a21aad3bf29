"""report_to: every stored metric point also reaches the tracker; a missing package is refused."""

import importlib.util

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from engine import trackers
from engine.api import Studio
from engine.errors import SpecError
from tests.conftest import TINY


def spec(**params):
    return {"method": "simclr", "dataset": "digits", "params": dict(TINY, **params)}


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(folder))
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def test_tensorboard_gets_every_stored_point(tmp_path):
    studio = Studio(tmp_path / "home")
    summary = studio.run_foreground(spec(steps=4, report_to="tensorboard"))
    job_id = summary["job_id"]
    assert studio.job(job_id)["status"] == "completed"
    folder = studio.home.run_dir(job_id) / "tensorboard"
    assert list(folder.glob("events.out.tfevents.*"))
    logged = scalars(folder)
    stored = [(p["step"], p["value"]) for p in studio.metrics(job_id) if p["name"] == "loss"]
    assert [step for step, _ in logged["loss"]] == [1, 2, 3, 4]
    assert [v for _, v in logged["loss"]] == pytest.approx([v for _, v in stored], rel=1e-6)
    assert "lr" in logged


def test_resumed_job_drops_the_points_after_its_checkpoint(tmp_path, monkeypatch):
    """TensorBoard's purge_step: a resumed job's curve is the store's, not two overlapping."""
    studio = Studio(tmp_path / "home")
    monkeypatch.setenv("PRETEXT_FAULT", "nan@6")  # fails at 6, its checkpoint is at 4
    first = studio.run_foreground(spec(steps=8, checkpoint_every=4, report_to="tensorboard"))
    job_id = first["job_id"]
    folder = studio.home.run_dir(job_id) / "tensorboard"
    assert studio.job(job_id)["status"] == "failed"
    assert [step for step, _ in scalars(folder)["loss"]] == [1, 2, 3, 4, 5]
    monkeypatch.delenv("PRETEXT_FAULT")
    studio.resume_foreground(job_id)
    assert studio.job(job_id)["status"] == "completed"
    logged = scalars(folder)["loss"]
    assert [step for step, _ in logged] == list(range(1, 9))
    stored = [p["value"] for p in studio.metrics(job_id) if p["name"] == "loss"]
    assert [v for _, v in logged] == pytest.approx(stored, rel=1e-6)


def test_no_tracker_writes_nothing(tmp_path):
    studio = Studio(tmp_path / "home")
    job_id = studio.run_foreground(spec(steps=2))["job_id"]
    assert not (studio.home.run_dir(job_id) / "tensorboard").exists()


@pytest.mark.parametrize("report_to", ["trackio", "wandb", "mlflow"])
def test_a_tracker_not_installed_is_refused_before_a_row(tmp_path, report_to):
    if importlib.util.find_spec(report_to) is not None:
        pytest.skip(f"{report_to} is installed here")
    studio = Studio(tmp_path / "home")
    with pytest.raises(SpecError, match=f"pip install {report_to}"):
        studio.submit(spec(report_to=report_to))
    assert studio.jobs() == []


def test_unknown_tracker_names_the_choices(tmp_path):
    with pytest.raises(SpecError, match="report_to must be one of"):
        Studio(tmp_path / "home").submit(spec(report_to="comet"))


def test_tracker_failure_turns_it_off_not_the_job():
    class Broken:
        def log(self, values, step=None):
            raise OSError("disk full")

        def finish(self):
            pass

    tracker = trackers.Tracker(Broken(), "tensorboard")
    tracker.log([(1, "loss", 1.0)])  # logged, not raised
    assert tracker.backend is None
    tracker.log([(2, "loss", 0.5)])  # a no-op now


def test_available_always_offers_none_and_tensorboard_here():
    assert trackers.available()[:2] == ["none", "tensorboard"]
