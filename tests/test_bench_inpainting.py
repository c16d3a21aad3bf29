"""bench/inpainting.py: the protocol's masks and patches, and a fill that is really harmonic."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from engine.config import build_config
from engine.methods.mae import MAE, MAEConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "bench_inpainting", ROOT / "bench" / "inpainting.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_inpainting"] = module
    spec.loader.exec_module(module)
    return module


def test_patches_and_masks_are_vitmaes(bench):
    model = MAE(build_config(MAEConfig, "tiny", {"image_size": 16})).model.eval()
    pixels = torch.randn(3, 3, 16, 16)
    assert torch.equal(bench.patchify(pixels, 4), model.patchify(pixels))
    noise = torch.rand(3, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        mask = model(pixel_values=pixels, noise=noise).mask.bool()
    assert torch.equal(bench.hidden_patches(3, 16, 0.75, 5), mask)


def test_the_smooth_fill_restores_a_ramp_and_keeps_what_is_visible(bench):
    # A linear ramp is harmonic: the fill of a hole inside it is the ramp itself.
    ramp = torch.linspace(0, 1, 12)[None, None, None, :].expand(1, 3, 12, 12).clone()
    ramp[:, 1] *= 0.5
    hole = torch.zeros(1, 1, 12, 12, dtype=torch.bool)
    hole[..., 3:9, 2:10] = True
    filled = bench.harmonic_fill(ramp.masked_fill(hole, 7.0), hole, 2000)
    assert torch.allclose(filled, ramp, atol=1e-4)
    # the visible pixels stay as they are, whatever the fill does in the hole
    noisy = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    filled = bench.harmonic_fill(noisy, hole, 5)
    assert torch.equal(filled[~hole.expand_as(noisy)], noisy[~hole.expand_as(noisy)])
