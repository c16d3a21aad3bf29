"""Blockwise masking of image patches, drawn per sample.

Bao, Dong, Piao, Wei 2021, "BEiT: BERT Pre-Training of Image Transformers" (arXiv:2106.08254),
Algorithm 1: rectangular blocks of at least ``min_block`` patches with aspect ratio in
[0.3, 1/0.3] are added until the budget of masked patches is used up. Written as in the
authors' ``MaskingGenerator`` (a block is kept only if it adds at least one new patch and does
not overshoot the budget; ten tries per block, then the sample stops short), but for a whole batch
at once: every sample draws its own blocks in the same tensor operations.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from engine.errors import SpecError


def blockwise_mask(
    batch: int,
    height: int,
    width: int,
    num_masked: int,
    *,
    min_block: int = 16,
    max_aspect: float = 1 / 0.3,
    tries: int = 10,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Boolean masks (batch, height * width), row-major like the patch sequence of a ViT.

    Each row has at most ``num_masked`` True entries (and reaches it unless ten successive
    tries to place a block fail, which the paper's code also allows).
    """
    if not 0 < num_masked <= height * width:
        raise SpecError(
            f"cannot mask {num_masked} of {height * width} patches; "
            f"pick a mask ratio that hides at least one patch and not all"
        )
    if min_block < 1 or max_aspect < 1:
        raise SpecError("min_block must be >= 1 and max_aspect >= 1")
    log_aspect = (math.log(1 / max_aspect), math.log(max_aspect))
    rows = torch.arange(height)[None, None, :, None]  # (1, 1, H, 1)
    cols = torch.arange(width)[None, None, None, :]  # (1, 1, 1, W)
    mask = torch.zeros(batch, height, width, dtype=torch.bool)
    count = torch.zeros(batch, dtype=torch.long)
    active = torch.ones(batch, dtype=torch.bool)
    samples = torch.arange(batch)

    def uniform(low: Tensor | float, high: Tensor | float) -> Tensor:  # (B, tries)
        return low + (high - low) * torch.rand(batch, tries, generator=generator)

    while active.any():
        remaining = (num_masked - count).float()[:, None]  # (B, 1)
        # random.uniform(min_block, remaining) of the reference, also when remaining < min_block
        area = uniform(float(min_block), remaining)  # (B, tries)
        aspect = torch.exp(uniform(*log_aspect))
        block_h = torch.sqrt(area * aspect).round().long()
        block_w = torch.sqrt(area / aspect).round().long()
        fits = (block_h < height) & (block_w < width)
        # random.randint(0, H - h) inclusive: H - h + 1 choices
        top = (uniform(0.0, 1.0) * (height - block_h + 1).clamp(min=1)).floor().long()
        left = (uniform(0.0, 1.0) * (width - block_w + 1).clamp(min=1)).floor().long()
        block = (
            (rows >= top[..., None, None])
            & (rows < (top + block_h)[..., None, None])
            & (cols >= left[..., None, None])
            & (cols < (left + block_w)[..., None, None])
        )
        new = (block & ~mask[:, None]).sum(dim=(2, 3))  # (B, tries) patches a block would add
        ok = fits & (new > 0) & (new <= remaining.long()) & active[:, None]
        placed = ok.any(dim=1)  # (B,)
        first = ok.int().argmax(dim=1)  # the first try that worked
        mask |= block[samples, first] & placed[:, None, None]
        count += torch.where(placed, new[samples, first], 0)
        active &= placed & (count < num_masked)
    return mask.flatten(1)
