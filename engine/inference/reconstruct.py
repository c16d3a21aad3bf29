"""The MAE lens: hide patches, let the model paint them back.

He et al. 2021 (arXiv:2111.06377), figures 2-4 and the authors' visualisation notebook: the
original, the masked input the encoder sees, the decoder's reconstruction, and the
reconstruction with the visible patches pasted back. A model trained on normalised-pixel targets
predicts each patch's pixels up to its mean and variance; they are taken from the original
patch for display, as the notebook does. The mask comes from a seeded noise passed to the model
(ViTMAE keeps the patches with the lowest noise), and the mask ratio is set on the model's
shared config for the call only, under the cached model's lock.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine import checks
from engine.inference import render
from engine.inference.images import center_square, model_input
from engine.inference.models import Lens, LensError, LensModel

RECONSTRUCT = Lens(
    "reconstruct",
    "MAE reconstruction",
    model_types=("vit_mae",),
    wants="a masked autoencoder with its decoder: an MAE run, or a Hub id such as "
    "facebook/vit-mae-base",
    suggestions=("facebook/vit-mae-base",),
)
MASK_GREY = 128  # hidden patches in the masked-input panel
MAX_MASK_RATIO = 0.95


def decoder_missing(lm: LensModel) -> bool:
    """Whether the checkpoint lacks the decoder (an encoder-only `ViTMAEModel` save): its
    decoder would be freshly initialised, and its pictures noise."""
    if lm.weight_names is not None:
        return not any(name.startswith("decoder.") for name in lm.weight_names)
    architectures = getattr(lm.model.config, "architectures", None) or []
    return bool(architectures) and "ViTMAEForPreTraining" not in architectures


def _unit_to_uint8(x: Any) -> np.ndarray:
    """float (3, S, S) in [0, 1] -> uint8 (S, S, 3)."""
    return (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def reconstruct(
    lm: LensModel, image: np.ndarray, mask_ratio: float = 0.75, seed: int = 0
) -> dict[str, Any]:
    """Four panels for `image` (H, W, 3 uint8) at `mask_ratio` with the mask drawn from `seed`.

    Returns {"original", "masked", "reconstruction", "pasted": uint8 (s, s, 3) panels at the
    model's resolution times a whole factor ("reconstruction" and "pasted" are None when the
    checkpoint has no decoder), "mask": bool (g, g), True on hidden patches, "visible_patches",
    "num_patches", "loss": mean squared error on the hidden patches in the training target's
    space (None without a decoder), "norm_pix_loss", "warning" (or None), "model", "psnr",
    "psnr_mean_colour", "psnr_nearest_visible": dB on the hidden patches of the reconstruction
    and of the `reconstruction` protocol's two fills without a network (None without a decoder
    or a hidden patch)}. Visible patches of "pasted" are the original's pixels exactly.
    """
    import torch

    ratio = checks.number(mask_ratio, "mask ratio", error=LensError)
    if not 0.0 <= ratio <= MAX_MASK_RATIO:
        raise LensError(f"mask ratio must be from 0 to {MAX_MASK_RATIO}, got {mask_ratio}")
    seed = checks.whole_number(seed, "seed", 0, checks.MAX_SEED, LensError)
    model, config = lm.model, lm.model.config
    size, patch = lm.image_size, lm.patch_size
    grid = size // patch
    num_patches = grid * grid
    mean, std = lm.image_stats
    uint8, pixels = model_input(center_square(image), size, mean, std)  # (1, 3, S, S)
    noise = torch.rand(1, num_patches, generator=torch.Generator().manual_seed(seed))
    missing = decoder_missing(lm)
    with lm.lock, torch.inference_mode():
        saved, config.mask_ratio = config.mask_ratio, ratio
        try:
            if missing:  # the encoder alone gives the mask; no garbage pictures
                out = model.vit(pixel_values=pixels, noise=noise)
            else:
                out = model(pixel_values=pixels, noise=noise)
        finally:
            config.mask_ratio = saved
    hidden = out.mask[0].bool()  # (L,), True = hidden from the encoder
    # (L,) -> (S, S) pixel mask, patches in row-major order
    pixel_mask = hidden.view(grid, grid).repeat_interleave(patch, 0).repeat_interleave(patch, 1)
    original = uint8[0].permute(1, 2, 0).numpy()  # (S, S, 3)
    visible = ~pixel_mask.numpy()[:, :, None]
    masked = np.where(visible, original, np.uint8(MASK_GREY))
    factor = render.display_factor(size)
    result: dict[str, Any] = {
        "original": render.upscale(original, factor),
        "masked": render.upscale(masked, factor),
        "reconstruction": None,
        "pasted": None,
        "mask": hidden.view(grid, grid).numpy(),
        "visible_patches": int((~hidden).sum()),
        "num_patches": num_patches,
        "loss": None,
        "norm_pix_loss": bool(getattr(config, "norm_pix_loss", False)),
        "warning": None,
        "model": lm.label,
        "psnr": None,
        "psnr_mean_colour": None,
        "psnr_nearest_visible": None,
    }
    if missing:
        result["warning"] = (
            f"{lm.label} has no decoder weights (an encoder-only save), so "
            "it cannot reconstruct; only the mask is shown. Use an MAE run or "
            "a full ViTMAEForPreTraining checkpoint."
        )
        return result
    prediction = out.logits.float()  # (1, L, p*p*3) in the target's space
    if hidden.any():
        from engine.evaluation.reconstruction import hidden_patch_psnr

        scores = hidden_patch_psnr(model, pixels, out.mask.bool(), prediction, mean, std)
        result.update({name: round(float(value[0]), 2) for name, value in scores.items()})
    target = model.patchify(pixels)  # (1, L, p*p*3)
    if result["norm_pix_loss"]:
        patch_mean = target.mean(dim=-1, keepdim=True)
        patch_std = (target.var(dim=-1, keepdim=True) + 1e-6) ** 0.5
        per_patch = ((prediction - (target - patch_mean) / patch_std) ** 2).mean(dim=-1)
        prediction = prediction * patch_std + patch_mean  # back to normalised pixels
    else:
        per_patch = ((prediction - target) ** 2).mean(dim=-1)
    result["loss"] = float((per_patch[0] * hidden).sum() / hidden.sum()) if hidden.any() else None
    picture = model.unpatchify(prediction, (size, size))[0]  # (3, S, S) normalised
    mean_t = torch.tensor(mean)[:, None, None]
    std_t = torch.tensor(std)[:, None, None]
    reconstruction = _unit_to_uint8(picture * std_t + mean_t)
    pasted = np.where(visible, original, reconstruction)
    result["reconstruction"] = render.upscale(reconstruction, factor)
    result["pasted"] = render.upscale(pasted, factor)
    return result
