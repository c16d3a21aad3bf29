"""What the `reconstruction` protocol's hidden patches allow without a network: a smooth fill.

    python bench/inpainting.py [--dataset scenes] [--image-size 32] [--patch-size 4]
                               [--mask-ratio 0.75] [--count 1000] [--iterations 600]

Issue #17 asks an MAE quick run to beat the protocol's two fills (each hidden patch in the
image's mean colour, or as its nearest visible patch) by 2 dB. This prints, on the same test
images and the same seeded masks as `python -m engine eval --protocol reconstruction`, those
two fills and a third one that needs no training either: the harmonic (Laplace) inpainting of
the hidden pixels from the visible ones (Jacobi iterations, visible pixels held fixed), scored
as the protocol scores an MAE with and without `norm_pix_loss` (with it every fill gets each
hidden patch's own mean and standard deviation, as the MAE notebook draws a prediction). It
also prints the normalised-pixel loss of that fill, the figure an MAE's training loss with
`norm_pix_loss` is comparable to. An MAE whose reconstructions score below the smooth fill
has not yet learnt more than to blur its visible neighbours into the gaps.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.data.datasets import load_dataset
from engine.data.views import IMAGENET_MEAN, IMAGENET_STD
from engine.evaluation.reconstruction import hidden_patch_psnr
from engine.models.codebook import patchify  # ViTMAE's patch layout


def hidden_patches(count: int, num_patches: int, mask_ratio: float, seed: int) -> torch.Tensor:
    """The protocol's masks (bool (B, L), True = hidden): ViTMAE keeps the patches of the
    lowest seeded noise."""
    noise = torch.rand(count, num_patches, generator=torch.Generator().manual_seed(seed))
    keep = int(num_patches * (1 - mask_ratio))
    hidden = torch.ones(count, num_patches, dtype=torch.bool)
    return hidden.scatter_(1, noise.argsort(dim=1)[:, :keep], False)


def harmonic_fill(pixels: torch.Tensor, hidden_px: torch.Tensor, iterations: int) -> torch.Tensor:
    """`pixels` (B, C, S, S) with the pixels under `hidden_px` (bool (B, 1, S, S)) replaced by
    the mean of their four neighbours, repeatedly (Jacobi), starting from the image's mean."""
    kernel = torch.tensor([[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]])
    kernel = kernel[None, None].repeat(pixels.shape[1], 1, 1, 1)
    mask = hidden_px.expand_as(pixels)
    fill = torch.where(mask, pixels.mean(dim=(2, 3), keepdim=True).expand_as(pixels), pixels)
    for _ in range(iterations):
        around = F.conv2d(F.pad(fill, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
        fill = torch.where(mask, around, pixels)
    return fill


def standardised(patches: torch.Tensor) -> torch.Tensor:
    """Each patch (B, L, D) to zero mean and unit variance, as MAE's normalised targets."""
    mean, var = patches.mean(-1, keepdim=True), patches.var(-1, keepdim=True)
    return (patches - mean) / (var + 1e-6) ** 0.5


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="scenes")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--patch-size", type=int, default=4)
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    parser.add_argument("--count", type=int, default=1000, help="test images (the protocol's)")
    parser.add_argument("--seed", type=int, default=0, help="the protocol's mask seed")
    parser.add_argument("--iterations", type=int, default=600)
    args = parser.parse_args()
    tick = time.monotonic()
    images = load_dataset(args.dataset, "test", args.image_size).images[: args.count]
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    pixels = (images.float() / 255.0 - mean) / std  # what the studio's MAE sees
    grid = args.image_size // args.patch_size
    hidden = hidden_patches(len(pixels), grid * grid, args.mask_ratio, args.seed)
    hidden_px = hidden.view(-1, 1, grid, grid)
    hidden_px = hidden_px.repeat_interleave(args.patch_size, 2).repeat_interleave(
        args.patch_size, 3
    )
    smooth = patchify(harmonic_fill(pixels, hidden_px, args.iterations), args.patch_size)
    target = patchify(pixels, args.patch_size)
    print(
        f"{args.dataset} test, {len(pixels)} images at {args.image_size} px, "
        f"{args.patch_size} px patches, {args.mask_ratio:.0%} hidden (seed {args.seed}); "
        f"load {os.getloadavg()[0]:.1f}"
    )
    for norm_pix in (False, True):
        model = types.SimpleNamespace(
            patchify=lambda x: patchify(x, args.patch_size),
            config=types.SimpleNamespace(norm_pix_loss=norm_pix, patch_size=args.patch_size),
        )
        prediction = standardised(smooth) if norm_pix else smooth
        scores = hidden_patch_psnr(model, pixels, hidden, prediction, IMAGENET_MEAN, IMAGENET_STD)
        figures = {name: float(value.mean()) for name, value in scores.items()}
        best_fill = max(figures["psnr_mean_colour"], figures["psnr_nearest_visible"])
        print(
            f"  norm_pix_loss={str(norm_pix).lower():<5}  mean colour "
            f"{figures['psnr_mean_colour']:.2f} dB, nearest visible "
            f"{figures['psnr_nearest_visible']:.2f} dB, smooth fill {figures['psnr']:.2f} dB "
            f"({figures['psnr'] - best_fill:+.2f} dB over the better of the two)"
        )
    errors = ((standardised(smooth) - standardised(target)) ** 2).mean(-1)
    loss = float((errors * hidden).sum() / hidden.sum())
    print(f"  normalised-pixel loss of the smooth fill on the hidden patches: {loss:.3f}")
    print(f"  ({time.monotonic() - tick:.0f} s)")


if __name__ == "__main__":
    main()
