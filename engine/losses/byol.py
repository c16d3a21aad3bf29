"""Losses of the methods without negatives: BYOL and SimSiam.

Both compare a prediction p of one view with a projection z of the other view, through a stop
gradient on z, and symmetrise over the two views.

- BYOL (Grill et al. 2020, "Bootstrap Your Own Latent", arXiv:2006.07733, equation 2): the mean
  squared error of the L2-normalised vectors, ||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z); z comes from
  the EMA target network; the total is the sum over both view orders.
- SimSiam (Chen & He 2021, "Exploring Simple Siamese Representation Learning",
  arXiv:2011.10566, equations 1-4 and Algorithm 1): D(p, z) = -cos(p, stopgrad(z)); the total is
  D(p1, z2) / 2 + D(p2, z1) / 2; z comes from the same network as p.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def _check(predictions: Tensor, targets: Tensor) -> None:
    if predictions.shape != targets.shape or predictions.ndim != 2:
        raise ValueError(
            f"expected two (N, D) tensors of one shape, got "
            f"{tuple(predictions.shape)} and {tuple(targets.shape)}"
        )


def normalized_mse(predictions: Tensor, targets: Tensor) -> Tensor:
    """BYOL's regression loss, mean over the batch of 2 - 2 cos(p, z); z gets no gradient.

    predictions: (N, D); targets: (N, D). Returns a scalar fp32 in [0, 4].
    """
    _check(predictions, targets)
    p = F.normalize(predictions.float(), dim=1)
    z = F.normalize(targets.detach().float(), dim=1)
    return (2 - 2 * (p * z).sum(dim=1)).mean()


def byol_loss(pred_a: Tensor, pred_b: Tensor, target_a: Tensor, target_b: Tensor) -> Tensor:
    """Symmetric BYOL loss: the prediction of each view regresses the target of the other.

    pred_*: (N, D) online predictions of views a and b; target_*: (N, D) target projections.
    """
    return normalized_mse(pred_a, target_b) + normalized_mse(pred_b, target_a)


def negative_cosine(predictions: Tensor, targets: Tensor) -> Tensor:
    """SimSiam's D(p, z) = -cos(p, stopgrad(z)), mean over the batch; a scalar fp32 in [-1, 1]."""
    _check(predictions, targets)
    p = F.normalize(predictions.float(), dim=1)
    z = F.normalize(targets.detach().float(), dim=1)
    return -(p * z).sum(dim=1).mean()


def simsiam_loss(pred_a: Tensor, pred_b: Tensor, proj_a: Tensor, proj_b: Tensor) -> Tensor:
    """Symmetric SimSiam loss D(p_a, z_b) / 2 + D(p_b, z_a) / 2; minimum -1."""
    return negative_cosine(pred_a, proj_b) / 2 + negative_cosine(pred_b, proj_a) / 2
