"""CIE Lab colour space in torch, and the quantised ab gamut of colourisation.

sRGB (D65 white) -> linear RGB -> XYZ -> Lab, the standard CIE 1976 formulas (the same as
scikit-image's ``rgb2lab``): L in [0, 100], a and b roughly in [-110, 110]. Zhang, Isola, Efros
2016 ("Colorful Image Colorization", arXiv:1603.08511, section 2.1) quantise the ab plane into
bins of side 10 and keep the in-gamut ones (313 for their ImageNet gamut); ``ab_gamut_bins``
rebuilds that set from the sRGB cube. ``soft_encode`` and ``annealed_mean`` are the paper's
target encoding (5 nearest bins, Gaussian sigma 5) and its decoding (temperature 0.38).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

# sRGB primaries, D65 white (IEC 61966-2-1); rows give X, Y, Z.
_RGB_TO_XYZ = torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
_WHITE = torch.tensor([0.95047, 1.0, 1.08883])  # XYZ of the D65 white point
_DELTA = 6 / 29


def _channels(x: Tensor, name: str) -> None:
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError(f"{name} must be shaped (..., 3, H, W), got {tuple(x.shape)}")


def rgb_to_lab(rgb: Tensor) -> Tensor:
    """(..., 3, H, W) sRGB in [0, 1] -> (..., 3, H, W) Lab (L in [0, 100]); float32."""
    _channels(rgb, "rgb")
    rgb = rgb.float().clamp(0.0, 1.0)
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    matrix = (_RGB_TO_XYZ / _WHITE[:, None]).to(rgb.device)  # white-normalised XYZ rows
    xyz = torch.einsum("ij,...jhw->...ihw", matrix, linear)
    f = torch.where(
        xyz > _DELTA**3, xyz.clamp(min=1e-12) ** (1 / 3), xyz / (3 * _DELTA**2) + 4 / 29
    )
    fx, fy, fz = f.unbind(-3)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=-3)


def lab_to_rgb(lab: Tensor) -> Tensor:
    """(..., 3, H, W) Lab -> (..., 3, H, W) sRGB clipped to [0, 1]; inverse of ``rgb_to_lab``."""
    _channels(lab, "lab")
    lab = lab.float()
    light, a, b = lab.unbind(-3)
    fy = (light + 16) / 116
    f = torch.stack([fy + a / 500, fy, fy - b / 200], dim=-3)
    xyz = torch.where(f > _DELTA, f**3, 3 * _DELTA**2 * (f - 4 / 29))
    xyz = xyz * _WHITE.to(lab.device)[:, None, None]
    linear = torch.einsum("ij,...jhw->...ihw", torch.linalg.inv(_RGB_TO_XYZ).to(lab.device), xyz)
    linear = linear.clamp(0.0, 1.0)
    rgb = torch.where(
        linear > 0.0031308, 1.055 * linear.clamp(min=1e-12) ** (1 / 2.4) - 0.055, 12.92 * linear
    )
    return rgb.clamp(0.0, 1.0)


@functools.lru_cache(maxsize=4)
def _gamut(grid: int, steps: int) -> Tensor:
    levels = torch.linspace(0.0, 1.0, steps)
    cube = torch.stack(torch.meshgrid(levels, levels, levels, indexing="ij"))  # (3, s, s, s)
    ab = rgb_to_lab(cube.view(3, steps, steps * steps))[1:].reshape(2, -1).T  # (s**3, 2)
    cells = torch.unique(torch.round(ab / grid), dim=0)  # lexicographic order: a, then b
    return cells * grid


def ab_gamut_bins(grid: int = 10, steps: int = 64) -> Tensor:
    """(Q, 2) centres of the ab bins (side `grid`) that some sRGB colour falls into.

    The colours are a `steps`^3 lattice of the RGB cube. With grid 10 this gives about as many
    bins as the paper's 313 (which came from ImageNet's colours rather than the whole cube).
    """
    return _gamut(grid, steps).clone()


def soft_encode(ab: Tensor, bins: Tensor, neighbours: int = 5, sigma: float = 5.0) -> Tensor:
    """Soft one-hot target of each pixel over the ab bins (paper section 2.1).

    Args:
        ab: (B, 2, H, W) a and b of the true colours.
        bins: (Q, 2) bin centres.
        neighbours: how many nearest bins share the mass.
        sigma: width of the Gaussian that weighs them by distance.
    Returns:
        (B, Q, H, W) float32, summing to 1 over Q.
    """
    batch, _, height, width = ab.shape
    points = ab.float().permute(0, 2, 3, 1).reshape(-1, 2)  # (B*H*W, 2)
    dist = torch.cdist(points, bins.float().to(ab.device))  # (B*H*W, Q)
    near_dist, near = dist.topk(neighbours, dim=1, largest=False)
    weights = torch.softmax(-(near_dist**2) / (2 * sigma**2), dim=1)
    target = torch.zeros_like(dist).scatter_(1, near, weights)
    return target.view(batch, height, width, -1).permute(0, 3, 1, 2)


def annealed_mean(logits: Tensor, bins: Tensor, temperature: float = 0.38) -> Tensor:
    """(B, Q, H, W) bin logits -> (B, 2, H, W) ab: the mean of the distribution sharpened by
    `temperature` (paper eq. 5: between the mode, T -> 0, and the mean, T = 1)."""
    probs = torch.softmax(logits.float() / temperature, dim=1)
    return torch.einsum("bqhw,qc->bchw", probs, bins.float().to(logits.device))
