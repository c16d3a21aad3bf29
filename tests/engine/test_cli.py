"""The CLI contract, run as a user runs it: `python -m engine ...` in a subprocess."""

import json
import subprocess
import sys

from tests.conftest import ROOT


def cli(*args, home):
    return subprocess.run(
        [sys.executable, "-m", "engine", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def test_methods_and_datasets_json(tmp_path):
    methods = json.loads(cli("methods", "--json", home=tmp_path).stdout)
    assert {"simclr", "mae"} <= {m["name"] for m in methods}
    assert all(m["description"] for m in methods)
    datasets = {d["name"]: d for d in json.loads(cli("datasets", "--json", home=tmp_path).stdout)}
    assert datasets["digits"]["available"] and datasets["shapes"]["available"]


def test_train_json_summary_and_jobs(tmp_path):
    out = cli(
        "train",
        "--method",
        "simclr",
        "--dataset",
        "digits",
        "--steps",
        "4",
        "--batch-size",
        "16",
        "--set",
        "image_size=16",
        "--set",
        "precision=fp32",
        "--set",
        "knn_every=2",  # the online k-NN logs at step 0, before any loss
        "--json",
        home=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    for key in (
        "job_id",
        "status",
        "method",
        "dataset",
        "steps",
        "first_loss",
        "final_loss",
        "images_per_second",
        "run_dir",
    ):
        assert key in summary
    assert summary["status"] == "completed" and summary["steps"] == 4
    assert "step" in out.stderr  # the progress bar
    jobs = json.loads(cli("jobs", "--json", home=tmp_path).stdout)
    assert [j["id"] for j in jobs] == [summary["job_id"]]
    knn = cli(
        "metrics", str(summary["job_id"]), "--name", "online_knn_top1", "--json", home=tmp_path
    )
    assert [p["step"] for p in json.loads(knn.stdout)] == [0, 2, 4]


def test_bad_input_exits_nonzero_and_stores_nothing(tmp_path, capsys):
    from engine.__main__ import main

    for args, message in [
        (("--method", "nope", "--dataset", "digits"), "unknown method"),
        (("--method", "simclr", "--dataset", "nope"), "nope"),
        (("--method", "simclr", "--dataset", "digits", "--steps", "0"), "steps must be at least 1"),
        (("--method", "simclr", "--dataset", "digits", "--set", "tau=1"), "unknown setting"),
        (("--method", "simclr", "--dataset", "digits", "--lr", "-3"), "lr must be greater than 0"),
    ]:
        code = main(["train", *args, "--home", str(tmp_path)])  # in-process: fast
        err = capsys.readouterr().err
        assert code == 2 and message in err, (args, err)
        assert "Traceback" not in err
    assert main(["jobs", "--json", "--home", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == []
