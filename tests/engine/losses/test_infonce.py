import math

import pytest
import torch

from engine.losses.infonce import info_nce_loss


def test_hand_worked_value():
    # q = k = (1, 0); negatives (0, 1) and (-1, 0); t = 1: logits [1, 0, -1] with the positive
    # first, so the loss is -log(e / (e + 1 + e^-1)) = log(1 + e^-1 + e^-2).
    q = torch.tensor([[1.0, 0.0]])
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    expected = math.log(1 + math.exp(-1) + math.exp(-2))
    assert info_nce_loss(q, q.clone(), queue, 1.0).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.407606, rel=1e-5)


def _algorithm_1(q, k, queue, t):
    """MoCo, arXiv:1911.05722, Algorithm 1, written with Python loops:
    l_pos = bmm(q.view(N,1,C), k.view(N,C,1)); l_neg = mm(q.view(N,C), queue.view(C,K));
    logits = cat([l_pos, l_neg], dim=1); loss = CrossEntropyLoss(logits/t, labels=zeros(N)),
    with q, k and the queue's keys L2-normalised (the paper normalises them in the encoder)."""

    def unit(v):
        norm = math.sqrt(sum(x * x for x in v))
        return [x / norm for x in v]

    q, k, queue = [unit(v) for v in q], [unit(v) for v in k], [unit(v) for v in queue]
    total = 0.0
    for qi, ki in zip(q, k):
        logits = [sum(a * b for a, b in zip(qi, ki)) / t]
        logits += [sum(a * b for a, b in zip(qi, neg)) / t for neg in queue]
        total += -logits[0] + math.log(sum(math.exp(x) for x in logits))
    return total / len(q)


@pytest.mark.parametrize("n,d,k", [(1, 2, 1), (4, 8, 16), (7, 5, 33)])
@pytest.mark.parametrize("t", [0.07, 0.2, 1.0])
def test_matches_algorithm_1(n, d, k, t):
    g = torch.Generator().manual_seed(n * 1000 + d * 10 + k)
    q, key, queue = (torch.randn(m, d, generator=g) for m in (n, n, k))
    expected = _algorithm_1(q.tolist(), key.tolist(), queue.tolist(), t)
    assert info_nce_loss(q, key, queue, t).item() == pytest.approx(expected, rel=1e-5)


def test_gradient_reaches_queries_only():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(4, 8, generator=g, requires_grad=True)
    k = torch.randn(4, 8, generator=g, requires_grad=True)
    queue = torch.randn(10, 8, generator=g, requires_grad=True)
    info_nce_loss(q, k, queue, 0.2).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None and queue.grad is None


def test_scale_invariant_and_aligned_positive_beats_random():
    g = torch.Generator().manual_seed(1)
    q, queue = torch.randn(8, 16, generator=g), torch.randn(32, 16, generator=g)
    base = info_nce_loss(q, q, queue, 0.2)
    assert info_nce_loss(2 * q, 0.5 * q, 3 * queue, 0.2).item() == pytest.approx(
        base.item(), rel=1e-5
    )
    assert base < info_nce_loss(q, torch.randn(8, 16, generator=g), queue, 0.2)


def test_shape_errors():
    with pytest.raises(ValueError, match="one \\(N, D\\) shape"):
        info_nce_loss(torch.zeros(4, 3), torch.zeros(5, 3), torch.zeros(6, 3))
    with pytest.raises(ValueError, match="negatives"):
        info_nce_loss(torch.zeros(4, 3), torch.zeros(4, 3), torch.zeros(6, 2))
