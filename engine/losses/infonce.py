"""InfoNCE with a queue of negatives, the loss of MoCo.

He, Fan, Wu, Xie, Girshick 2020, "Momentum Contrast for Unsupervised Visual Representation
Learning" (arXiv:1911.05722), equation (1) and Algorithm 1; MoCo v2 (Chen, Fan, Girshick, He 2020,
arXiv:2003.04297) keeps the loss and lowers the temperature to 0.2. Each query has one positive
key (the other view of its image, from the momentum encoder) and K negatives (keys of earlier
batches held in a queue); the loss is a (K+1)-way softmax cross-entropy that picks the positive.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def info_nce_loss(
    queries: Tensor, keys: Tensor, negatives: Tensor, temperature: float = 0.2
) -> Tensor:
    """Mean InfoNCE over the N queries.

    Args:
        queries: (N, D) query projections (gradients flow through these).
        keys: (N, D) positive keys, row i the other view of query i; treated as constants.
        negatives: (K, D) negative keys (the queue); treated as constants.
        temperature: softmax temperature tau (> 0).
    All three are L2-normalised here, so cosine similarities are compared.
    Returns:
        Scalar fp32 loss.
    """
    if queries.shape != keys.shape or queries.ndim != 2:
        raise ValueError(
            f"expected queries and keys of one (N, D) shape, got "
            f"{tuple(queries.shape)} and {tuple(keys.shape)}"
        )
    if negatives.ndim != 2 or negatives.shape[1] != queries.shape[1]:
        raise ValueError(
            f"expected negatives shaped (K, {queries.shape[1]}), got {tuple(negatives.shape)}"
        )
    q = F.normalize(queries.float(), dim=1)
    k = F.normalize(keys.detach().float(), dim=1)
    queue = F.normalize(negatives.detach().float(), dim=1)
    positive = (q * k).sum(dim=1, keepdim=True)  # (N, 1)
    negative = q @ queue.T  # (N, K)
    logits = torch.cat([positive, negative], dim=1) / temperature  # (N, 1 + K)
    labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)  # the positive is column 0
    return F.cross_entropy(logits, labels)
