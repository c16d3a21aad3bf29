"""The leaderboard's segmentation Jaccard column (always there) and reconstruction PSNR columns
(when a row has them), from evaluations written to the store directly."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import math

from engine.api import Studio
from tests.webapp.test_runs_tab import add_eval, add_job
from webapp.runs_board import figure_columns, leaderboard_frame


def test_segmentation_column_always_and_psnr_when_present(tmp_path):
    studio = Studio(tmp_path / "home")
    assert ("seg_jaccard_best", "seg. Jaccard") in figure_columns([])
    assert not any(k.startswith("recon_") for k, _ in figure_columns([]))
    dino, mae = add_job(studio, method="dino"), add_job(studio, method="mae")
    seg = {"jaccard_best_head": 0.61234, "jaccard_mean_heads": 0.4, "jaccard_heads": [0.4]}
    add_eval(studio, dino, "segmentation", seg)
    add_eval(studio, None, "segmentation", dict(seg, jaccard_best_head=0.3), baseline="random")
    recon = {
        "psnr": 21.5,
        "psnr_mean_colour": 14.0,
        "psnr_nearest_visible": 17.25,
        "margin_db": 4.25,
    }
    add_eval(studio, mae, "reconstruction", recon)
    frame = leaderboard_frame(studio.leaderboard())
    by_run = {row["run"]: row for _, row in frame.iterrows()}
    assert by_run["#1 dino"]["seg. Jaccard"] == 0.6123
    assert by_run["random resnet18"]["seg. Jaccard"] == 0.3
    assert by_run["#2 mae"]["PSNR dB"] == 21.5 and by_run["#2 mae"]["PSNR margin"] == 4.25
    assert math.isnan(by_run["#1 dino"]["PSNR dB"])
