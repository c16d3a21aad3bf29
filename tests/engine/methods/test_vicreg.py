"""VICReg: per-view passes, the three logged terms, presets."""

import pytest
import torch

from engine.config import build_config
from engine.methods.vicreg import VICReg, VICRegConfig
from tests.conftest import TINY


@pytest.mark.parametrize("augmentation", ["natural", "satellite"])
def test_step_logs_the_three_terms(augmentation):
    torch.manual_seed(0)
    config = build_config(
        VICRegConfig,
        "quick",
        dict(TINY, augmentation=augmentation, projection_dim=32, projection_hidden_dim=32),
    )
    method = VICReg(config)
    loss, logs = method.training_step(
        {"images": torch.randint(0, 255, (8, 3, 16, 16), dtype=torch.uint8)}
    )
    assert set(logs) == {"invariance", "variance", "covariance"}
    expected = 25 * logs["invariance"] + 25 * logs["variance"] + logs["covariance"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert method.encoder.conv1.weight.grad is not None


def test_presets_keep_the_papers_coefficients():
    for preset in ("quick", "paper"):
        config = build_config(VICRegConfig, preset, {})
        assert (config.invariance_weight, config.variance_weight, config.covariance_weight) == (
            25.0,
            25.0,
            1.0,
        )
    paper = build_config(VICRegConfig, "paper", {})
    assert (paper.batch_size, paper.projection_dim, paper.optimizer) == (2048, 8192, "lars")
