"""A k-means codebook over image patches: the visual tokenizer of BEiT when no dVAE is at hand.

BEiT (Bao et al. 2021, arXiv:2106.08254) predicts the discrete codes a pretrained dVAE gives each
patch. Offline there is no dVAE, so the codes come from k-means over patches of the training set
itself, each patch normalised by its own mean and contrast first (Coates, Lee, Ng 2011, "An
Analysis of Single-Layer Networks in Unsupervised Feature Learning", section 3: brightness and
contrast normalisation before k-means). Seeding is k-means++ (Arthur & Vassilvitskii 2007), then
Lloyd iterations; all random draws come from one seeded generator, so a seed fixes the codebook.
"""

from __future__ import annotations

import torch
from torch import Tensor

from engine.errors import SpecError

# Variance floor in [0, 1] pixel units: flat patches (background) map to ~0 instead of having
# their sensor noise blown up to unit contrast (Coates et al. add 10 on a 0-255 scale).
CONTRAST_FLOOR = 0.01


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """(B, C, H, W) -> (B, L, patch_size**2 * C), patches row-major, pixels (p, q, c) in order."""
    batch, channels, height, width = images.shape
    rows, cols = height // patch_size, width // patch_size
    x = images.reshape(batch, channels, rows, patch_size, cols, patch_size)
    x = x.permute(0, 2, 4, 3, 5, 1)  # (B, rows, cols, p, q, C)
    return x.reshape(batch, rows * cols, patch_size * patch_size * channels)


def normalise_patches(patches: Tensor) -> Tensor:
    """Each patch (last dim) minus its mean, over sqrt(its variance + CONTRAST_FLOOR); fp32."""
    patches = patches.float()
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True, unbiased=False)
    return (patches - mean) / torch.sqrt(var + CONTRAST_FLOOR)


@torch.no_grad()
def assign_codes(points: Tensor, codebook: Tensor, chunk: int = 16384) -> Tensor:
    """Index of the nearest code (squared Euclidean) for each row of points (N, D) -> (N,)."""
    points, codebook = points.float(), codebook.float()
    code_norms = (codebook * codebook).sum(dim=1)  # (K,)
    out = []
    with torch.autocast(points.device.type, enabled=False):
        for start in range(0, len(points), chunk):
            block = points[start : start + chunk]
            # argmin |x - c|^2 = argmax 2 x.c - |c|^2
            out.append((2 * block @ codebook.T - code_norms).argmax(dim=1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=points.device)


@torch.no_grad()
def fit_codebook(
    points: Tensor, size: int, *, seed: int = 0, iterations: int = 20, max_points: int = 65536
) -> Tensor:
    """k-means++ then Lloyd on (N, D) points -> a (size, D) fp32 codebook, deterministic by seed.

    At most ``max_points`` rows (a seeded random subset) are used. Clusters that go empty keep
    their previous centre. If the data has fewer distinct points than ``size``, some codes repeat
    and are simply never assigned.
    """
    if size < 2:
        raise SpecError(f"a codebook needs at least 2 codes, got {size}")
    if len(points) < size:
        raise SpecError(
            f"cannot fit {size} codes to {len(points)} patches; lower the codebook "
            f"size or use more images"
        )
    generator = torch.Generator().manual_seed(int(seed))
    points = points.float().cpu()
    if len(points) > max_points:
        points = points[torch.randperm(len(points), generator=generator)[:max_points]]
    # k-means++: each new centre drawn with probability proportional to its squared distance
    # from the nearest centre so far.
    centres = torch.empty(size, points.shape[1])
    centres[0] = points[torch.randint(len(points), (1,), generator=generator)]
    nearest = ((points - centres[0]) ** 2).sum(dim=1)  # (N,)
    for k in range(1, size):
        if nearest.sum() > 0:
            index = torch.multinomial(nearest, 1, generator=generator)
        else:  # every point already is a centre: repeat one
            index = torch.randint(len(points), (1,), generator=generator)
        centres[k] = points[index]
        nearest = torch.minimum(nearest, ((points - centres[k]) ** 2).sum(dim=1))
    for _ in range(iterations):
        codes = assign_codes(points, centres)
        sums = torch.zeros_like(centres).index_add_(0, codes, points)
        counts = torch.bincount(codes, minlength=size).float()[:, None]  # (K, 1)
        updated = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
        if torch.equal(updated, centres):
            break
        centres = updated
    return centres
