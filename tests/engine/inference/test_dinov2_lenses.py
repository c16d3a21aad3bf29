"""DINOv2 in the lenses and the explorer: Hub-style Dinov2Model folders (with and without
register tokens, which the attention map skips) and a studio dinov2 run."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from engine.api import Studio
from engine.inference.attention import ATTENTION, attention_maps
from engine.inference.models import load_lens_model
from tests.engine.test_export import run_plain

TINY = dict(
    image_size=16,
    patch_size=4,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    mlp_ratio=2,
)
PHOTO = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from transformers import (
        Dinov2Config,
        Dinov2Model,
        Dinov2WithRegistersConfig,
        Dinov2WithRegistersModel,
    )

    root = tmp_path_factory.mktemp("dinov2")
    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(**TINY)).save_pretrained(root / "dinov2")
    Dinov2WithRegistersModel(
        Dinov2WithRegistersConfig(**TINY, num_register_tokens=4)
    ).save_pretrained(root / "dinov2-reg")
    return root


@pytest.mark.parametrize("name, prefix", [("dinov2", 1), ("dinov2-reg", 5)])
def test_attention_skips_cls_and_register_tokens(folders, name, prefix):
    lm = load_lens_model(str(folders / name), ATTENTION, folders)
    out = attention_maps(lm, PHOTO, keep=0.6)
    grid = out["grid"]
    assert out["attention"].shape == (2, grid, grid)
    # [CLS] + registers hold the rest of each head's row: patches + prefix sum to one.
    rows = out["attention"].sum(axis=(1, 2)) + out["prefix"]
    np.testing.assert_allclose(rows, 1.0, atol=1e-5)
    assert grid == 4  # 16 px / 4 px patches: the register tokens were not taken as patches
    registers = getattr(lm.model.config, "num_register_tokens", 0) if name != "dinov2" else 0
    assert 1 + registers == prefix


@pytest.fixture(scope="module")
def dinov2_run(tmp_path_factory):
    studio = Studio(tmp_path_factory.mktemp("home"))
    summary = studio.run_foreground(
        {"method": "dinov2", "dataset": "shapes", "preset": "tiny", "params": {"steps": 3}}
    )
    assert summary["status"] == "completed", summary["error"]
    return studio, str(summary["job_id"])


def test_a_dinov2_run_opens_in_the_attention_lens_and_the_explorer(dinov2_run):
    studio, job = dinov2_run
    values = [c["value"] for c in studio.lenses.lens_models("attention")]
    assert job in values
    out = studio.lenses.attention(PHOTO, job)
    assert out["num_heads"] == 3 and out["grid"] == 4  # vit-tiny, 16 px / 4 px patches
    assert job in [m["value"] for m in studio.embedding_models()]
    view = studio.project(job, "shapes", samples=64, projection="pca")
    assert view["num_points"] == 64 and view["feature_dim"] == 192  # ViT-Tiny's [CLS]


def test_a_dinov2_run_exports_a_folder_that_loads_as_dinov2model(dinov2_run, tmp_path):
    from transformers import AutoImageProcessor, AutoModel, Dinov2Model

    studio, job = dinov2_run
    result = studio.export(int(job), tmp_path / "export")
    folder = result["folder"]
    model = AutoModel.from_pretrained(folder)
    assert isinstance(model, Dinov2Model)
    processor = AutoImageProcessor.from_pretrained(folder)
    pixels = processor(images=[PHOTO], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        features = model(pixel_values=pixels).pooler_output
    assert features.shape == (1, 192)
    card = (tmp_path / "export" / "README.md").read_text()
    assert "dinov2" in card
    # The card's own loading code, in an interpreter that cannot import the studio.
    snippet = re.search(r"## How to load it\n\n```python\n(.*?)```", card, re.S).group(1)
    images = (
        "import torch\nimages = list(torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8))\n"
    )
    run_plain(images + snippet + "assert features.shape == (2, 192)\n", cwd=folder)
