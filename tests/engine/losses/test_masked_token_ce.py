"""BEiT's masked-token cross-entropy: a hand value and transformers' own loss."""

import math

import pytest
import torch

from engine.losses.masked_token_ce import masked_token_cross_entropy


def test_hand_worked_value_counts_masked_positions_only():
    logits = torch.zeros(1, 3, 4)  # uniform over 4 tokens everywhere ...
    logits[0, 1] = torch.tensor([math.log(3.0), 0.0, 0.0, 0.0])  # ... but position 1: p(0) = 1/2
    codes = torch.tensor([[2, 0, 1]])
    mask = torch.tensor([[True, True, False]])
    expected = (math.log(4) + math.log(2)) / 2
    assert masked_token_cross_entropy(logits, codes, mask).item() == pytest.approx(expected)


def test_equals_transformers_beit_loss():
    from transformers import BeitConfig, BeitForMaskedImageModeling

    torch.manual_seed(0)
    model = BeitForMaskedImageModeling(
        BeitConfig(
            vocab_size=16,
            image_size=8,
            patch_size=4,
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=16,
            use_mask_token=True,
            use_absolute_position_embeddings=True,
        )
    ).eval()
    pixels = torch.randn(2, 3, 8, 8)
    codes = torch.randint(0, 16, (2, 4))
    mask = torch.tensor([[True, False, True, False], [False, False, False, True]])
    out = model(pixel_values=pixels, bool_masked_pos=mask, labels=codes[mask])
    ours = masked_token_cross_entropy(out.logits, codes, mask)
    assert ours.item() == pytest.approx(out.loss.item(), rel=1e-5)
