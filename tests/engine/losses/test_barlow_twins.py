"""Barlow Twins loss against hand-worked values, the authors' code, and its invariants."""

import pytest
import torch
from torch import nn

from engine.losses.barlow_twins import barlow_twins_loss

# Four samples, two dimensions; every column has mean 0 and (biased) variance 1.
A1 = torch.tensor([1.0, 1.0, -1.0, -1.0])
A2 = torch.tensor([1.0, -1.0, 1.0, -1.0])
A3 = torch.tensor([1.0, -1.0, -1.0, 1.0])


def test_zero_for_identical_decorrelated_views():
    z = torch.stack([A1, A2], dim=1)  # C = I exactly
    out = barlow_twins_loss(z, z.clone())
    assert out.loss.item() == pytest.approx(0.0, abs=1e-4)


def test_hand_worked_values():
    # z_b = (A1, A3): C = [[1, 0], [0, 0]] -> on-diagonal (1 - 0)^2 = 1, off-diagonal 0.
    out = barlow_twins_loss(torch.stack([A1, A2], 1), torch.stack([A1, A3], 1), 0.5)
    assert (out.on_diagonal.item(), out.off_diagonal.item()) == pytest.approx((1.0, 0.0), abs=1e-4)
    # z_b = (A1, A1): C = [[1, 1], [0, 0]] -> on 1, off 1, loss 1 + lambda.
    out = barlow_twins_loss(torch.stack([A1, A2], 1), torch.stack([A1, A1], 1), 0.5)
    assert out.loss.item() == pytest.approx(1.5, abs=1e-4)


@pytest.mark.parametrize("batch, dim", [(8, 4), (32, 16), (64, 128)])
def test_matches_the_authors_code(batch, dim):
    """facebookresearch/barlowtwins main.py, BarlowTwins.forward (one process): Algorithm 1 of
    the paper with the standardisation done by BatchNorm1d(affine=False)."""
    gen = torch.Generator().manual_seed(batch)
    z1 = torch.randn(batch, dim, generator=gen) * 2 + 1
    z2 = z1 + torch.randn(batch, dim, generator=gen)
    lambd = 0.0051
    bn = nn.BatchNorm1d(dim, affine=False).train()
    c = bn(z1).T @ bn(z2)
    c.div_(batch)
    on_diag = torch.diagonal(c).add_(-1).pow_(2).sum()
    off_diag = (c.flatten()[:-1].view(dim - 1, dim + 1)[:, 1:].flatten()).pow_(2).sum()
    expected = on_diag + lambd * off_diag
    assert barlow_twins_loss(z1, z2, lambd).loss.item() == pytest.approx(expected.item(), rel=1e-4)


def test_symmetric_and_invariant_to_per_dimension_scale():
    gen = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(16, 8, generator=gen), torch.randn(16, 8, generator=gen)
    loss = barlow_twins_loss(z1, z2).loss
    assert barlow_twins_loss(z2, z1).loss.item() == pytest.approx(loss.item(), rel=1e-5)
    scaled = z1 * torch.linspace(0.5, 4.0, 8) + 3.0
    assert barlow_twins_loss(scaled, z2).loss.item() == pytest.approx(loss.item(), rel=1e-4)


def test_bf16_autocast_still_computes_in_fp32():
    gen = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(32, 64, generator=gen), torch.randn(32, 64, generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = barlow_twins_loss(z1, z2).loss
    assert inside.dtype == torch.float32
    assert inside.item() == pytest.approx(barlow_twins_loss(z1, z2).loss.item(), rel=1e-6)
