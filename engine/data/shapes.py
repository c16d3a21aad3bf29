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
    "small": (0.13, 0.19), "medium": (0.19, 0.26), "large": (0.26, 0.34),
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
_CHUNK = 256  # images rendered at once: bounds the supersampled canvas to ~40 MB


@dataclass
class ShapeBatch:
    """Generated images with their labels, captions and per-image nuisance factors."""

    images: torch.Tensor  # (N, 3, size, size) uint8
    labels: torch.Tensor  # (N,) int64, index into SHAPE_NAMES
    captions: list[str]
    factors: dict[str, list[str]]  # factor name -> one value per image


def _inside(label: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the shape ``label`` in its own frame (unit circumradius, v points down)."""
    name = SHAPE_NAMES[label]
    au, av = u.abs(), v.abs()
    if name == "circle":
        return u * u + v * v <= 0.85
    if name == "ellipse":
        return u * u + (v / 0.5) ** 2 <= 1.0
    if name == "ring":
        rr = u * u + v * v
        return (rr <= 0.95) & (rr >= 0.35)
    if name == "square":
        return torch.maximum(au, av) <= 0.72
    if name == "diamond":  # a rhombus, elongated so no rotation turns it into the square
        return au + av / 0.55 <= 1.0
    if name in ("triangle", "hexagon"):  # regular polygon as the intersection of half-planes
        sides = 3 if name == "triangle" else 6
        inradius = math.cos(math.pi / sides)
        mask = torch.ones(u.shape, dtype=torch.bool)
        for k in range(sides):
            a = 2 * math.pi * k / sides - math.pi / 2
            mask &= u * math.cos(a) + v * math.sin(a) <= inradius
        return mask
    if name == "star":  # five points; the boundary in polar form between inner and outer vertex
        inner, half = 0.45, math.pi / 5
        phi = torch.remainder(torch.atan2(v, u), 2 * half)
        alpha = (phi - half).abs()  # 0 at an inner vertex, pi/5 at an outer one
        edge = inner * math.sin(half) / (inner * alpha.sin() + (half - alpha).sin())
        return u * u + v * v <= edge * edge
    if name == "cross":
        return ((au <= 0.3) & (av <= 0.9)) | ((av <= 0.3) & (au <= 0.9))
    if name == "heart":  # (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, scaled into the unit circle
        x, y = 1.25 * u, -1.25 * v + 0.15
        return (x * x + y * y - 1.0) ** 3 - x * x * y ** 3 <= 0.0
    raise KeyError(name)


def _coverage(labels: np.ndarray, size_idx: np.ndarray, cx: np.ndarray, cy: np.ndarray,
              radius: np.ndarray, angle: np.ndarray, size: int, supersample: int) -> torch.Tensor:
    """Fraction of each pixel covered by its shape, (n, 1, size, size) float32 in [0, 1]."""
    fine = size * supersample
    out = torch.zeros((len(labels), fine, fine), dtype=torch.float32)
    params = [torch.from_numpy(a) for a in (cx, cy, radius, angle)]
    # Evaluate only a window around each shape, sized per (shape, size word) group: a small
    # shape covers a few percent of the frame, so this is most of the speed.
    for group in np.unique(labels * len(SIZE_RANGES) + size_idx):
        label = int(group) // len(SIZE_RANGES)
        idx = torch.from_numpy(np.nonzero(labels * len(SIZE_RANGES) + size_idx == group)[0])
        x0, y0, r, a = (p[idx] for p in params)  # each (n,)
        win = min(fine, math.ceil(2 * float(r.max()) * fine) + 2)
        offset = torch.arange(win)
        ox = (x0 * fine - win / 2).round().long().clamp(0, fine - win)  # window corner, (n,)
        oy = (y0 * fine - win / 2).round().long().clamp(0, fine - win)
        gx = (ox[:, None] + offset + 0.5) / fine  # (n, win) sample centres in [0, 1]
        gy = (oy[:, None] + offset + 0.5) / fine
        dx = ((gx - x0[:, None]) / r[:, None])[:, None, :]  # (n, 1, win)
        dy = ((gy - y0[:, None]) / r[:, None])[:, :, None]  # (n, win, 1)
        cos, sin = a.cos()[:, None, None], a.sin()[:, None, None]
        u = dx * cos + dy * sin  # (n, win, win): rotate the image frame into the shape's frame
        v = dy * cos - dx * sin
        rows = (oy[:, None] + offset)[:, :, None]  # (n, win, 1)
        cols = (ox[:, None] + offset)[:, None, :]  # (n, 1, win)
        out[idx[:, None, None], rows, cols] = _inside(label, u, v).float()
    # Box filter over each supersample x supersample block = area coverage of the output pixel.
    return F.avg_pool2d(out[:, None], supersample)  # (n, 1, size, size)


def _backgrounds(rng: np.random.Generator, kinds: np.ndarray, base: np.ndarray,
                 second: np.ndarray, size: int) -> torch.Tensor:
    """Background images (n, 3, size, size) float32 in 0..255."""
    n = len(kinds)
    grid = (torch.arange(size, dtype=torch.float32) + 0.5) / size - 0.5
    theta = torch.from_numpy(rng.uniform(0, 2 * math.pi, n).astype(np.float32))[:, None, None]
    # Position along a random direction: drives both gradients and stripes.
    along = theta.cos() * grid[None, None, :] + theta.sin() * grid[None, :, None]  # (n, H, W)
    freq = torch.from_numpy(rng.uniform(3.0, 7.0, n).astype(np.float32))[:, None, None]
    # Low-frequency value noise: a 6x6 random field upsampled smoothly to the image size.
    field = torch.from_numpy(rng.uniform(0.55, 1.25, (n, 1, 6, 6)).astype(np.float32))
    noise = F.interpolate(field, size=(size, size), mode="bicubic", align_corners=False)[:, 0]
    kind = torch.from_numpy(kinds)[:, None, None]
    is_kind = {k: kind == i for i, k in enumerate(BACKGROUND_KINDS)}
    mix = torch.where(is_kind["gradient"], (along / 1.4 + 0.5).clamp(0.0, 1.0), 0.0)  # share of `second`
    stripes = 0.7 + 0.3 * (torch.sin(2 * math.pi * freq * along) > 0).float()
    gain = torch.where(is_kind["noisy"], noise, torch.where(is_kind["striped"], stripes, 1.0))
    c0 = torch.from_numpy(base)[:, :, None, None]  # (n, 3, 1, 1)
    c1 = torch.from_numpy(second)[:, :, None, None]
    colour = c0 + mix[:, None] * (c1 - c0)  # (n, 3, H, W)
    return (colour * gain[:, None]).clamp(0.0, 255.0)


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

    images = torch.empty((n, 3, size, size), dtype=torch.uint8)
    for start in range(0, n, _CHUNK):
        s = slice(start, start + _CHUNK)
        cover = _coverage(labels[s], size_idx[s], cx[s], cy[s], radius[s], angle[s], size, supersample)
        background = _backgrounds(rng, kinds[s], base[s], second[s], size)
        colour = torch.from_numpy(fg[s])[:, :, None, None]  # (n, 3, 1, 1)
        images[s] = (background + cover * (colour - background)).round_().to(torch.uint8)

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
        images=images,
        labels=torch.from_numpy(labels.astype(np.int64)),
        captions=captions,
        factors=factors,
    )


def _caption(shape: str, factors: dict[str, list[str]], second: str, i: int) -> str:
    """One caption, e.g. "a small red star on a striped blue background, top left"."""
    kind, bg = factors["background"][i], factors["background_color"][i]
    backdrop = f"{bg} to {second} gradient" if kind == "gradient" else f"{kind} {bg} background"
    article = "an" if backdrop[0] in "aeiou" else "a"
    return f"a {factors['size'][i]} {factors['color'][i]} {shape} on {article} {backdrop}, {factors['position'][i]}"
