import math

import pytest
import torch

from engine.config import build_config
from engine.methods.byol import BYOL, BYOLConfig
from engine.optim import build_optimizer
from tests.engine.methods.test_moco import assert_ema


def _tiny():
    return build_config(
        BYOLConfig,
        "quick",
        dict(
            image_size=16,
            batch_size=4,
            projection_dim=8,
            projection_hidden_dim=16,
            prediction_hidden_dim=16,
            base_momentum=0.996,
            precision="fp32",
        ),
    )


def test_target_is_an_exact_ema_with_the_cosine_schedule():
    torch.manual_seed(0)
    method = BYOL(_tiny())
    optimizer = build_optimizer(method, method.config)
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    total = 5
    for step in range(1, total + 1):
        loss, _ = method.training_step({"images": images})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        before = {n: p.clone() for n, p in method.target_projector.named_parameters()}
        online = {n: p.detach().clone() for n, p in method.projector.named_parameters()}
        method.after_step(step, total)
        # BYOL section 3.2: tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2, k from 0 at the
        # first update to K at the last (tau = 1 there, as the docstring says).
        tau = 1 - (1 - 0.996) * (math.cos(math.pi * (step - 1) / (total - 1)) + 1) / 2
        assert method.momentum == pytest.approx(tau, abs=1e-12)
        for name, p in method.target_projector.named_parameters():
            assert_ema(p, before[name], online[name], tau)
    assert method.momentum > 0.999  # on its way to 1


def test_target_is_frozen_and_out_of_the_optimizer():
    method = BYOL(_tiny())
    target = {id(p) for p in method.target_encoder.parameters()}
    target |= {id(p) for p in method.target_projector.parameters()}
    optimizer = build_optimizer(method, method.config)
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert target and not target & optimized


def test_natural_views_are_the_papers_asymmetric_pair():
    """BYOL's table 6: blur always in the first view and with p 0.1 in the second,
    solarisation in the second only; other domains keep one recipe for both views."""
    method = BYOL(build_config(BYOLConfig, "quick", {"image_size": 96, "augmentation": "natural"}))
    first, second = (v.plan for v in method.views)
    assert (first.blur_p, first.solarize_p) == (1.0, 0.0)
    assert (second.blur_p, second.solarize_p) == (0.1, 0.2)
    assert first.jitter == second.jitter == (0.4, 0.4, 0.2, 0.1)
    synthetic = BYOL(build_config(BYOLConfig, "quick", {"augmentation": "synthetic"}))
    assert synthetic.views[0] is synthetic.views[1]
