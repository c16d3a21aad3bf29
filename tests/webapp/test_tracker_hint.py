"""The Jobs tab says where a job's tracker shows its curves."""

from webapp.jobs_tab import tracker_hint


def test_tensorboard_hint_names_the_run_folder():
    job = {"id": 3, "run_dir": "/h/runs/3", "config": {"report_to": "tensorboard"}}
    assert "`tensorboard --logdir /h/runs/3/tensorboard`" in tracker_hint(job)


def test_other_trackers_name_the_project_and_run():
    job = {"id": 3, "run_dir": "/h/runs/3", "config": {"report_to": "wandb"}}
    assert "wandb: project pretext-studio, run job-3" in tracker_hint(job)


def test_no_tracker_no_hint_and_old_configs_too():
    assert tracker_hint({"id": 1, "run_dir": "r", "config": {"report_to": "none"}}) == ""
    assert tracker_hint({"id": 1, "run_dir": "r", "config": {}}) == ""
    assert tracker_hint({"id": 1, "run_dir": "r", "config": None}) == ""
