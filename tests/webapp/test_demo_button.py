"""The Train tab's demo-pack button and the hardware line beside it."""

from engine.api import Studio
from webapp.access import Access, GuardedStudio
from webapp.train_tab import TrainTab, demo_text


def test_the_line_names_this_machine_the_seven_runs_and_the_time(tmp_path):
    studio = Studio(tmp_path / "home")
    text = demo_text(studio.demo_plan(), studio.hardware_line())
    assert studio.hardware_line() in text and "CPU cores" in text
    for method in ("bert", "gpt", "t5", "clip", "mae", "dino", "simclr"):
        assert method in text
    assert f"about {round(studio.demo_plan()['expected_s'] / 60)} minutes" in text
    assert studio.demo_plan()["note"] in text  # how this machine compares (bf16, cores, GPU)


def test_the_button_queues_the_pack_and_says_which_jobs(tmp_path):
    studio = Studio(tmp_path / "home")
    note = TrainTab(studio).queue_demo()
    ids = sorted(j["id"] for j in studio.jobs())
    assert len(ids) == 7 and f"#{ids[0]} to #{ids[-1]}" in note and "ps-ok" in note


def test_a_viewer_gets_a_message_and_no_job(tmp_path):
    studio = Studio(tmp_path / "home")
    guarded = GuardedStudio(studio, Access("viewer"), request=lambda: None)
    note = TrainTab(guarded).queue_demo()
    assert "viewer" in note and studio.jobs() == []
