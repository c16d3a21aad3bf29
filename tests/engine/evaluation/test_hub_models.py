"""Evaluating a transformers model from the Hub or a folder (a DINOv2 here, the kind a user
compares their runs with): k-NN and segmentation on a builtin set, stored beside the runs on
the leaderboard, through the API and the CLI; what cannot be scored says so."""

from __future__ import annotations

import json

import pytest
import torch

from engine import hardware
from engine.__main__ import main
from engine.api import Studio
from engine.errors import SpecError
from tests.engine.inference.test_dinov2_lenses import TINY


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two Hub-style DINOv2 folders: one with its image processor, whose centre crop (16 px)
    is smaller than the config's image size (32), as facebook/dinov2-small's 224 against 518;
    one without (a bare save_pretrained: resized to the config's size, ImageNet statistics)."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    root = tmp_path_factory.mktemp("hub")
    torch.manual_seed(0)
    model = Dinov2Model(Dinov2Config(**dict(TINY, image_size=32)))
    model.save_pretrained(root / "dinov2-tiny")
    BitImageProcessor(
        size={"shortest_edge": 16},
        crop_size={"height": 16, "width": 16},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(root / "dinov2-tiny")
    model.save_pretrained(root / "bare")
    return root


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    return Studio(tmp_path_factory.mktemp("home"))


def test_knn_of_a_hub_dinov2_is_stored_beside_the_runs(studio, models):
    folder = str(models / "dinov2-tiny")
    seen = []
    row = studio.evaluate_model(folder, "shapes", "knn", on_progress=lambda f, t: seen.append(f))
    figures = row["figures"]
    assert 0.0 <= figures["knn_top1"] <= figures["knn_top5"] <= 1.0
    assert row["job_id"] is None and row["params"]["baseline"] == "hub"
    assert row["params"]["model"] == folder and row["params"]["backbone"] == "dinov2"
    assert row["params"]["image_size"] == 16  # a procedural set is drawn at the model's size
    assert row["results"]["feature_dim"] == 32 and row["results"]["num_test"] == 1000
    assert seen and seen[-1] == 1.0
    board = [r for r in studio.leaderboard() if r["kind"] == "hub"]
    assert [(r["name"], r["method"], r["dataset"]) for r in board] == [
        (folder, "hub: dinov2", "shapes")
    ]
    assert board[0]["knn_top1"] == figures["knn_top1"]
    # The features are cached: a second protocol on the same model does not embed again.
    cached = list((studio.home.cache_dir / "features").glob("hub-dinov2-tiny-*/*.safetensors"))
    assert len(cached) == 2  # train and test


def test_a_folder_without_a_processor_is_read_at_its_configs_size(studio, models):
    row = studio.evaluate_model(str(models / "bare"), "shapes", "knn")
    assert row["params"]["image_size"] == 32 and 0.0 <= row["figures"]["knn_top1"] <= 1.0


def test_segmentation_scores_a_hub_dinov2s_attention(studio, models):
    row = studio.evaluate_model(
        str(models / "dinov2-tiny"), "shapes", "segmentation", params={"max_images": 24}
    )
    figures = row["figures"]
    assert 0.0 < figures["seg_jaccard_mean"] <= figures["seg_jaccard_best"] <= 1.0
    assert row["results"]["num_images"] == 24 and len(row["results"]["jaccard_heads"]) == 2
    # At the processor's 16 px (a 4x4 grid of 4 px patches), not the config's 32 px, while
    # the Attention lens's cached model keeps its own size.
    from engine.inference.attention import ATTENTION
    from engine.inference.models import load_lens_model

    lens = load_lens_model(str(models / "dinov2-tiny"), ATTENTION, studio.home.root)
    assert lens.image_size == 32 and lens.input_size is None


@pytest.mark.parametrize("protocol", ["finetune", "reconstruction"])
def test_protocols_of_the_studios_own_runs_are_refused_by_name(studio, models, protocol):
    with pytest.raises(SpecError, match=rf"{protocol} scores the studio's own runs.*knn"):
        studio.evaluate_model(str(models / "dinov2-tiny"), "shapes", protocol)


def test_a_job_id_or_a_text_dataset_is_refused_with_what_to_do(studio, models):
    with pytest.raises(SpecError, match="not a Hub id or a model folder"):
        studio.evaluate_model("3", "shapes", "knn")
    with pytest.raises(Exception, match="evaluate on an image dataset"):
        studio.evaluate_model(str(models / "dinov2-tiny"), "pydocs", "knn")


def test_the_cli_evaluates_a_model_folder(models, tmp_path, capsys):
    folder = str(models / "dinov2-tiny")
    code = main(
        ["eval", "--model", folder, "--dataset", "digits", "--protocol", "knn", "--json"]
        + ["--home", str(tmp_path)]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["model"] == folder and out["dataset"] == "digits" and out["job_id"] is None
    assert 0.0 <= out["eval"]["knn_top1"] <= 1.0
    assert main(["eval", "--model", folder, "--home", str(tmp_path)]) != 0  # no --dataset
    assert "--model needs --dataset" in capsys.readouterr().err


def test_the_explorer_maps_a_hub_dinov2_through_its_processor(studio, models):
    view = studio.project(str(models / "dinov2-tiny"), "shapes", samples=64, projection="pca")
    assert view["num_points"] == 64 and view["feature_dim"] == 32
    assert view["model"]["image_size"] == 16  # the processor's crop, not the config's 32
    # A vision-only model runs under bf16 autocast where this CPU computes bf16 natively.
    assert view["model"]["precision"] == ("bf16" if hardware.fast_bf16("cpu") else "fp32")


def test_segmentation_batches_shrink_with_the_token_count():
    from engine.evaluation.runner import segmentation_batch

    assert segmentation_batch(64, 224, 14) == 64  # 257 tokens: as asked
    assert segmentation_batch(64, 32, 4) == 64  # a studio ViT at 32 px
    assert segmentation_batch(64, 518, 14) == 2  # DINOv2's config size: 1,370 tokens
    assert segmentation_batch(8, 224, 14) == 8 and segmentation_batch(64, 1024, 8) == 1
