"""Masks from attention maps and their Jaccard with a ground truth: pure tensor functions
shared by the `segmentation` protocol and the Attention lens (DINO, Caron et al. 2021,
`visualize_attention.py` and table 7)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

KEEP = 0.6  # DINO's threshold: the mask keeps 60% of the attention mass


def keep_masks(attention: Tensor, keep: float = KEEP) -> Tensor:
    """Attention maps (..., g, g), non-negative -> bool (..., g, g): per map, the fewest highest
    patches whose sum is at least `keep` of the map's total (`visualize_attention.py`'s
    th_attn: sorted ascending, cumulative share > 1 - keep; ties keep the earlier patch)."""
    shape = attention.shape
    flat = attention.reshape(-1, shape[-2] * shape[-1]).double()  # (M, g*g)
    values, order = flat.sort(dim=1, descending=True, stable=True)
    total = values.sum(dim=1, keepdim=True).clamp_min(1e-300)
    before = (values.cumsum(dim=1) - values) / total  # share carried by the higher patches
    kept = before < keep - 1e-12  # (M, g*g) in sorted order
    mask = torch.zeros_like(kept).scatter(1, order, kept)
    return mask.reshape(shape)


def upsample_masks(masks: Tensor, size: int) -> Tensor:
    """bool (..., g, g) patch masks -> bool (..., size, size), each patch a block of pixels."""
    grid = masks.shape[-1]
    if size % grid == 0:
        factor = size // grid
        return masks.repeat_interleave(factor, -2).repeat_interleave(factor, -1)
    lead = masks.shape[:-2]
    flat = masks.reshape(-1, 1, grid, grid).float()
    return (F.interpolate(flat, size=(size, size), mode="nearest") > 0.5).reshape(*lead, size, size)


def jaccard(predicted: Tensor, truth: Tensor) -> Tensor:
    """Intersection over union of bool masks (..., H, W) -> (...,); 1 where both are empty."""
    predicted, truth = predicted.bool(), truth.bool()
    inter = (predicted & truth).flatten(-2).sum(-1).double()
    union = (predicted | truth).flatten(-2).sum(-1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
