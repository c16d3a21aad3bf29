"""CLIP's symmetric InfoNCE: a hand-computed 2x2 case, symmetry, and the temperature clamp."""

import math

import torch

from engine.losses.clip import MAX_LOGIT_SCALE, clamp_logit_scale_, clip_loss


def test_two_by_two_by_hand():
    # Orthogonal unit vectors, texts matched: cosines [[1, 0], [0, 1]]; scale e^0 = 1.
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    expected = -math.log(math.e / (math.e + 1))  # each row: softmax([1, 0])[0]
    assert math.isclose(clip_loss(image, text, torch.tensor(0.0)).item(), expected, rel_tol=1e-6)
    # Non-unit inputs are normalised; a logit scale of log 2 doubles the cosines.
    text = torch.tensor([[3.0, 0.0], [1.0, 1.0]])  # cosines [[1, 1/sqrt2], [0, 1/sqrt2]]
    c = 2 / math.sqrt(2)
    logits = torch.tensor([[2.0, c], [0.0, c]])
    rows = -(torch.log_softmax(logits, 1)[0, 0] + torch.log_softmax(logits, 1)[1, 1]) / 2
    cols = -(torch.log_softmax(logits, 0)[0, 0] + torch.log_softmax(logits, 0)[1, 1]) / 2
    got = clip_loss(image * 5, text, torch.tensor(math.log(2.0)))
    assert torch.allclose(got, (rows + cols) / 2, atol=1e-6)


def test_symmetric_in_image_and_text():
    torch.manual_seed(0)
    for batch in (2, 5, 16):
        a, b = torch.randn(batch, 8), torch.randn(batch, 8)
        scale = torch.tensor(1.3)
        assert torch.allclose(clip_loss(a, b, scale), clip_loss(b, a, scale), atol=1e-6)


def test_matched_pairs_score_lower_than_shuffled():
    torch.manual_seed(1)
    a = torch.randn(8, 16)
    assert clip_loss(a, a, torch.tensor(2.0)) < clip_loss(a, a.roll(1, 0), torch.tensor(2.0))


def test_logit_scale_clamped_at_log_100():
    scale = torch.nn.Parameter(torch.tensor(7.0))
    clamp_logit_scale_(scale)
    assert math.isclose(scale.item(), math.log(100), rel_tol=1e-6)
    assert math.isclose(MAX_LOGIT_SCALE, math.log(100))
    scale.data.fill_(-1.0)
    clamp_logit_scale_(scale)
    assert scale.item() == 0.0
