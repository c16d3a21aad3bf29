"""The Barlow Twins redundancy-reduction loss.

Zbontar, Jing, Misra, LeCun, Deny 2021, "Barlow Twins: Self-Supervised Learning via Redundancy
Reduction" (arXiv:2103.03230), equation (1) and Algorithm 1: standardise each embedding dimension
over the batch, take the cross-correlation matrix between the two views' embeddings, and push it
to the identity: diagonal terms to 1 (invariance), off-diagonal terms, weighted by lambda, to 0
(redundancy reduction).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class BarlowTwinsLoss(NamedTuple):
    loss: Tensor  # on_diagonal + lambda * off_diagonal
    on_diagonal: Tensor  # sum_i (1 - C_ii)^2
    off_diagonal: Tensor  # sum_{i != j} C_ij^2 (unweighted)


def cross_correlation(z_a: Tensor, z_b: Tensor, eps: float = 1e-5) -> Tensor:
    """(N, D), (N, D) -> (D, D) cross-correlation of the batch-standardised embeddings.

    Standardised as the authors' code does (BatchNorm1d without affine parameters: batch mean,
    biased variance plus eps), so two identical, decorrelated embeddings give exactly I.
    """
    n = z_a.shape[0]
    z_a = (z_a - z_a.mean(dim=0)) / torch.sqrt(z_a.var(dim=0, unbiased=False) + eps)
    z_b = (z_b - z_b.mean(dim=0)) / torch.sqrt(z_b.var(dim=0, unbiased=False) + eps)
    return z_a.T @ z_b / n


def barlow_twins_loss(
    z_a: Tensor, z_b: Tensor, lambda_offdiag: float = 0.0051, eps: float = 1e-5
) -> BarlowTwinsLoss:
    """Barlow Twins loss of two views' embeddings z_a, z_b (N, D), row i the same image.

    Returns fp32 terms; the gradient flows through `loss`.
    """
    if z_a.shape != z_b.shape or z_a.ndim != 2 or z_a.shape[0] < 2:
        raise ValueError(
            f"expected two (N, D) tensors of one shape with N >= 2, got "
            f"{tuple(z_a.shape)} and {tuple(z_b.shape)}"
        )
    with torch.autocast(z_a.device.type, enabled=False):
        c = cross_correlation(z_a.float(), z_b.float(), eps)  # (D, D)
        diagonal = torch.diagonal(c)
        on_diagonal = (1 - diagonal).pow(2).sum()
        off_diagonal = c.pow(2).sum() - diagonal.pow(2).sum()
        return BarlowTwinsLoss(
            on_diagonal + lambda_offdiag * off_diagonal, on_diagonal, off_diagonal
        )
