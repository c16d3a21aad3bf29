"""The VICReg loss: variance, invariance, covariance.

Bardes, Ponce, LeCun 2022, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning" (arXiv:2105.04906), section 3 and Algorithm 1: the mean squared
distance between the two views' embeddings (invariance), a hinge keeping the standard deviation
of every embedding dimension above 1 (variance: no collapse), and the squared off-diagonal
covariances (covariance: no redundancy), weighted 25, 25 and 1.

The variance term is the mean of the two branches' hinges, as the authors' main_vicreg.py
(`std_loss = mean(relu(1 - std_x)) / 2 + mean(relu(1 - std_y)) / 2`) and lightly 1.6 compute
it; the paper's Algorithm 1 adds the two without the halves, which doubles the variance weight
the published weights were tuned with. The covariance term is the sum of the branches in both.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class VICRegLoss(NamedTuple):
    loss: Tensor  # weighted sum of the three terms
    invariance: Tensor  # mean squared error between the views
    variance: Tensor  # hinge on the std of each dimension, mean of the two views
    covariance: Tensor  # squared off-diagonal covariances / D, summed over the two views


def _variance(z: Tensor, gamma: float, eps: float) -> Tensor:
    std = torch.sqrt(z.var(dim=0) + eps)  # (D,), unbiased as in Algorithm 1
    return F.relu(gamma - std).mean()


def _covariance(z: Tensor) -> Tensor:
    n, d = z.shape
    z = z - z.mean(dim=0)
    cov = z.T @ z / (n - 1)  # (D, D)
    return (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / d


def vicreg_loss(
    z_a: Tensor,
    z_b: Tensor,
    invariance_weight: float = 25.0,
    variance_weight: float = 25.0,
    covariance_weight: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
) -> VICRegLoss:
    """VICReg loss of two views' embeddings z_a, z_b (N, D), row i the same image; fp32 terms."""
    if z_a.shape != z_b.shape or z_a.ndim != 2 or z_a.shape[0] < 2:
        raise ValueError(
            f"expected two (N, D) tensors of one shape with N >= 2, got "
            f"{tuple(z_a.shape)} and {tuple(z_b.shape)}"
        )
    with torch.autocast(z_a.device.type, enabled=False):
        z_a, z_b = z_a.float(), z_b.float()
        invariance = F.mse_loss(z_a, z_b)
        variance = (_variance(z_a, gamma, eps) + _variance(z_b, gamma, eps)) / 2
        covariance = _covariance(z_a) + _covariance(z_b)
        loss = (
            invariance_weight * invariance
            + variance_weight * variance
            + covariance_weight * covariance
        )
        return VICRegLoss(loss, invariance, variance, covariance)
