"""Cross-entropy on the discrete codes of masked patches (BEiT's masked image modeling).

Bao, Dong, Piao, Wei 2021, "BEiT: BERT Pre-Training of Image Transformers" (arXiv:2106.08254),
equation (1): maximise the log-likelihood of the correct visual token at each masked position;
visible positions carry no loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def masked_token_cross_entropy(logits: Tensor, codes: Tensor, mask: Tensor) -> Tensor:
    """Mean cross-entropy over masked positions.

    Args:
        logits: (B, L, V) scores over the V visual tokens at each of L patch positions.
        codes: (B, L) the visual token of each patch (int64).
        mask: (B, L) bool, True where the patch was masked.
    Returns:
        Scalar fp32 loss.
    """
    if logits.shape[:2] != codes.shape or codes.shape != mask.shape:
        raise ValueError(
            f"expected logits (B, L, V), codes and mask (B, L), got "
            f"{tuple(logits.shape)}, {tuple(codes.shape)}, {tuple(mask.shape)}"
        )
    if not mask.any():
        raise ValueError("no masked patch: the loss is undefined")
    with torch.autocast(logits.device.type, enabled=False):
        return F.cross_entropy(logits[mask].float(), codes[mask])
