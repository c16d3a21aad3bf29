"""The GPT loss is cross-entropy of the logits shifted by one; it equals transformers' own."""

import math

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from engine.losses.next_token import next_token_loss


def test_equals_shifted_cross_entropy_by_loop():
    torch.manual_seed(0)
    logits, ids = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    terms = [
        -torch.log_softmax(logits[b, t], -1)[ids[b, t + 1]] for b in range(2) for t in range(4)
    ]
    assert math.isclose(
        next_token_loss(logits, ids).item(), torch.stack(terms).mean().item(), rel_tol=1e-6
    )


def test_matches_gpt2_lm_head_loss():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    ).eval()
    ids = torch.randint(0, 50, (3, 12))
    out = model(input_ids=ids, labels=ids)
    assert torch.allclose(next_token_loss(out.logits, ids), out.loss, atol=1e-5)
