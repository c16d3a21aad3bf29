"""DINO loss against a hand-worked value and the paper's Algorithm 1; the centre update."""

import math

import pytest
import torch
import torch.nn.functional as F

from engine.losses.dino import dino_loss, updated_center


def test_hand_worked_value_with_centering():
    # Teacher logits [1, 0] minus centre [1, 0] -> uniform targets; temperatures 1.
    teacher = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]]])  # (G=2, B=1, K=2)
    student = torch.tensor([[[0.0, math.log(3.0)]], [[0.0, 0.0]]])  # softmax [1/4, 3/4], [1/2, 1/2]
    center = torch.tensor([[1.0, 0.0]])
    loss = dino_loss(student, teacher, center, student_temperature=1.0, teacher_temperature=1.0)
    # H(t1, s2) = ln 2; H(t2, s1) = -(ln(1/4) + ln(3/4)) / 2 = ln 2 + ln(4/3) / 2; mean of both.
    assert loss.item() == pytest.approx(math.log(2) + math.log(4 / 3) / 4, abs=1e-6)


def _algorithm_1(s1, s2, t1, t2, center, tps, tpt):
    """DINO paper, Algorithm 1 (PyTorch pseudocode), for two crops."""

    def H(t, s):
        t = t.detach()
        s = F.softmax(s / tps, dim=1)
        t = F.softmax((t - center) / tpt, dim=1)
        return -(t * torch.log(s)).sum(dim=1).mean()

    return H(t1, s2) / 2 + H(t2, s1) / 2


@pytest.mark.parametrize("batch", [1, 3, 16])
def test_matches_algorithm_1_for_two_crops(batch):
    gen = torch.Generator().manual_seed(batch)
    s1, s2, t1, t2 = (torch.randn(batch, 32, generator=gen) for _ in range(4))
    center = torch.randn(1, 32, generator=gen)
    ours = dino_loss(torch.stack([s1, s2]), torch.stack([t1, t2]), center, 0.1, 0.04)
    assert ours.item() == pytest.approx(
        _algorithm_1(s1, s2, t1, t2, center, 0.1, 0.04).item(), rel=1e-5
    )


def test_multi_crop_matches_the_reference_loop():
    """main_dino.py DINOLoss.forward: every teacher crop against every other student crop."""
    gen = torch.Generator().manual_seed(0)
    batch, crops, k = 4, 6, 10
    student = torch.randn(crops * batch, k, generator=gen)
    teacher = torch.randn(2 * batch, k, generator=gen)
    center = torch.randn(1, k, generator=gen)
    student_out = (student / 0.1).chunk(crops)
    teacher_out = F.softmax((teacher - center) / 0.05, dim=-1).chunk(2)
    total, n = 0.0, 0
    for iq, q in enumerate(teacher_out):
        for v in range(len(student_out)):
            if v == iq:
                continue
            total += torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1).mean()
            n += 1
    ours = dino_loss(student.view(crops, batch, k), teacher.view(2, batch, k), center, 0.1, 0.05)
    assert ours.item() == pytest.approx((total / n).item(), rel=1e-5)


def test_minimum_is_the_teacher_entropy_and_no_gradient_reaches_the_teacher():
    gen = torch.Generator().manual_seed(1)
    teacher = torch.randn(2, 5, 8, generator=gen, requires_grad=True)
    center = torch.zeros(1, 8)
    target = F.softmax(teacher.detach() / 0.5, dim=-1)
    # Student crops 0 and 1 predict the *other* global crop's target exactly.
    best = torch.stack([target[1], target[0]]).log() * 0.1
    entropy = -(target * target.log()).sum(-1).mean()
    assert dino_loss(best, teacher, center, 0.1, 0.5).item() == pytest.approx(
        entropy.item(), rel=1e-4
    )
    worse = (best + 0.3 * torch.randn(best.shape, generator=gen)).requires_grad_()
    loss = dino_loss(worse, teacher, center, 0.1, 0.5)
    assert loss.item() > entropy.item()
    loss.backward()
    assert teacher.grad is None and worse.grad is not None


def test_centre_update_formula():
    center = torch.tensor([[1.0, -2.0, 0.5]])
    teacher = torch.tensor([[0.0, 1.0, 2.0], [2.0, 3.0, -2.0]])
    out = updated_center(center, teacher, momentum=0.9)
    expected = 0.9 * center + 0.1 * teacher.mean(dim=0, keepdim=True)
    assert out.shape == (1, 3) and torch.allclose(out, expected)
    assert torch.equal(updated_center(center, teacher, momentum=1.0), center)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="V >= G"):
        dino_loss(torch.zeros(1, 2, 4), torch.zeros(2, 2, 4), torch.zeros(1, 4))
