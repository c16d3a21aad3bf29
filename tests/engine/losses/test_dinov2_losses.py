"""DINOv2's iBOT patch loss, KoLeo and Sinkhorn-Knopp against values worked out by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

from engine.losses.dinov2 import centered_softmax, ibot_patch_loss, koleo_loss, sinkhorn_knopp


def test_sinkhorn_balances_prototypes_and_rows_sum_to_one():
    torch.manual_seed(0)
    logits = torch.randn(64, 8) * 0.5
    targets = sinkhorn_knopp(logits, temperature=0.1, iterations=50)
    assert torch.allclose(targets.sum(dim=1), torch.ones(64), atol=1e-5)
    # converged: every prototype gets the same share of the batch, N / K
    assert torch.allclose(targets.sum(dim=0), torch.full((8,), 64 / 8), atol=1e-3)


def test_sinkhorn_three_iterations_by_hand():
    logits = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])  # T = 1: Q^T = [[1, 2], [1, 1]]
    q = torch.tensor([[1.0, 2.0], [1.0, 1.0]]).t()  # (K, N)
    q /= q.sum()
    for _ in range(3):
        q /= q.sum(dim=1, keepdim=True)
        q /= 2
        q /= q.sum(dim=0, keepdim=True)
        q /= 2
    expected = (q * 2).t()
    assert torch.allclose(sinkhorn_knopp(logits, 1.0), expected, atol=1e-6)


def test_sinkhorn_with_a_reduce_over_two_halves_equals_the_whole_batch():
    torch.manual_seed(1)
    logits = torch.randn(10, 6)
    whole = sinkhorn_knopp(logits, 0.2)
    # Simulate two processes: `reduce` adds the other half's partial sums. Row sums (over N)
    # and the total need the sum over both halves; the column step is per sample (local).
    halves = logits[:5], logits[5:]

    def run(part: int) -> torch.Tensor:
        other = halves[1 - part]
        state = {"calls": 0}

        def reduce(t: torch.Tensor) -> torch.Tensor:
            # recompute the other half's matching partial sum by replaying the same steps
            state["calls"] += 1
            return t + partial[state["calls"] - 1]

        return sinkhorn_knopp(halves[part], 0.2, reduce=reduce, total_rows=10), other

    # The other half's partial sums, replayed step by step (what all_reduce would add).
    q0 = torch.exp(halves[0] / 0.2).t()
    q1 = torch.exp(halves[1] / 0.2).t()
    partial = []
    total = q0.sum() + q1.sum()
    partial.append(q1.sum().reshape(1))
    q0, q1 = q0 / total, q1 / total
    for _ in range(3):
        rows = q0.sum(dim=1, keepdim=True) + q1.sum(dim=1, keepdim=True)
        partial.append(q1.sum(dim=1, keepdim=True))
        q0, q1 = q0 / rows / 6, q1 / rows / 6
        q0, q1 = q0 / q0.sum(dim=0, keepdim=True) / 10, q1 / q1.sum(dim=0, keepdim=True) / 10
    first, _ = run(0)
    assert torch.allclose(first, whole[:5], atol=1e-6)


def test_ibot_loss_weights_each_crop_by_its_masked_count_and_divides_by_crops():
    masks = torch.tensor([[True, True, False], [False, False, False], [True, False, False]])
    teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    student = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0], [0.0, 0.0]])
    log_p = F.log_softmax(student, dim=-1)  # temperature 1
    ce = -(teacher * log_p).sum(dim=-1)  # per masked patch
    # crop 0 has 2 masked patches (weight 1/2 each), crop 1 none, crop 2 one (weight 1)
    expected = (ce[0] / 2 + ce[1] / 2 + ce[2]) / 3
    got = ibot_patch_loss(student, teacher, masks, student_temperature=1.0)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_ibot_loss_refuses_mismatched_counts():
    with pytest.raises(ValueError, match="masked patches"):
        ibot_patch_loss(torch.zeros(2, 4), torch.zeros(2, 4), torch.tensor([[True, False]]))


def test_koleo_of_a_square_on_the_circle():
    # Four unit vectors at 90 degrees: each nearest neighbour is sqrt(2) away.
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]) * 3.0
    assert koleo_loss(features).item() == pytest.approx(-math.log(math.sqrt(2.0)), abs=1e-6)


def test_koleo_grows_as_two_samples_coincide_and_has_a_gradient():
    near = torch.tensor([[1.0, 0.0], [1.0, 1e-3], [0.0, 1.0]], requires_grad=True)
    far = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    assert koleo_loss(near) > koleo_loss(far)
    koleo_loss(near).backward()
    assert near.grad is not None and torch.isfinite(near.grad).all()


def test_centered_softmax_is_dino_targets():
    logits, center = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[0.5, 0.5, 0.5]])
    expected = F.softmax((logits - center) / 0.04, dim=-1)
    assert torch.allclose(centered_softmax(logits, center, 0.04), expected)
