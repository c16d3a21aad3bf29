"""The model card from plain facts: the Hub reads its metadata back, the evaluation table has
one column per figure the rows carry, and the loss curve draws from any points."""

import math

from huggingface_hub import ModelCard
from PIL import Image

from engine.model_card import CardFacts, draw_curve, render_card, write_card


def facts(**changes) -> CardFacts:
    base = dict(
        method="mae",
        title="MAE",
        job_id=7,
        step=40,
        dataset="shapes",
        preset="quick",
        backbone="vit-tiny",
        config={"mask_ratio": 0.75},
        library_name="transformers",
        pipeline_tag="image-feature-extraction",
        load_snippet="model = AutoModel.from_pretrained('.')",
        files=["README.md", "model.safetensors"],
        evaluations=[
            {
                "kind": "job",
                "name": "#7 mae",
                "dataset": "shapes",
                "eval_step": 40,
                "knn_top1": 0.61,
                "recon_psnr": 24.5,
                "recon_psnr_nearest": 22.0,
            },
            {"kind": "baseline", "name": "pixels", "dataset": "shapes", "knn_top1": 0.31},
        ],
        losses=[(1, 0.9), (20, 0.5), (40, 0.4)],
    )
    return CardFacts(**{**base, **changes})


def test_the_hub_reads_the_metadata_back(tmp_path):
    write_card(tmp_path, facts())
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.library_name == "transformers"
    assert card.data.tags[:2] == ["self-supervised", "mae"]
    assert card.data.datasets == ["shapes"] and card.data.metrics == ["accuracy", "psnr"]
    assert card.data.pipeline_tag == "image-feature-extraction"
    assert (tmp_path / "loss_curve.png").exists()


def test_the_table_has_a_column_per_figure_and_the_baselines_beside():
    text = render_card(facts())
    assert "| model | evaluated on | k-NN top-1 | recon psnr | recon psnr nearest |" in text
    assert "| **#7 mae** (this run) | shapes | 0.610 | 24.500 | 22.000 |" in text
    assert "| pixels | shapes | 0.310 |  |  |" in text
    unevaluated = render_card(facts(evaluations=[], losses=[]))
    assert "Not evaluated yet" in unevaluated and "metrics:" not in unevaluated
    assert "loss_curve.png" not in unevaluated


def test_the_curve_draws_one_point_flat_lines_and_skips_non_finite(tmp_path):
    for name, points in {
        "one": [(5, 1.0)],
        "flat": [(1, 2.0), (2, 2.0)],
        "nan": [(1, 1.0), (2, math.nan), (3, 0.5)],
        "none": [],
    }.items():
        path = draw_curve(points, tmp_path / f"{name}.png", name)
        with Image.open(path) as image:
            assert image.size == (640, 360)
            blue = sum(1 for p in image.getdata() if p == (31, 119, 180))
        assert (blue > 0) == bool(points), name
