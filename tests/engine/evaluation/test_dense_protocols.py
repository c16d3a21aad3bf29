"""End to end: `segmentation` on DINO and MAE runs, `reconstruction` on an MAE run, stored
with their random twins (no pixels baseline), through the Studio and the CLI; bad requests."""

import json

import pytest

from engine.api import Studio
from engine.errors import DatasetError, SpecError

SMALL = {"max_images": 40}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    studio = Studio(tmp_path_factory.mktemp("home"))
    dino = studio.run_foreground(
        {
            "method": "dino",
            "dataset": "shapes",
            "preset": "tiny",
            "params": {"steps": 2},
            "evals": ["segmentation"],
        }
    )
    mae = studio.run_foreground(
        {"method": "mae", "dataset": "shapes", "preset": "tiny", "params": {"steps": 2}}
    )
    return studio, dino, mae


def test_segmentation_at_the_end_of_a_dino_job_with_its_random_twin(runs):
    studio, dino, _ = runs
    assert dino["status"] == "completed" and dino["error"] is None
    figures = dino["eval"]
    assert set(figures) == {"seg_jaccard_best", "seg_jaccard_mean"}
    assert 0.0 <= figures["seg_jaccard_mean"] <= figures["seg_jaccard_best"] <= 1.0
    row = studio.evaluations(dino["job_id"])[0]
    assert row["results"]["num_images"] == 1000 and row["params"]["keep"] == 0.6
    baselines = [r for r in studio.leaderboard() if r["kind"] == "baseline"]
    assert [r["name"] for r in baselines] == ["random vit-tiny (dino)"]  # no pixels row
    assert "seg_jaccard_best" in baselines[0]


def test_mae_encoder_segments_and_reconstructs(runs):
    studio, _, mae = runs
    seg = studio.evaluate(mae["job_id"], "segmentation", params=SMALL)
    assert seg["results"]["num_images"] == 40
    rec = studio.evaluate(mae["job_id"], "reconstruction", params=SMALL)
    figures = rec["figures"]
    assert set(figures) == {
        "recon_psnr",
        "recon_psnr_mean_colour",
        "recon_psnr_nearest",
        "recon_margin_db",
    }
    best = max(figures["recon_psnr_mean_colour"], figures["recon_psnr_nearest"])
    assert figures["recon_margin_db"] == pytest.approx(figures["recon_psnr"] - best, abs=2e-4)
    assert 5.0 < figures["recon_psnr_mean_colour"] < 40.0  # a real image's mean is no match
    assert rec["results"]["norm_pix_loss"] is True


def test_cli_eval_reconstruction(runs, capsys):
    from engine.__main__ import main

    studio, _, mae = runs
    args = ["eval", "--job", str(mae["job_id"]), "--protocol", "reconstruction", "--json"]
    assert main([*args, "--home", str(studio.home.root)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "recon_psnr" in out["eval"] and "recon_margin_db" in out["eval"]


def test_dense_protocols_refuse_what_they_cannot_score(runs):
    studio, dino, _ = runs
    with pytest.raises(DatasetError, match="no object masks"):
        studio.evaluate(dino["job_id"], "segmentation", dataset="digits", params=SMALL)
    with pytest.raises(SpecError, match="not one; evaluate an MAE run"):
        studio.evaluate(dino["job_id"], "reconstruction", params=SMALL)
    simclr = studio.run_foreground(
        {"method": "simclr", "dataset": "shapes", "preset": "tiny", "params": {"steps": 1}}
    )
    with pytest.raises(SpecError, match="has no ViT"):
        studio.evaluate(simclr["job_id"], "segmentation", params=SMALL)
