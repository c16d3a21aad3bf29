"""Procedural image-caption pairs: coloured shapes on varied backgrounds, labelled by shape.

Every nuisance factor (colour, size, position, rotation, background) is drawn independently of
the label, so a classifier on raw pixels or a random network does poorly while features that are
invariant to crops and colour changes, what SSL learns, separate the shapes easily. The idea
follows dSprites (Matthey et al. 2017) and 3D Shapes (Burgess & Kim 2018), with colour and
clutter added so that pixel statistics carry no label information.

Shapes are drawn as implicit regions ``f(u, v) <= 0`` in each image's rotated, scaled frame on a
supersampled grid, and box-filtered down: analytic anti-aliasing without a per-image PIL loop, so
the default train split is generated in a few seconds on two CPU cores.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

SHAPE_NAMES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "hexagon",
    "cross", "heart", "diamond", "ellipse", "ring",
)
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "orange": (245, 140, 20), "yellow": (240, 220, 40),
    "green": (40, 170, 60), "cyan": (40, 200, 220), "blue": (40, 80, 220),
    "purple": (140, 60, 200), "pink": (245, 120, 190),
}
# Backgrounds also use neutrals, so "a white square on a black background" exists.
BACKGROUND_PALETTE: dict[str, tuple[int, int, int]] = {
    **PALETTE, "white": (235, 235, 235), "grey": (128, 128, 128), "black": (25, 25, 25),
}
BACKGROUND_KINDS: tuple[str, ...] = ("plain", "gradient", "noisy", "striped")
# Circumradius as a fraction of the image side, one range per size word.
SIZE_RANGES: dict[str, tuple[float, float]] = {
    "small": (0.11, 0.17), "medium": (0.17, 0.24), "large": (0.24, 0.32),
}
POSITION_WORDS: tuple[tuple[str, ...], ...] = (
    ("top left", "top", "top right"),
    ("left", "centre", "right"),
    ("bottom left", "bottom", "bottom right"),
)
NATIVE_SIZE = 64
NUM_TRAIN = 5000
NUM_TEST = 1000
# Distinct seeds so the test split holds images the train split never showed.
SPLIT_SEEDS: dict[str, int] = {"train": 1234, "test": 5678}
_CHUNK = 128  # images rendered at once: bounds the supersampled grid to ~8 MB per array


@dataclass
class ShapeBatch:
    """Generated images with their labels, captions and per-image nuisance factors."""

    images: torch.Tensor  # (N, 3, size, size) uint8
    labels: torch.Tensor  # (N,) int64, index into SHAPE_NAMES
    captions: list[str]
    factors: dict[str, list[str]]  # factor name -> one value per image


def _inside(label: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of the shape ``label`` in its own frame (unit circumradius, v points down)."""
    name = SHAPE_NAMES[label]
    au, av = np.abs(u), np.abs(v)
    if name == "circle":
        return u * u + v * v <= 0.85
    if name == "ellipse":
        return u * u + (v / 0.5) ** 2 <= 1.0
    if name == "ring":
        rr = u * u + v * v
        return (rr <= 0.95) & (rr >= 0.35)
    if name == "square":
        return np.maximum(au, av) <= 0.72
    if name == "diamond":  # a rhombus, elongated so no rotation turns it into the square
        return au + av / 0.55 <= 1.0
    if name in ("triangle", "hexagon"):  # regular polygon as the intersection of half-planes
        sides = 3 if name == "triangle" else 6
        inradius = math.cos(math.pi / sides)
        mask = np.ones(u.shape, dtype=bool)
        for k in range(sides):
            a = 2 * math.pi * k / sides - math.pi / 2
            mask &= u * math.cos(a) + v * math.sin(a) <= inradius
        return mask
    if name == "star":  # five points; the boundary in polar form between inner and outer vertex
        inner, half = 0.45, math.pi / 5
        phi = np.mod(np.arctan2(v, u), 2 * half)
        alpha = np.abs(phi - half)  # 0 at an inner vertex, pi/5 at an outer one
        edge = inner * math.sin(half) / (inner * np.sin(alpha) + np.sin(half - alpha))
        return u * u + v * v <= edge * edge
    if name == "cross":
        return ((au <= 0.3) & (av <= 0.9)) | ((av <= 0.3) & (au <= 0.9))
    if name == "heart":  # (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, scaled into the unit circle
        x, y = 1.25 * u, -1.25 * v + 0.15
        return (x * x + y * y - 1.0) ** 3 - x * x * y ** 3 <= 0.0
    raise KeyError(name)


def _coverage(labels: np.ndarray, cx: np.ndarray, cy: np.ndarray, radius: np.ndarray,
              angle: np.ndarray, size: int, supersample: int) -> np.ndarray:
    """Fraction of each pixel covered by its shape, (n, size, size) float32 in [0, 1]."""
    fine = size * supersample
    grid = (np.arange(fine, dtype=np.float32) + 0.5) / fine  # sample centres in [0, 1]
    out = np.empty((len(labels), fine, fine), dtype=np.float32)
    for label in np.unique(labels):
        idx = np.nonzero(labels == label)[0]
        dx = (grid[None, None, :] - cx[idx, None, None]) / radius[idx, None, None]  # (n, 1, F)
        dy = (grid[None, :, None] - cy[idx, None, None]) / radius[idx, None, None]  # (n, F, 1)
        cos, sin = np.cos(angle[idx])[:, None, None], np.sin(angle[idx])[:, None, None]
        u = dx * cos + dy * sin  # (n, F, F): rotate the image frame into the shape's frame
        v = dy * cos - dx * sin
        out[idx] = _inside(int(label), u, v)
    # (n, F, F) -> (n, size, s, size, s) -> box filter = area coverage of each output pixel
    return out.reshape(len(labels), size, supersample, size, supersample).mean(axis=(2, 4))


def _backgrounds(rng: np.random.Generator, kinds: np.ndarray, base: np.ndarray,
                 second: np.ndarray, size: int) -> np.ndarray:
    """Background images (n, size, size, 3) float32 in 0..255."""
    n = len(kinds)
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    theta = rng.uniform(0, 2 * math.pi, n).astype(np.float32)
    # Signed distance along a random direction: drives both gradients and stripes.
    along = (np.cos(theta)[:, None, None] * grid[None, None, :]
             + np.sin(theta)[:, None, None] * grid[None, :, None])  # (n, size, size)
    freq = rng.uniform(3.0, 7.0, n).astype(np.float32)[:, None, None]
    # Low-frequency value noise: a 6x6 random field upsampled smoothly to the image size.
    field = torch.from_numpy(rng.uniform(0.55, 1.25, (n, 1, 6, 6)).astype(np.float32))
    noise = F.interpolate(field, size=(size, size), mode="bicubic", align_corners=False)[:, 0].numpy()
    weight = np.ones_like(along)  # plain: base colour everywhere
    mix = np.zeros_like(along)  # share of the second colour
    is_kind = {k: (kinds == i)[:, None, None] for i, k in enumerate(BACKGROUND_KINDS)}
    mix = np.where(is_kind["gradient"], np.clip(along / 1.4 + 0.5, 0.0, 1.0), mix)
    weight = np.where(is_kind["noisy"], noise, weight)
    stripes = 0.7 + 0.3 * (np.sin(2 * math.pi * freq * along) > 0)
    weight = np.where(is_kind["striped"], stripes, weight)
    colour = (base[:, None, None, :] * (1 - mix[..., None])
              + second[:, None, None, :] * mix[..., None])  # (n, size, size, 3)
    return np.clip(colour * weight[..., None], 0.0, 255.0)


def generate_shapes(num_images: int, seed: int, size: int = NATIVE_SIZE,
                    supersample: int = 3) -> ShapeBatch:
    """Render ``num_images`` labelled shape images, the same ones for the same arguments.

    Labels are exactly balanced (then shuffled); every nuisance factor is drawn independently of
    the label and of each other, except that the background colour never equals the shape colour.
    """
    rng = np.random.default_rng(seed)
    n, num_shapes = num_images, len(SHAPE_NAMES)
    labels = rng.permutation(np.arange(n) % num_shapes)
    colour_names, bg_names = list(PALETTE), list(BACKGROUND_PALETTE)
    colour_idx = rng.integers(0, len(colour_names), n)
    # Background colours from the others: draw an offset so the shape colour is never picked.
    bg_idx = (colour_idx + rng.integers(1, len(bg_names), n)) % len(bg_names)
    second_idx = (colour_idx + rng.integers(1, len(bg_names), n)) % len(bg_names)
    second_idx = np.where(second_idx == bg_idx, (second_idx + 1) % len(bg_names), second_idx)
    second_idx = np.where(second_idx == colour_idx, (second_idx + 1) % len(bg_names), second_idx)
    kinds = rng.integers(0, len(BACKGROUND_KINDS), n)
    size_words = list(SIZE_RANGES)
    size_idx = rng.integers(0, len(size_words), n)
    bounds = np.array([SIZE_RANGES[w] for w in size_words], dtype=np.float32)[size_idx]
    radius = rng.uniform(bounds[:, 0], bounds[:, 1]).astype(np.float32)
    margin = radius + 0.02  # keep the whole shape inside the frame
    cx = rng.uniform(margin, 1 - margin).astype(np.float32)
    cy = rng.uniform(margin, 1 - margin).astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi, n).astype(np.float32)
    # Shade jitter, so a colour name covers a small cloud of RGB values rather than one point.
    palette = np.array([PALETTE[c] for c in colour_names], dtype=np.float32)
    bg_palette = np.array([BACKGROUND_PALETTE[c] for c in bg_names], dtype=np.float32)
    fg = np.clip(palette[colour_idx] + rng.uniform(-20, 20, (n, 3)), 0, 255).astype(np.float32)
    base = np.clip(bg_palette[bg_idx] + rng.uniform(-15, 15, (n, 3)), 0, 255).astype(np.float32)
    second = bg_palette[second_idx]

    images = np.empty((n, size, size, 3), dtype=np.uint8)
    for start in range(0, n, _CHUNK):
        s = slice(start, start + _CHUNK)
        cover = _coverage(labels[s], cx[s], cy[s], radius[s], angle[s], size, supersample)
        background = _backgrounds(rng, kinds[s], base[s], second[s], size)
        pixels = background + cover[..., None] * (fg[s, None, None, :] - background)
        images[s] = np.rint(pixels).astype(np.uint8)

    row, col = np.minimum((cy * 3).astype(int), 2), np.minimum((cx * 3).astype(int), 2)
    factors: dict[str, list[str]] = {
        "color": [colour_names[i] for i in colour_idx],
        "size": [size_words[i] for i in size_idx],
        "position": [POSITION_WORDS[r][c] for r, c in zip(row, col)],
        "background": [BACKGROUND_KINDS[k] for k in kinds],
        "background_color": [bg_names[i] for i in bg_idx],
    }
    captions = [_caption(SHAPE_NAMES[labels[i]], factors, bg_names[second_idx[i]], i) for i in range(n)]
    return ShapeBatch(
        images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),  # (N, H, W, 3) -> (N, 3, H, W)
        labels=torch.from_numpy(labels.astype(np.int64)),
        captions=captions,
        factors=factors,
    )


def _caption(shape: str, factors: dict[str, list[str]], second: str, i: int) -> str:
    """One caption, e.g. "a small red star on a striped blue background, top left"."""
    kind, bg = factors["background"][i], factors["background_color"][i]
    if kind == "gradient":
        backdrop = f"a {bg} to {second} gradient"
    else:
        backdrop = f"a {kind} {bg} background"
    return f"a {factors['size'][i]} {factors['color'][i]} {shape} on {backdrop}, {factors['position'][i]}"
