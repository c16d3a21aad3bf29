"""The reconstruction loss of masked autoencoders.

He et al. 2021, "Masked Autoencoders Are Scalable Vision Learners", section 3: mean squared
error between predicted and original pixels, computed on masked patches only; with per-patch
normalised targets (mean and variance of each patch) the representation improves.
"""

from __future__ import annotations

from torch import Tensor


def masked_patch_mse(
    pred: Tensor, target: Tensor, mask: Tensor, norm_pix: bool = True, eps: float = 1e-6
) -> Tensor:
    """Mean over masked patches of the per-patch mean squared error.

    Args:
        pred: (B, L, P) predicted pixels per patch (P = patch_size**2 * channels).
        target: (B, L, P) original pixels per patch.
        mask: (B, L), 1 where the patch was masked (hidden from the encoder), 0 where visible.
        norm_pix: normalise each target patch by its own mean and variance first.
    Returns:
        Scalar fp32 loss.
    """
    pred, target, mask = pred.float(), target.float(), mask.float()
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)  # unbiased, as in the paper's code
        target = (target - mean) / (var + eps) ** 0.5
    per_patch = ((pred - target) ** 2).mean(dim=-1)  # (B, L)
    return (per_patch * mask).sum() / mask.sum().clamp(min=1.0)
