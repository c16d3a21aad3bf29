"""Pictures for the lenses: uint8 (H, W, 3) numpy arrays, the type that crosses to the web app.

A heat map uses a perceptually ordered colour map (anchors of matplotlib's "inferno", linearly
interpolated), so no plotting library is needed in the engine.
"""

from __future__ import annotations

import numpy as np

DISPLAY_SIZE = 256  # side of the panels the lenses return, about
# inferno at 0, 1/8, ..., 1 (matplotlib's table, rounded)
_INFERNO = np.array(
    [
        [0, 0, 4],
        [31, 12, 72],
        [85, 15, 109],
        [136, 34, 106],
        [186, 54, 85],
        [227, 89, 51],
        [249, 140, 10],
        [249, 201, 50],
        [252, 255, 164],
    ],
    dtype=np.float64,
)
_LUT = (
    np.stack(
        [
            np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_INFERNO)), _INFERNO[:, c])
            for c in range(3)
        ],
        axis=1,
    )
    .round()
    .astype(np.uint8)
)


def display_factor(side: int, target: int = DISPLAY_SIZE) -> int:
    """The whole-number upscaling that brings `side` pixels closest to `target` (at least 1)."""
    return max(1, round(target / max(1, side)))


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling by a whole factor: every source pixel becomes a block, so
    patches stay exact (no blending across patch borders)."""
    if factor == 1:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def resize(image: np.ndarray, side: int) -> np.ndarray:
    """A square uint8 image resized to `side` x `side` (bicubic down or up, via PIL)."""
    from PIL import Image

    if image.shape[0] == side and image.shape[1] == side:
        return image
    return np.asarray(Image.fromarray(image).resize((side, side), Image.Resampling.BICUBIC))


def colorize(values: np.ndarray) -> np.ndarray:
    """(h, w) values stretched from their minimum to their maximum (as matplotlib's imshow
    does, and DINO's figures) -> (h, w, 3) uint8 inferno colours."""
    values = np.asarray(values, dtype=np.float64)
    low, high = values.min(), values.max()
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return _LUT[np.clip(np.round(scaled * 255), 0, 255).astype(np.int64)]


def colorize_shares(values: np.ndarray) -> np.ndarray:
    """(h, w) non-negative weights on one scale shared by every map -> (h, w, 3) uint8 inferno:
    each cell's share of the map's sum relative to uniform (1 / cells), on a log scale from
    1/cells (black) through uniform (the middle colour) to the whole sum in one cell (white).
    A near-uniform map stays one flat mid colour instead of being stretched into structure."""
    values = np.asarray(values, dtype=np.float64)
    cells = values.size
    if cells < 2:
        return _LUT[np.full(values.shape, 128, dtype=np.int64)]
    shares = values / max(float(values.sum()), 1e-12)
    ratio = np.maximum(shares * cells, 1e-12)  # 1 where uniform
    scaled = 0.5 + np.log(ratio) / (2 * np.log(cells))
    return _LUT[np.clip(np.round(scaled * 255), 0, 255).astype(np.int64)]


def overlay(
    image: np.ndarray, values: np.ndarray, alpha: float = 0.65, shared: bool = False
) -> np.ndarray:
    """A (h, w) map drawn over a square uint8 image whose side is a multiple of h: each map cell
    covers its patch exactly (nearest), mixed by `alpha` with the image in grey (so the map's
    colours are not confused with the image's). Colours: stretched from the map's minimum to
    its maximum, or with `shared`, on the scale every map shares (`colorize_shares`)."""
    side, cells = image.shape[0], values.shape[0]
    heat = colorize_shares(values) if shared else colorize(values)
    factor = side // cells
    heat = upscale(heat, factor)
    if heat.shape[0] != side:
        heat = resize(heat, side)
    grey = (image.astype(np.float64) @ np.array([0.299, 0.587, 0.114]))[:, :, None]
    mixed = (1 - alpha) * grey + alpha * heat.astype(np.float64)
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def keep_mask_picture(image: np.ndarray, keep: np.ndarray, dim: float = 0.2) -> np.ndarray:
    """The image where `keep` (h, w) bool is set, darkened to `dim` of its brightness elsewhere."""
    side, cells = image.shape[0], keep.shape[0]
    mask = upscale(keep.astype(np.uint8), side // cells)
    if mask.shape[0] != side:
        from PIL import Image

        mask = (
            np.asarray(Image.fromarray(mask * 255).resize((side, side), Image.Resampling.NEAREST))
            > 0
        )
    weight = np.where(mask.astype(bool), 1.0, dim)[:, :, None]
    return np.clip(np.round(image * weight), 0, 255).astype(np.uint8)


def to_display(image: np.ndarray, cells: int) -> np.ndarray:
    """A square image resized so its side is `cells` times a whole number near DISPLAY_SIZE,
    which makes the patch grid land on whole pixels in every panel."""
    side = cells * display_factor(cells)
    return resize(image, side)
