"""The demo pack: seven showcase runs with their evaluations and an expected total time."""

import json

import pytest

from engine import demo
from engine.__main__ import main
from engine.api import Studio

SEVEN = ["bert", "gpt", "t5", "clip", "mae", "dinov2", "simclr"]


@pytest.fixture
def studio(tmp_path):
    s = Studio(tmp_path / "home")
    yield s
    s.shutdown()


def test_the_plan_lists_seven_quick_jobs_and_adds_up_their_times(studio):
    plan = studio.demo_plan()
    assert [job["method"] for job in plan["jobs"]] == SEVEN
    assert {job["preset"] for job in plan["jobs"]} == {"quick"}
    assert all(job["job_id"] is None and job["expected_s"] > 0 for job in plan["jobs"])
    assert plan["expected_s"] == sum(job["expected_s"] for job in plan["jobs"])
    by_method = {job["method"]: job for job in plan["jobs"]}
    # The image methods with image features are evaluated; text and CLIP are not.
    assert by_method["simclr"]["evals"] == ["knn", "linear"]
    assert by_method["dinov2"]["evals"] == ["knn", "linear"]
    # Each on its method's default dataset: MAE and DINOv2 on scenes, the attention and
    # reconstruction lenses' example pictures with masks.
    assert {job["method"]: job["dataset"] for job in plan["jobs"]} == {
        "bert": "captions",
        "gpt": "captions",
        "t5": "captions",
        "clip": "shapes",
        "mae": "scenes",
        "dinov2": "scenes",
        "simclr": "shapes",
    }
    assert by_method["bert"]["evals"] == [] and by_method["clip"]["evals"] == []
    # Steps x the measured seconds per step (+ evaluations): SimCLR's 500 quick steps at
    # 120 s / 523 steps is 115 s of training.
    simclr = by_method["simclr"]
    training = simclr["steps"] * demo.MEASURED["simclr"].seconds_per_step
    assert simclr["expected_s"] == round(training + demo.EVAL_SECONDS["convnet"])
    assert all("bench/RESULTS" in job["source"] for job in plan["jobs"])
    assert "minutes" in plan["note"] and plan["hardware"]
    assert studio.jobs() == []  # a plan writes nothing


def test_the_note_says_how_this_machine_compares():
    cpu = {"cpu_cores": 2, "cuda_devices": []}
    assert "this machine's 2 CPU cores" in demo.hardware_note(dict(cpu, fast_bf16=True), 1260)
    emulated = demo.hardware_note(dict(cpu, fast_bf16=False), 1260)
    assert "emulates bf16" in emulated and "several times longer" in emulated
    gpu = {"cpu_cores": 16, "cuda_devices": [{"index": 0, "name": "H100", "memory_gb": 80}]}
    assert "upper bound" in demo.hardware_note(gpu, 1260)
    assert "8 cores" in demo.hardware_note({"cpu_cores": 8, "cuda_devices": []}, 600)


def test_the_pack_queues_the_seven_jobs_with_their_evaluations(studio):
    plan = studio.demo_pack()
    ids = [job["job_id"] for job in plan["jobs"]]
    assert all(isinstance(i, int) for i in ids) and ids == sorted(ids)
    jobs = {j["id"]: j for j in studio.jobs()}
    assert [jobs[i]["method"] for i in ids] == SEVEN
    assert {jobs[i]["status"] for i in ids} == {"queued"}
    simclr = studio.job(ids[-1])
    assert simclr["spec"]["evals"] == ["knn", "linear"] and simclr["preset"] == "quick"


def test_cli_dry_run_prints_the_jobs_and_the_total(tmp_path, capsys):
    assert main(["demo", "--dry-run", "--home", str(tmp_path / "home")]) == 0
    out = capsys.readouterr().out
    for method in SEVEN:
        assert method in out
    assert "total " in out and "minutes" in out
    assert Studio(tmp_path / "home").jobs() == []


def test_cli_no_wait_queues_and_returns(tmp_path, capsys):
    assert main(["demo", "--no-wait", "--json", "--home", str(tmp_path / "home")]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert len(plan["jobs"]) == 7 and all(job["job_id"] for job in plan["jobs"])
    statuses = {j["status"] for j in Studio(tmp_path / "home").jobs()}
    assert statuses == {"queued"}


def test_a_viewer_cannot_queue_the_pack(studio):
    from webapp.access import Access, GuardedStudio, ViewerError

    guarded = GuardedStudio(studio, Access("viewer"), request=lambda: None)
    with pytest.raises(ViewerError):
        guarded.demo_pack()
    assert studio.jobs() == []
    assert len(guarded.demo_plan()["jobs"]) == 7  # looking at the plan stays open


def _run(tmp_path, job_id, status, model_type="vit"):
    """A job dict whose run folder holds a transformers checkpoint of `model_type`."""
    run_dir = tmp_path / "runs" / str(job_id)
    pretrained = run_dir / "checkpoints" / "step_0000001" / "pretrained"
    pretrained.mkdir(parents=True)
    (pretrained / "config.json").write_text(json.dumps({"model_type": model_type}))
    (pretrained.parent / "model.safetensors").write_bytes(b"")
    (run_dir / "checkpoints" / "LATEST").write_text("step_0000001")
    return {
        "id": job_id,
        "status": status,
        "run_dir": str(run_dir),
        "method": "dino",
        "dataset": "shapes",
        "backbone": "vit-tiny",
        "step": 1,
    }


def test_lens_default_is_the_newest_completed_run_of_its_kind(tmp_path):
    """After the demo pack a lens opens on a finished run, not on a newer one still training
    or failed; the Hub suggestions come after the runs (never the default offline)."""
    from engine.inference.attention import ATTENTION
    from engine.inference.models import lens_choices

    jobs = [
        _run(tmp_path, 1, "completed"),
        _run(tmp_path, 2, "completed"),
        _run(tmp_path, 3, "failed"),
        _run(tmp_path, 4, "running"),
        _run(tmp_path, 5, "completed", model_type="bert"),  # another lens's kind
    ]
    values = [c["value"] for c in lens_choices(jobs, ATTENTION)]
    assert values == ["2", "4", "3", "1", "facebook/dino-vits16"]
    # With no completed run, the newest listed run is first.
    values = [c["value"] for c in lens_choices(jobs[2:4], ATTENTION)]
    assert values[:2] == ["4", "3"]


def test_once_a_showcase_run_ends_its_lens_opens_on_it(tmp_path, monkeypatch):
    """End to end with one tiny job (the first of the pack, BERT): queued by demo_pack, run by
    the job manager, then the fill-mask lens lists it first (its default)."""
    import time

    monkeypatch.setattr(demo, "PRESET", "tiny")  # seconds, not the quick preset's minutes
    studio = Studio(tmp_path / "home")
    try:
        first, *rest = [job["job_id"] for job in studio.demo_pack()["jobs"]]
        for job_id in rest:
            assert studio.cancel(job_id) == "cancelled"  # still queued: cancelled at once
        assert studio.lenses.lens_models("fill_mask")[0]["value"] == "bert-base-uncased"
        studio.start_manager()
        deadline = time.monotonic() + 300
        while studio.job(first)["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, "the tiny BERT job did not end in 300 s"
            time.sleep(0.5)
        assert studio.job(first)["status"] == "completed", studio.job(first)["error"]
        choices = [c["value"] for c in studio.lenses.lens_models("fill_mask")]
        assert choices == [str(first), "bert-base-uncased"]
        assert studio.lenses.default_model("fill_mask") == str(first)
        # Other lenses have no run of their kind yet: only their Hub model, never a default.
        assert [c["value"] for c in studio.lenses.lens_models("generate")] == ["gpt2"]
    finally:
        studio.shutdown()


def test_a_fresh_studio_opens_its_lenses_on_hub_models_only_when_the_hub_answered(
    tmp_path, monkeypatch
):
    """No run yet: the lens's first Hub model when the Hub answered (or the model is cached),
    else nothing; deciding never touches the network."""
    import socket

    from engine import hub

    def no_network(*args, **kwargs):
        raise AssertionError("default_model must not wait on the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    studio = Studio(tmp_path / "home")
    assert studio.lenses.default_model("attention") is None  # offline (HF_HUB_OFFLINE=1)
    monkeypatch.setattr(hub, "hub_known_reachable", lambda: True)
    assert studio.lenses.default_model("attention") == "facebook/dino-vits16"
    assert studio.lenses.default_model("text2text") == "t5-small"
    monkeypatch.setattr(hub, "hub_known_reachable", lambda: False)
    monkeypatch.setattr(hub, "in_local_cache", lambda repo_id: repo_id == "gpt2")
    assert studio.lenses.default_model("generate") == "gpt2"  # cached: loads offline
    assert studio.lenses.default_model("fill_mask") is None


def test_the_hub_check_never_waits_before_it_answered(monkeypatch):
    from engine import hub

    hub.hub_reachable.cache_clear()
    try:
        assert hub.hub_known_reachable() is False  # not asked yet: no wait, no
        monkeypatch.delenv("HF_HUB_OFFLINE")
        monkeypatch.setattr(hub.socket, "create_connection", lambda *a, **k: _Open())
        assert hub.hub_reachable() is True and hub.hub_known_reachable() is True
    finally:
        hub.hub_reachable.cache_clear()


class _Open:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_cli_demo_runs_the_queued_jobs_here_and_reports_each(tmp_path, monkeypatch, capsys):
    """`python -m engine demo` without --no-wait: its own job manager runs the pack (here a
    pack of one tiny BERT job) and prints each job as it ends."""
    monkeypatch.setattr(demo, "SHOWCASE", ("bert",))
    monkeypatch.setattr(demo, "PRESET", "tiny")
    assert main(["demo", "--home", str(tmp_path / "home")]) == 0
    out = capsys.readouterr().out
    [job] = Studio(tmp_path / "home").jobs()
    assert job["status"] == "completed"
    assert f"job {job['id']} bert: completed" in out
