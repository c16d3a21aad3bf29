import math

import pytest
import torch

from engine.losses.byol import byol_loss, negative_cosine, normalized_mse, simsiam_loss


def test_hand_worked_values():
    p = torch.tensor([[1.0, 0.0]])
    # Orthogonal: 2 - 2 cos = 2; 45 degrees: 2 - 2 / sqrt(2); opposite: 4.
    assert normalized_mse(p, torch.tensor([[0.0, 3.0]])).item() == pytest.approx(2.0)
    assert normalized_mse(p, torch.tensor([[1.0, 1.0]])).item() == pytest.approx(
        2 - math.sqrt(2), rel=1e-6
    )
    assert normalized_mse(p, torch.tensor([[-2.0, 0.0]])).item() == pytest.approx(4.0)
    assert negative_cosine(p, torch.tensor([[1.0, 1.0]])).item() == pytest.approx(
        -1 / math.sqrt(2), rel=1e-6
    )


def test_simsiam_worked_example():
    # Row 1: D(p_a, z_b) = -cos((1, 0), (3, 4)) = -3/5; D(p_b, z_a) = -cos((0, 2), (5, 12))
    # = -24 / (2 x 13) = -12/13. Row 2: -cos((0, -1), (0, 1)) = +1; -cos((1, 1), (1, -1)) = 0.
    # Batch means 0.2 and -6/13; the loss is half their sum: 0.1 - 3/13 = -17/130.
    p_a = torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.float64, requires_grad=True)
    p_b = torch.tensor([[0.0, 2.0], [1.0, 1.0]], dtype=torch.float64)
    z_a = torch.tensor([[5.0, 12.0], [1.0, -1.0]], dtype=torch.float64)
    z_b = torch.tensor([[3.0, 4.0], [0.0, 1.0]], dtype=torch.float64)
    loss = simsiam_loss(p_a, p_b, z_a, z_b)
    assert loss.item() == pytest.approx(-17 / 130, abs=1e-7)
    # d(-cos(p, z))/dp = -(z/|z| - cos(p, z) p/|p|) / |p|, times 1/2 (symmetrised) and 1/2
    # (batch mean): row 1 -((0.6, 0.8) - 0.6 (1, 0)) / 4 = (0, -0.2); row 2, p opposite z: 0.
    loss.backward()
    assert p_a.grad.flatten().tolist() == pytest.approx([0.0, -0.2, 0.0, 0.0], abs=1e-7)


def _byol_equation_2(p, z):
    """BYOL (arXiv:2006.07733) equation 2: ||p/||p|| - z/||z||||^2, averaged over the batch."""
    total = 0.0
    for pi, zi in zip(p, z):
        pn, zn = math.sqrt(sum(x * x for x in pi)), math.sqrt(sum(x * x for x in zi))
        total += sum((a / pn - b / zn) ** 2 for a, b in zip(pi, zi))
    return total / len(p)


def _simsiam_algorithm_1(p1, p2, z1, z2):
    """SimSiam (arXiv:2011.10566) Algorithm 1: D(p, z) = -(normalize(p) * normalize(z)).sum(1)
    .mean(); L = D(p1, z2) / 2 + D(p2, z1) / 2."""

    def d(p, z):
        total = 0.0
        for pi, zi in zip(p, z):
            pn, zn = math.sqrt(sum(x * x for x in pi)), math.sqrt(sum(x * x for x in zi))
            total += -sum(a * b for a, b in zip(pi, zi)) / (pn * zn)
        return total / len(p)

    return d(p1, z2) / 2 + d(p2, z1) / 2


@pytest.mark.parametrize("n,d", [(1, 2), (5, 3), (16, 32)])
def test_match_the_papers(n, d):
    g = torch.Generator().manual_seed(n * 100 + d)
    p1, p2, z1, z2 = (torch.randn(n, d, generator=g) for _ in range(4))
    expected = _byol_equation_2(p1.tolist(), z2.tolist()) + _byol_equation_2(
        p2.tolist(), z1.tolist()
    )
    assert byol_loss(p1, p2, z1, z2).item() == pytest.approx(expected, rel=1e-5)
    expected = _simsiam_algorithm_1(p1.tolist(), p2.tolist(), z1.tolist(), z2.tolist())
    assert simsiam_loss(p1, p2, z1, z2).item() == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_identical_views_give_the_minimum():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    # Predictions that point exactly at the other view's target (any positive scale).
    assert byol_loss(3 * z2, 0.5 * z1, z1, z2).item() == pytest.approx(0.0, abs=1e-6)
    assert simsiam_loss(3 * z2, 0.5 * z1, z1, z2).item() == pytest.approx(-1.0, abs=1e-6)
    p1, p2 = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    assert byol_loss(p1, p2, z1, z2) > 0
    assert simsiam_loss(p1, p2, z1, z2) > -1


def test_symmetric_in_the_two_views():
    g = torch.Generator().manual_seed(2)
    p1, p2, z1, z2 = (torch.randn(6, 4, generator=g) for _ in range(4))
    assert byol_loss(p1, p2, z1, z2).item() == pytest.approx(
        byol_loss(p2, p1, z2, z1).item(), rel=1e-6
    )
    assert simsiam_loss(p1, p2, z1, z2).item() == pytest.approx(
        simsiam_loss(p2, p1, z2, z1).item(), rel=1e-6
    )


@pytest.mark.parametrize("loss", [byol_loss, simsiam_loss])
def test_stop_gradient_on_the_targets(loss):
    g = torch.Generator().manual_seed(3)
    p1, p2, z1, z2 = (torch.randn(4, 8, generator=g).requires_grad_() for _ in range(4))
    loss(p1, p2, z1, z2).backward()
    assert p1.grad.abs().sum() > 0 and p2.grad.abs().sum() > 0
    assert z1.grad is None and z2.grad is None


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="one shape"):
        normalized_mse(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="one shape"):
        negative_cosine(torch.zeros(3), torch.zeros(3))
