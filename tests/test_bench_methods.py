"""bench/methods.py's plan, budgets and table: what issue #17's leaderboard prints."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_methods", ROOT / "bench" / "methods.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_methods"] = module
    spec.loader.exec_module(module)
    return module


def test_default_runs_each_method_on_its_own_dataset(bench):
    assert bench.plan_runs(["mae", "simclr"], ["default"]) == [
        ("scenes", "mae"),
        ("shapes", "simclr"),
    ]
    assert bench.plan_runs(["mae", "simclr"], ["digits", "shapes"]) == [
        ("digits", "mae"),
        ("digits", "simclr"),
        ("shapes", "mae"),
        ("shapes", "simclr"),
    ]


def test_vit_methods_get_their_own_budget(bench):
    assert bench.budget_of("dino", {}, 180, 360) == 360
    assert bench.budget_of("simclr", {}, 180, 360) == 180
    assert bench.budget_of("dino", {}, 180, None) == 180
    # an override of the backbone moves the method to the other budget
    assert bench.budget_of("dino", {"backbone": "convnet"}, 180, 360) == 180


def test_table_shows_gain_and_the_judged_figures(bench):
    rows = [
        {
            "dataset": "scenes",
            "method": "mae",
            "kind": "job",
            "steps": 300,
            "images_per_second": 180.0,
            "knn_top1": 0.274,
            "linear_top1": 0.4,
            "finetune_10pct": 0.218,
            "finetune_10pct_scratch": 0.133,
            "recon_psnr": 21.43,
            "recon_margin_db": 0.34,
        },
        {
            "dataset": "scenes",
            "method": "random init (mae: vit-tiny)",
            "kind": "baseline",
            "of": "mae",
            "knn_top1": 0.257,
            "linear_top1": 0.3,
        },
        {
            "dataset": "scenes",
            "method": "pixels",
            "kind": "baseline",
            "of": "mae",
            "knn_top1": 0.299,
            "linear_top1": 0.431,
        },
    ]
    lines = bench.table(rows).splitlines()
    mae = next(line for line in lines if "| mae |" in line)
    assert "| 0.274 | 0.257 | +0.017 |" in mae
    assert "fine-tune 10% 0.218 / 0.133" in mae
    assert "reconstruction 21.43 dB, +0.34 dB over the fills" in mae
    assert any("raw pixels" in line and "0.299" in line for line in lines)


def test_judged_reads_the_twins_jaccard(bench):
    text = bench.judged({"seg_jaccard_best": 0.12}, {"seg_jaccard_best": 0.088})
    assert text == "Jaccard 0.120 / 0.088"
    assert bench.judged({}, {}) == "-"
