"""The language-modelling loss: predict token t+1 from tokens up to t.

Radford et al. 2018/2019 (GPT, GPT-2): cross-entropy of the logits at each position against
the next token of the same sequence.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def next_token_loss(logits: Tensor, input_ids: Tensor, ignore_index: int = -100) -> Tensor:
    """logits (B, T, V), input_ids (B, T) -> mean cross-entropy over the B * (T - 1) pairs."""
    shifted = logits[:, :-1].float()  # (B, T-1, V): predictions for positions 1..T-1
    target = input_ids[:, 1:]  # (B, T-1)
    return F.cross_entropy(
        shifted.reshape(-1, shifted.shape[-1]), target.reshape(-1), ignore_index=ignore_index
    )
