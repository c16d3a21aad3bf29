"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR.

Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations",
equation (1): for 2N views, the positive of view i is the other view of the same image and the
2N - 2 views of the other images are its negatives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def nt_xent_loss(z_a: Tensor, z_b: Tensor, temperature: float = 0.5) -> Tensor:
    """Mean NT-Xent over all 2N anchors.

    Args:
        z_a: (N, D) projections of the first view of each image.
        z_b: (N, D) projections of the second view, row i the same image as z_a[i].
        temperature: softmax temperature tau (> 0).
    Returns:
        Scalar fp32 loss.
    """
    if z_a.shape != z_b.shape or z_a.ndim != 2:
        raise ValueError(
            f"expected two (N, D) tensors of one shape, got {tuple(z_a.shape)} "
            f"and {tuple(z_b.shape)}"
        )
    n = z_a.shape[0]
    z = F.normalize(torch.cat([z_a, z_b]).float(), dim=1)  # (2N, D)
    logits = z @ z.T / temperature  # (2N, 2N) cosine similarities / tau
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))  # an anchor is not its own negative
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, positives)
