import math

import pytest
import torch

from engine.losses.colorization import rebalanced_cross_entropy, rebalancing_weights


def test_weights_by_hand():
    # Two bins far apart (smoothing with sigma 5 leaves them alone), prior (3/4, 1/4),
    # lambda 1/2: w ~ 1 / (0.5 p + 0.25) = (1.6, 8/3); E_p[w] = 1.2 + 2/3 = 28/15, so
    # w = (1.6, 8/3) * 15/28 = (6/7, 10/7).
    bins = torch.tensor([[0.0, 0.0], [100.0, 0.0]])
    weights = rebalancing_weights(torch.tensor([3.0, 1.0]), bins, mix=0.5, sigma=5.0)
    assert weights.tolist() == pytest.approx([6 / 7, 10 / 7], rel=1e-6)


@pytest.mark.parametrize("sigma", [0.0, 5.0])
def test_weights_properties(sigma):
    g = torch.Generator().manual_seed(0)
    bins = torch.randint(-11, 11, (30, 2), generator=g).float() * 10
    prior = torch.rand(30, generator=g)
    weights = rebalancing_weights(prior, bins, 0.5, sigma)
    if sigma == 0:  # the expectation under the (unsmoothed) prior is 1 (paper eq. 4)
        assert (prior / prior.sum() * weights).sum().item() == pytest.approx(1.0, rel=1e-5)
    # Rarer bins weigh more; lambda = 1 (pure uniform) turns rebalancing off.
    assert torch.allclose(rebalancing_weights(prior, bins, 1.0, sigma), torch.ones(30))
    uniform = rebalancing_weights(torch.ones(30), bins, 0.5, 0.0)
    assert torch.allclose(uniform, torch.ones(30))
    if sigma == 0:
        order = prior.argsort()
        assert (weights[order].diff() <= 1e-6).all()


def test_cross_entropy_by_hand():
    # Two pixels, Q = 2. Pixel 1: logits (0, 0), target bin 0: ce = log 2, weight 1.
    # Pixel 2: logits (log 3, 0), target bin 1: p = 1/4, ce = log 4, weight 3.
    # Weighted mean: (log 2 + 3 log 4) / 4 = 7/4 log 2.
    logits = torch.tensor([[0.0, math.log(3)], [0.0, 0.0]]).view(1, 2, 1, 2)  # (B, Q, H, W)
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 2, 1, 2)
    loss = rebalanced_cross_entropy(logits, targets, torch.tensor([1.0, 3.0]))
    assert loss.item() == pytest.approx(7 / 4 * math.log(2), rel=1e-6)
    plain = rebalanced_cross_entropy(logits, targets, torch.ones(2))
    assert plain.item() == pytest.approx((math.log(2) + math.log(4)) / 2, rel=1e-6)


def test_soft_targets_and_minimum():
    g = torch.Generator().manual_seed(1)
    targets = torch.softmax(torch.randn(2, 5, 3, 3, generator=g), dim=1)
    weights = torch.rand(5, generator=g) + 0.5
    # For a fixed weight per pixel, cross-entropy is smallest when the prediction equals the
    # target distribution.
    best = rebalanced_cross_entropy(targets.log(), targets, weights)
    other = rebalanced_cross_entropy(torch.randn(2, 5, 3, 3, generator=g), targets, weights)
    assert best < other
    with pytest.raises(ValueError, match="one \\(B, Q, H, W\\) shape"):
        rebalanced_cross_entropy(torch.zeros(1, 5, 2, 2), torch.zeros(1, 4, 2, 2), weights)
