"""The `reconstruction` protocol: does an MAE paint the hidden patches better than a guess?

He et al. 2021 (MAE, arXiv:2111.06377) judge the reconstructions by eye (figures 2-4); here
they are scored: the PSNR of the decoder's output on the hidden patches of each test image
(pixels in [0, 1], PSNR = 10 log10(1 / MSE) over the hidden pixels, capped at 100 dB when the
MSE is 0), against two baselines that fill each hidden patch without a network: with the
image's mean colour (over the whole image: a generous baseline), and with its nearest visible
patch (grid distance between patch centres; ties go to the first in row-major order). The
mask is ViTMAE's own (seeded noise, the lowest `1 - mask_ratio` kept); the mean over images
of each PSNR is reported, and the margin of the MAE over the better baseline.

A model trained on normalised-pixel targets (`norm_pix_loss`, the default) predicts each
hidden patch up to its mean and variance; as the MAE notebook draws it, those two numbers come
from the original patch. To keep the comparison fair the baselines get them too: every fill
is rescaled to the hidden patch's own mean and standard deviation before scoring.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from engine.errors import SpecError

PSNR_CAP = 100.0  # dB, for a patch reconstructed exactly
Progress = Callable[[float, str], None]
FILLS = ("psnr", "psnr_mean_colour", "psnr_nearest_visible")


def psnr(predicted: Tensor, truth: Tensor, hidden: Tensor) -> Tensor:
    """PSNR (B,) in dB of patches (B, L, D) in [0, 1] over the hidden ones (bool (B, L))."""
    squared = ((predicted - truth) ** 2).mean(dim=-1)  # (B, L)
    count = hidden.sum(dim=1).clamp_min(1)
    mse = (squared * hidden).sum(dim=1) / count
    out = 10 * torch.log10(1.0 / mse.clamp_min(1e-300))
    return torch.where(mse > 10 ** (-PSNR_CAP / 10), out, torch.full_like(out, PSNR_CAP))


def nearest_visible(hidden: Tensor, grid: int) -> Tensor:
    """For each patch (B, L) the index of the nearest visible patch (by the distance between
    patch centres on the grid, ties to the lowest index); visible patches map to themselves."""
    rows = torch.arange(grid).repeat_interleave(grid)
    cols = torch.arange(grid).repeat(grid)
    where = torch.stack([rows, cols], dim=1).double()  # (L, 2)
    dist = torch.cdist(where, where)  # (L, L)
    dist = dist.expand(hidden.shape[0], -1, -1).clone()  # (B, L, L): to column m
    dist.masked_fill_(hidden[:, None, :], float("inf"))  # a hidden patch is no source
    return dist.argmin(dim=-1)  # (B, L): first minimum, so ties go to the lowest index


def _denormalise(normalised: Tensor, target: Tensor) -> Tensor:
    """Per-patch normalised values (B, L, D) back to pixels with each target patch's mean and
    std (MAE's eps), as the MAE notebook draws a `norm_pix_loss` prediction."""
    return normalised * (target.var(-1, keepdim=True) + 1e-6) ** 0.5 + target.mean(-1, keepdim=True)


def _with_stats_of(fill: Tensor, target: Tensor) -> Tensor:
    """`fill` patches (B, L, D) of pixels, standardised per patch, then given each target
    patch's mean and std: a baseline gets what a `norm_pix_loss` prediction gets."""
    fill_n = (fill - fill.mean(-1, keepdim=True)) / (fill.var(-1, keepdim=True) + 1e-6) ** 0.5
    return _denormalise(fill_n, target)


def hidden_patch_psnr(
    model: Any,
    pixels: Tensor,
    hidden: Tensor,
    prediction: Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> dict[str, Tensor]:
    """PSNR (B,) of the MAE's `prediction` (B, L, p*p*3, ViTMAE's `logits`, in its target's
    space) and of the two baseline fills, on the `hidden` patches (bool (B, L)) of normalised
    `pixels` (B, 3, S, S); keys FILLS."""
    target = model.patchify(pixels).float()  # (B, L, D) normalised pixels, channels last
    prediction = prediction.float()
    norm_pix = bool(getattr(model.config, "norm_pix_loss", False))
    if norm_pix:  # back from per-patch normalised targets, with the patch's own statistics
        # (not re-standardised: an unsure model's near-zero prediction stays the patch mean)
        prediction = _denormalise(prediction, target)
    grid = pixels.shape[-1] // model.config.patch_size
    # Fills, in the same normalised-pixel space as the target.
    colour = pixels.float().mean(dim=(2, 3))  # (B, 3): the whole image's mean colour
    per_patch = target.shape[-1] // 3  # p*p pixels of 3 channels
    mean_fill = (
        colour[:, None, None, :].expand(*target.shape[:2], per_patch, 3).reshape(target.shape)
    )
    source = nearest_visible(hidden, grid)  # (B, L)
    near_fill = target.gather(1, source[:, :, None].expand_as(target))
    if norm_pix:
        mean_fill, near_fill = _with_stats_of(mean_fill, target), _with_stats_of(near_fill, target)
    mean_t = torch.tensor(mean, dtype=torch.float32)
    std_t = torch.tensor(std, dtype=torch.float32)

    def unit(patches: Tensor) -> Tensor:  # normalised -> [0, 1] pixels, per channel
        shape = patches.shape
        out = patches.reshape(*shape[:2], -1, 3) * std_t + mean_t
        return out.clamp(0.0, 1.0).reshape(shape)

    truth = unit(target)
    return {
        name: psnr(unit(fill), truth, hidden)
        for name, fill in zip(FILLS, (prediction, mean_fill, near_fill), strict=True)
    }


def mae_model(method: Any, label: str) -> Any:
    """The ViTMAEForPreTraining of a run or a fresh method; SpecError for anything else."""
    model = getattr(method, "model", None)
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "vit_mae" or not hasattr(model, "patchify"):
        raise SpecError(
            f"reconstruction scores a masked autoencoder's decoder, and {label} is not one; "
            "evaluate an MAE run"
        )
    return model


@torch.no_grad()
def evaluate_reconstruction(
    model: Any,
    images: Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    mask_ratio: float = 0.75,
    seed: int = 0,
    batch_size: int = 128,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """The protocol on uint8 images (N, 3, S, S) at the model's size: mean PSNRs, the margin
    (MAE minus the better baseline, dB), and the settings."""
    if not 0.0 < mask_ratio < 1.0:
        raise SpecError(f"mask_ratio must be between 0 and 1, got {mask_ratio}")
    model.eval()
    config = model.config
    size = images.shape[-1]
    num_patches = (size // config.patch_size) ** 2
    generator = torch.Generator().manual_seed(int(seed))
    mean_t = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    std_t = torch.tensor(std, dtype=torch.float32)[:, None, None]
    scores: dict[str, list[Tensor]] = {name: [] for name in FILLS}
    device = next(model.parameters()).device
    saved, config.mask_ratio = config.mask_ratio, float(mask_ratio)
    try:
        for start in range(0, images.shape[0], batch_size):
            chunk = images[start : start + batch_size]
            pixels = (chunk.float() / 255.0 - mean_t) / std_t  # (B, 3, S, S)
            noise = torch.rand(chunk.shape[0], num_patches, generator=generator)
            out = model(pixel_values=pixels.to(device), noise=noise.to(device))
            hidden = out.mask.bool().cpu()  # (B, L), True = hidden from the encoder
            part = hidden_patch_psnr(model, pixels, hidden, out.logits.cpu(), mean, std)
            for name in FILLS:
                scores[name].append(part[name])
            if on_progress is not None:
                on_progress(min(1.0, (start + batch_size) / images.shape[0]), "reconstructing")
    finally:
        config.mask_ratio = saved
    result: dict[str, Any] = {name: float(torch.cat(scores[name]).mean()) for name in FILLS}
    result["margin_db"] = result["psnr"] - max(
        result["psnr_mean_colour"], result["psnr_nearest_visible"]
    )
    result.update(
        mask_ratio=float(mask_ratio),
        seed=int(seed),
        num_images=int(images.shape[0]),
        norm_pix_loss=bool(getattr(config, "norm_pix_loss", False)),
    )
    return result
