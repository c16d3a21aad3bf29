"""VICReg loss against the authors' main_vicreg.py, hand-worked terms and invariants."""

import pytest
import torch
import torch.nn.functional as F

from engine.losses.vicreg import vicreg_loss


def _main_vicreg(z_a, z_b, lambda_=25.0, mu=25.0, nu=1.0):
    """The authors' main_vicreg.py (VICReg.forward): Algorithm 1 with the variance halved."""
    N, D = z_a.shape
    sim_loss = F.mse_loss(z_a, z_b)
    std_z_a = torch.sqrt(z_a.var(dim=0) + 1e-04)
    std_z_b = torch.sqrt(z_b.var(dim=0) + 1e-04)
    std_loss = torch.mean(F.relu(1 - std_z_a)) / 2 + torch.mean(F.relu(1 - std_z_b)) / 2
    z_a = z_a - z_a.mean(dim=0)
    z_b = z_b - z_b.mean(dim=0)
    cov_z_a = (z_a.T @ z_a) / (N - 1)
    cov_z_b = (z_b.T @ z_b) / (N - 1)
    off = ~torch.eye(D, dtype=torch.bool)
    cov_loss = cov_z_a[off].pow_(2).sum() / D + cov_z_b[off].pow_(2).sum() / D
    return lambda_ * sim_loss + mu * std_loss + nu * cov_loss


@pytest.mark.parametrize("batch, dim", [(4, 3), (32, 16), (128, 64)])
def test_matches_main_vicreg(batch, dim):
    gen = torch.Generator().manual_seed(dim)
    z_a = torch.randn(batch, dim, generator=gen) * 0.5
    z_b = z_a + 0.3 * torch.randn(batch, dim, generator=gen)
    ours = vicreg_loss(z_a, z_b)
    assert ours.loss.item() == pytest.approx(_main_vicreg(z_a, z_b).item(), rel=1e-5)


def test_hand_worked_terms():
    # Collapsed embeddings: no invariance cost, variance hinge 1 - sqrt(1e-4) = 0.99 per branch,
    # and the term is the mean of the two branches (main_vicreg.py): 0.99, not 1.98.
    constant = torch.ones(8, 4)
    out = vicreg_loss(constant, constant.clone())
    assert out.invariance.item() == 0.0
    assert out.variance.item() == pytest.approx(0.99, abs=1e-6)
    assert out.loss.item() == pytest.approx(25 * 0.99, abs=1e-4)
    # One branch collapsed, the other spread (std sqrt(2) > 1): half of 0.99.
    spread = torch.tensor([[1.0] * 4, [-1.0] * 4] * 4)
    assert vicreg_loss(constant, spread).variance.item() == pytest.approx(0.99 / 2, abs=1e-6)
    assert out.covariance.item() == 0.0
    # Two identical columns x = (1, -1): unbiased variance 2, covariance matrix all 2s;
    # off-diagonal squares 2 * 4 = 8, / D = 4 per branch.
    z = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    out = vicreg_loss(z, z.clone())
    assert out.covariance.item() == pytest.approx(8.0)
    assert out.variance.item() == 0.0  # std sqrt(2) > 1: no hinge
    # Invariance is the mean squared error: a shift by 0.5 everywhere costs 0.25.
    assert vicreg_loss(z, z + 0.5).invariance.item() == pytest.approx(0.25)


def test_weights_combine_the_terms_and_loss_is_symmetric():
    gen = torch.Generator().manual_seed(0)
    z_a, z_b = torch.randn(16, 8, generator=gen), torch.randn(16, 8, generator=gen) * 0.3
    out = vicreg_loss(z_a, z_b, 2.0, 3.0, 5.0)
    assert out.loss.item() == pytest.approx(
        (2 * out.invariance + 3 * out.variance + 5 * out.covariance).item(), rel=1e-6
    )
    assert vicreg_loss(z_b, z_a).loss.item() == pytest.approx(vicreg_loss(z_a, z_b).loss.item())
