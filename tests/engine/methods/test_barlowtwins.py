"""Barlow Twins: asymmetric views, per-view passes, the loss terms it logs, presets."""

import pytest
import torch

from engine.config import build_config
from engine.data.views import DOMAINS
from engine.methods.barlowtwins import BarlowTwins, BarlowTwinsConfig
from tests.conftest import TINY


@pytest.mark.parametrize("augmentation", DOMAINS)
def test_step_runs_under_every_augmentation_preset(augmentation):
    torch.manual_seed(0)
    config = build_config(
        BarlowTwinsConfig,
        "quick",
        dict(TINY, augmentation=augmentation, projection_dim=32, projection_hidden_dim=32),
    )
    method = BarlowTwins(config)
    batches = []
    method.encoder.register_forward_hook(lambda m, a, out: batches.append(a[0].shape[0]))
    loss, logs = method.training_step(
        {"images": torch.randint(0, 255, (8, 3, 16, 16), dtype=torch.uint8)}
    )
    assert batches == [8, 8]  # each view through the encoder on its own
    assert torch.isfinite(loss)
    expected = logs["on_diagonal"] + config.lambda_offdiag * logs["off_diagonal"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_natural_views_are_byols_asymmetric_pair():
    method = BarlowTwins(build_config(BarlowTwinsConfig, "quick", {"image_size": 96}))
    first, second = (v.plan for v in method.views)
    assert (first.blur_p, first.solarize_p) == (1.0, 0.0)
    assert (second.blur_p, second.solarize_p) == (0.1, 0.2)


def test_paper_preset():
    config = build_config(BarlowTwinsConfig, "paper", {})
    assert (config.backbone, config.batch_size, config.projection_dim) == ("resnet50", 2048, 8192)
    assert config.optimizer == "lars" and config.lambda_offdiag == 0.0051
