"""End to end: a tiny SimCLR job evaluated when it completes, results stored with baselines,
the leaderboard read back without recomputing, on-demand protocols, the CLI, and bad input."""

import dataclasses
import json

import pytest

from engine.api import Studio
from engine.data import catalog
from engine.errors import DatasetError, JobError, SpecError

TINY = {
    "steps": 3,
    "batch_size": 16,
    "image_size": 16,
    "warmup_steps": 1,
    "precision": "fp32",
    "health_every": 2,
    "knn_every": 2,
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny job, trained and evaluated (knn, linear) through run_foreground."""
    studio = Studio(tmp_path_factory.mktemp("home"))
    summary = studio.run_foreground(
        {"method": "simclr", "dataset": "digits", "params": TINY, "evals": ["knn", "linear"]}
    )
    return studio, summary


def test_evaluations_run_at_the_end_and_are_stored(trained):
    studio, summary = trained
    assert summary["status"] == "completed" and summary["error"] is None
    figures = summary["eval"]
    assert set(figures) == {"knn_top1", "knn_top5", "linear_top1"}
    assert all(0.0 <= v <= 1.0 for v in figures.values())
    assert figures["knn_top1"] > 0.5  # even a random ResNet separates digits well
    rows = studio.evaluations(summary["job_id"])
    assert [r["protocol"] for r in rows] == ["knn", "linear"]
    knn = rows[0]
    assert knn["dataset"] == "digits"
    assert knn["params"]["k"] == 20 and knn["params"]["temperature"] == 0.07
    assert knn["params"]["checkpoint_step"] == 3 and knn["params"]["image_size"] == 16
    assert knn["results"]["num_test"] == 360 and knn["results"]["feature_dim"] == 256  # convnet
    # The job's spec keeps the request.
    assert studio.job(summary["job_id"])["spec"]["evals"] == ["knn", "linear"]


def test_health_metrics_are_logged_as_curves(trained):
    studio, summary = trained
    points = studio.metrics(summary["job_id"])
    health = {(p["step"], p["name"]) for p in points}
    for name in ("embedding_std", "effective_rank", "alignment", "uniformity"):
        assert (2, name) in health and (3, name) in health  # every 2 steps and the last
        assert (1, name) not in health
    # The online k-NN (digits has labels), at the same steps, as an accuracy.
    knn = {p["step"]: p["value"] for p in points if p["name"] == "online_knn_top1"}
    # Step 0 is the network at random initialisation, before the first step.
    assert sorted(knn) == [0, 2, 3] and all(0.0 <= v <= 1.0 for v in knn.values())


def test_baselines_stored_once_and_leaderboard_reads_without_recomputing(trained):
    studio, summary = trained
    baselines = [e for e in studio.evaluations() if e["job_id"] is None]
    kinds = sorted((e["params"]["baseline"], e["protocol"]) for e in baselines)
    assert kinds == [
        ("pixels", "knn"),
        ("pixels", "linear"),
        ("random", "knn"),
        ("random", "linear"),
    ]
    assert all(e["params"]["image_size"] == 16 for e in baselines)
    count = len(studio.evaluations())
    board = studio.leaderboard()
    assert len(studio.evaluations()) == count  # viewing computes nothing
    by_name = {r["name"]: r for r in board}
    job_row = by_name[f"#{summary['job_id']} simclr"]
    assert job_row["kind"] == "job" and job_row["knn_top1"] == summary["eval"]["knn_top1"]
    assert job_row["steps"] == 3 and job_row["dataset"] == "digits"
    assert by_name["pixels"]["kind"] == "baseline" and "linear_top1" in by_name["pixels"]
    assert by_name["random convnet (simclr)"]["knn_top1"] > 0.5


def test_on_demand_protocols_reuse_cached_features(trained):
    studio, summary = trained
    job_id = summary["job_id"]
    cache = list((studio.home.run_dir(job_id) / "features").rglob("*.safetensors"))
    assert {p.name for p in cache} == {
        "digits-train-16px.safetensors",
        "digits-test-16px.safetensors",
    }
    before = {p: p.stat().st_mtime_ns for p in cache}
    seen = []
    row = studio.evaluate(job_id, "fewshot", on_progress=lambda f, text: seen.append(f))
    assert {p: p.stat().st_mtime_ns for p in cache} == before  # not embedded again
    assert seen and seen[-1] == 1.0 and all(0 <= f <= 1 for f in seen)
    shots = row["results"]["shots"]
    assert set(shots) == {"1", "5", "10"} and len(shots["5"]["runs"]) == 5
    assert "fewshot_5shot" in row["figures"] and "fewshot_5shot_std" in row["figures"]


def test_finetune_against_scratch(trained):
    studio, summary = trained
    row = studio.evaluate(
        summary["job_id"], "finetune", params={"steps": 2, "fractions": [0.01], "batch_size": 8}
    )
    result = row["results"]["fractions"]["1pct"]
    assert result["num_labels"] == 10  # one per digit: 1% of ~144, at least one per class
    assert 0 <= result["pretrained_top1"] <= 1 and 0 <= result["scratch_top1"] <= 1
    assert set(row["figures"]) == {"finetune_1pct", "finetune_1pct_scratch"}
    random_rows = [
        e for e in studio.evaluations() if e["job_id"] is None and e["protocol"] == "finetune"
    ]
    assert random_rows[0]["results"]["fractions"]["1pct"]["random_top1"] == result["scratch_top1"]


@pytest.fixture
def unlabelled_dataset():
    """digits registered again as an unlabelled user dataset, for as long as a test runs."""
    name = "unlabelled-test"
    catalog.register_dataset(
        dataclasses.replace(catalog.get_source("digits"), name=name, builtin=False, labelled=False)
    )
    yield name
    catalog.unregister_dataset(name)


def test_bad_requests_say_what_is_wrong(trained, unlabelled_dataset):
    studio, summary = trained
    job_id = summary["job_id"]
    with pytest.raises(SpecError, match="unknown protocol 'svm'"):
        studio.evaluate(job_id, "svm")
    with pytest.raises(SpecError, match="unknown knn setting"):
        studio.evaluate(job_id, "knn", params={"neighbours": 3})
    with pytest.raises(JobError, match="no job 999"):
        studio.evaluate(999, "knn")
    queued = studio.submit({"method": "simclr", "dataset": "digits", "params": TINY})
    with pytest.raises(JobError, match="is queued; evaluate it once it has finished"):
        studio.evaluate(queued, "knn")
    with pytest.raises(DatasetError, match="has no labels"):
        studio.evaluate(job_id, "knn", dataset=unlabelled_dataset)
    with pytest.raises(SpecError, match="unknown baseline"):
        studio.evaluate_baseline("noise", "digits")
    with pytest.raises(SpecError, match="pixels baseline has no network"):
        studio.evaluate_baseline("pixels", "digits", protocol="finetune", image_size=16)
    with pytest.raises(SpecError, match="unknown protocol"):
        studio.validate({"method": "simclr", "dataset": "digits", "evals": ["knn", "svm"]})
    with pytest.raises(DatasetError, match="has no labels"):
        studio.validate(
            {
                "method": "simclr",
                "dataset": "digits",
                "evals": ["knn"],
                "eval_dataset": unlabelled_dataset,
            }
        )


def test_text_methods_refuse_evaluations(tmp_path):
    from engine.registry import get_method, list_methods

    text = [m for m in list_methods() if get_method(m).modality != "image"]
    if not text:
        pytest.skip("no text method registered")
    method = get_method(text[0])
    studio = Studio(tmp_path)
    with pytest.raises(SpecError, match="no image features"):
        studio.validate(
            {
                "method": text[0],
                "dataset": method.default_dataset,
                "evals": ["knn"],
                "eval_dataset": "digits",
            }
        )


def test_a_random_baseline_is_the_methods_own_network(tmp_path):
    from engine.evaluation.runner import _has_baseline

    studio = Studio(tmp_path)
    params = {"baseline": "random", "backbone": "resnet18", "image_size": 16, "method": "simclr"}
    studio.store.add_evaluation(None, "knn", "digits", params, {"top1": 0.9, "top5": 1.0})
    assert _has_baseline(studio.store, "random", "knn", "digits", "resnet18", 16, "simclr")
    # colorization's ResNet-18 reads the L channel only: another network, another baseline
    assert not _has_baseline(
        studio.store, "random", "knn", "digits", "resnet18", 16, "colorization"
    )
    studio.store.add_evaluation(
        None, "knn", "digits", dict(params, method="colorization"), {"top1": 0.5, "top5": 0.9}
    )
    names = {r["name"]: r["knn_top1"] for r in studio.leaderboard()}
    assert names == {"random resnet18 (simclr)": 0.9, "random resnet18 (colorization)": 0.5}


def test_old_specs_read_back_unchanged():
    from engine.config import TrainSpec

    old = {"method": "simclr", "dataset": "digits", "preset": "quick", "seed": 0, "params": {}}
    assert TrainSpec.from_dict(old).to_dict() == old
    new = dict(old, evals=["knn"], eval_dataset="shapes")
    assert TrainSpec.from_dict(new).to_dict() == new


def test_cli_eval(trained, capsys):
    from engine.__main__ import main

    studio, summary = trained
    home = str(studio.home.root)
    assert (
        main(
            ["eval", "--job", str(summary["job_id"]), "--protocol", "knn", "--json", "--home", home]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["eval"]["knn_top1"] == summary["eval"]["knn_top1"]  # same checkpoint, features
    assert out["dataset"] == "digits" and out["evaluations"][0]["protocol"] == "knn"
    assert (
        main(
            [
                "eval",
                "--baseline",
                "pixels",
                "--dataset",
                "digits",
                "--image-size",
                "8",
                "--protocol",
                "knn",
                "--home",
                home,
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "baseline pixels on digits: knn_top1 0.9" in text
    for args, words in [
        (["--job", str(summary["job_id"]), "--protocol", "svm"], "unknown protocol 'svm'"),
        (["--job", "999"], "no job 999"),
        (["--baseline", "pixels"], "--baseline needs --dataset"),
        ([], "needs one of --job ID, --baseline pixels|random or --model"),
        (["--baseline", "random", "--dataset", "nope"], "unknown dataset"),
    ]:
        code = main(["eval", *args, "--home", home])
        err = capsys.readouterr().err
        assert code == 2 and words in err, (args, err)
        assert "Traceback" not in err


def test_cli_eval_sets_protocol_settings(trained, capsys):
    from engine.__main__ import main

    studio, summary = trained
    home, job = str(studio.home.root), str(summary["job_id"])
    args = ["eval", "--job", job, "--protocol", "knn", "--set", "k=1", "--json", "--home", home]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["evaluations"][0]["params"]["k"] == 1  # stored with the figures it gave
    k1 = studio.evaluations(summary["job_id"])[-1]
    assert k1["params"]["k"] == 1 and k1["params"]["temperature"] == 0.07
    assert k1["figures"]["knn_top5"] != summary["eval"]["knn_top5"]
    # The Runs board keeps the default-settings figure, the one its baselines were scored by.
    row = next(r for r in studio.leaderboard() if r["job_id"] == summary["job_id"])
    assert row["knn_top5"] == summary["eval"]["knn_top5"]
    for extra, words in [
        (["--set", "kk=3"], "unknown knn setting(s) kk; it knows: k, temperature"),
        (["--set", "k=three"], "knn setting k"),
        (["--set", "k"], "--set expects key=value"),
        (["--protocol", "knn,linear", "--set", "k=3"], "one protocol at a time"),
    ]:
        protocol = [] if "--protocol" in extra else ["--protocol", "knn"]
        code = main(["eval", "--job", job, *protocol, *extra, "--home", home])
        err = capsys.readouterr().err
        assert code == 2 and words in err, (extra, err)
        assert "Traceback" not in err
