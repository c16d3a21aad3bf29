import math

import pytest
import torch

from engine.losses.nt_xent import nt_xent_loss


def test_orthogonal_2x2_by_hand():
    # Views v0=(1,0), v1=(0,1), v2=(1,0), v3=(0,1); every anchor has cosine 1 with its positive
    # and 0 with both negatives, so each term is -log(e^(1/t) / (e^(1/t) + 2)).
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = 0.5
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2))  # = log(1 + 2 e^-2)
    assert nt_xent_loss(z, z.clone(), t).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.239543, rel=1e-5)


def _paper_loss(z_a, z_b, t):
    """Equation (1) of the SimCLR paper, written as loops over the 2N views."""
    views = [[x / math.sqrt(sum(y * y for y in v)) for x in v] for v in (z_a + z_b)]
    n = len(z_a)

    def sim(i, j):
        return sum(a * b for a, b in zip(views[i], views[j]))

    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        denom = sum(math.exp(sim(i, k) / t) for k in range(2 * n) if k != i)
        total += -math.log(math.exp(sim(i, j) / t) / denom)
    return total / (2 * n)


@pytest.mark.parametrize("n,d", [(2, 2), (3, 5), (8, 16)])
@pytest.mark.parametrize("t", [0.1, 0.5, 1.0])
def test_matches_paper_formulation(n, d, t):
    g = torch.Generator().manual_seed(n * 100 + d)
    z_a, z_b = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    expected = _paper_loss(z_a.tolist(), z_b.tolist(), t)
    assert nt_xent_loss(z_a, z_b, t).item() == pytest.approx(expected, rel=1e-5)


def test_invariant_to_scale_and_symmetric():
    g = torch.Generator().manual_seed(0)
    z_a, z_b = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    base = nt_xent_loss(z_a, z_b, 0.2)
    assert nt_xent_loss(3 * z_a, 0.5 * z_b, 0.2).item() == pytest.approx(base.item(), rel=1e-5)
    assert nt_xent_loss(z_b, z_a, 0.2).item() == pytest.approx(base.item(), rel=1e-5)


def test_perfect_alignment_beats_random():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(16, 32, generator=g)
    assert nt_xent_loss(z, z, 0.1) < nt_xent_loss(z, torch.randn(16, 32, generator=g), 0.1)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same shape|one shape"):
        nt_xent_loss(torch.zeros(4, 3), torch.zeros(5, 3))
