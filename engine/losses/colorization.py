"""Class-rebalanced multinomial cross-entropy of colourisation.

Zhang, Isola, Efros 2016, "Colorful Image Colorization" (arXiv:1603.08511), section 2.1: the
network predicts a distribution over Q quantised ab bins at every pixel; the target is a soft
encoding of the true colour (``engine.data.lab.soft_encode``). Equation (2) weighs each pixel by
v = w of its nearest bin, and equation (4) sets w from the empirical colour prior p, smoothed by
a Gaussian in ab, mixed with a uniform distribution (lambda = 1/2) and inverted, so that rare
saturated colours are not drowned by greys and browns.
"""

from __future__ import annotations

import torch
from torch import Tensor


def rebalancing_weights(
    prior: Tensor, bins: Tensor, mix: float = 0.5, sigma: float = 5.0
) -> Tensor:
    """Equation (4): w proportional to ((1 - mix) * smooth(prior) + mix / Q)^-1, E_prior[w] = 1.

    Args:
        prior: (Q,) non-negative bin frequencies (any scale; normalised here).
        bins: (Q, 2) bin centres in ab, for the Gaussian smoothing.
        mix: weight of the uniform distribution (the paper's lambda).
        sigma: width of the smoothing kernel in ab units (0 turns smoothing off).
    Returns:
        (Q,) float32 weights.
    """
    prior = prior.float() / prior.float().sum().clamp(min=1e-12)
    if sigma > 0:
        dist2 = torch.cdist(bins.float(), bins.float()).square()  # (Q, Q)
        kernel = torch.exp(-dist2 / (2 * sigma**2))
        prior = kernel @ prior  # (Q,) each bin gathers its neighbours' mass
        prior = prior / prior.sum()
    weights = 1.0 / ((1 - mix) * prior + mix / prior.numel())
    return weights / (prior * weights).sum()


def rebalanced_cross_entropy(logits: Tensor, targets: Tensor, class_weights: Tensor) -> Tensor:
    """Equation (2): -sum_q Z log softmax(logits), weighted by w of each pixel's nearest bin.

    Args:
        logits: (B, Q, H, W) predicted bin scores.
        targets: (B, Q, H, W) soft target distributions (sum to 1 over Q).
        class_weights: (Q,) rebalancing weights (ones for the plain loss).
    Returns:
        Scalar fp32: the weighted mean over pixels, sum(v * ce) / sum(v). The paper sums;
        dividing by the batch's total weight keeps the gradient direction of each batch and
        removes the swings in scale between batches with more or fewer rare colours.
    """
    if logits.shape != targets.shape or logits.ndim != 4:
        raise ValueError(
            f"expected logits and targets of one (B, Q, H, W) shape, got "
            f"{tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    log_probs = torch.log_softmax(logits.float(), dim=1)
    per_pixel = -(targets.float() * log_probs).sum(dim=1)  # (B, H, W)
    pixel_weights = class_weights.float().to(logits.device)[targets.argmax(dim=1)]  # (B, H, W)
    return (pixel_weights * per_pixel).sum() / pixel_weights.sum()
