"""Procedural image-caption pairs: coloured shapes on varied backgrounds, labelled by shape.

Every nuisance factor (colour, size, position, rotation, background) is drawn independently of
the label, so a classifier on raw pixels or a random network does poorly while features that are
invariant to crops and colour changes, what SSL learns, separate the shapes easily. The idea
follows dSprites (Matthey et al. 2017) and 3D Shapes (Burgess & Kim 2018), with colour and
backgrounds added so that pixel statistics carry no label information.

The shapes fill a good part of the frame and the backgrounds are plain or a two-colour gradient.
An earlier version drew smaller shapes (radius 0.13-0.34) over noisy and striped backgrounds too:
there a background's texture told two images apart more easily than their shapes did, and
neither SimCLR nor a supervised network learnt shape in CPU minutes (bench/RESULTS.md).

Shapes are drawn as implicit regions ``f(u, v) <= 0`` in each image's rotated, scaled frame on a
supersampled grid, and box-filtered down: analytic anti-aliasing without a per-image PIL loop, so
the default 5,000-image train split takes about a second on two CPU cores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from engine.errors import DatasetError

SHAPE_NAMES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "hexagon",
    "cross",
    "heart",
    "diamond",
    "ellipse",
    "ring",
)
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 40),
    "green": (40, 170, 60),
    "cyan": (40, 200, 220),
    "blue": (40, 80, 220),
    "purple": (140, 60, 200),
    "pink": (245, 120, 190),
}
# Backgrounds also use neutrals, so "a white square on a black background" exists.
BACKGROUND_PALETTE: dict[str, tuple[int, int, int]] = {
    **PALETTE,
    "white": (235, 235, 235),
    "grey": (128, 128, 128),
    "black": (25, 25, 25),
}
BACKGROUND_KINDS: tuple[str, ...] = ("plain", "gradient")
# Circumradius as a fraction of the image side, one range per size word.
SIZE_RANGES: dict[str, tuple[float, float]] = {
    "small": (0.22, 0.28),
    "medium": (0.28, 0.34),
    "large": (0.34, 0.42),
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
_CHUNK = 1024  # backgrounds composed at once: ~50 MB of float at 64 px
_GROUP_CHUNK = 512  # shapes evaluated at once: ~70 MB per supersampled window array at most


@dataclass
class ShapeBatch:
    """Generated images with their labels, captions and per-image nuisance factors."""

    images: torch.Tensor  # (N, 3, size, size) uint8
    labels: torch.Tensor  # (N,) int64, index into SHAPE_NAMES
    captions: list[str]
    factors: dict[str, list[str]]  # factor name -> one value per image
    # (N, size, size) uint8: 1 where the shape covers at least half of the pixel, else 0 (the
    # ground truth of the `segmentation` protocol and the Attention lens's Jaccard).
    masks: torch.Tensor


def _inside(label: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of the shape ``label`` in its own frame (unit circumradius, v points down)."""
    name = SHAPE_NAMES[label]
    au, av = np.abs(u), np.abs(v)
    if name == "circle":
        return u * u + v * v <= 0.85
    if name == "ellipse":
        return u * u + 4.0 * v * v <= 1.0  # semi-axes 1 and 0.5
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
        phi = np.arctan2(v, u)
        phi = phi - np.floor(phi / (2 * half)) * (2 * half)  # angle within one point's sector
        alpha = np.abs(phi - half)  # 0 at an inner vertex, pi/5 at an outer one
        edge = inner * math.sin(half) / (inner * np.sin(alpha) + np.sin(half - alpha))
        return u * u + v * v <= edge * edge
    if name == "cross":
        return ((au <= 0.3) & (av <= 0.9)) | ((av <= 0.3) & (au <= 0.9))
    if name == "heart":  # (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, scaled into the unit circle
        x, y = 1.25 * u, -1.25 * v + 0.15
        x2, q = x * x, x * x + y * y - 1.0
        return q * q * q <= x2 * y * y * y  # products: numpy's float32 ** 3 is ~20x slower
    raise KeyError(name)


def _coverage(
    labels: np.ndarray,
    size_idx: np.ndarray,
    cx: np.ndarray,
    cy: np.ndarray,
    radius: np.ndarray,
    angle: np.ndarray,
    size: int,
    supersample: int,
) -> np.ndarray:
    """Fraction of each pixel covered by its shape, (n, 1, size, size) float32 in [0, 1].

    numpy rather than torch: as fast here, and its single-threaded element-wise ops do not stall
    when other processes share the cores, as torch's OpenMP threads do on many mid-sized ops.
    """
    out = np.zeros((len(labels), size, size), dtype=np.float32)
    group_of = labels * len(SIZE_RANGES) + size_idx
    s = supersample
    # Evaluate each shape only in a window around it, one (shape, size word) group at a time:
    # a small shape covers a few percent of the frame.
    for group in np.unique(group_of):
        label = int(group) // len(SIZE_RANGES)
        members = np.nonzero(group_of == group)[0]
        for idx in np.array_split(members, -(-len(members) // _GROUP_CHUNK)):
            x0, y0, r, a = (p[idx, None] for p in (cx, cy, radius, angle))  # each (n, 1)
            win = min(size, math.ceil(2 * float(r.max()) * size) + 2)  # window side, output px
            ox = np.clip(np.rint(x0 * size - win / 2), 0, size - win).astype(np.int64)  # (n, 1)
            oy = np.clip(np.rint(y0 * size - win / 2), 0, size - win).astype(np.int64)
            fine = (np.arange(win * s, dtype=np.float32) + 0.5) / s  # offsets, output px
            # float32 corners: int64 + float32 arrays would promote everything below to float64
            dx = ((ox.astype(np.float32) + fine) / size - x0) / r  # (n, win*s) in shape radii
            dy = ((oy.astype(np.float32) + fine) / size - y0) / r
            cos, sin = np.cos(a)[:, :, None], np.sin(a)[:, :, None]  # (n, 1, 1)
            u = dx[:, None, :] * cos + dy[:, :, None] * sin  # (n, win*s, win*s): shape frame
            v = dy[:, :, None] * cos - dx[:, None, :] * sin
            inside = _inside(label, u, v).view(np.uint8)  # (n, win*s, win*s) of 0 / 1
            # Box filter over each s x s block = area coverage of the output pixel. Counted in
            # uint8 (at most s*s), rows then columns: both sums run over contiguous memory.
            rows_summed = inside.reshape(len(idx), win, s, win * s).sum(axis=2, dtype=np.uint8)
            counts = rows_summed.reshape(len(idx), win, win, s).sum(axis=3, dtype=np.uint8)
            cover = counts.astype(np.float32) / (s * s)  # (n, win, win)
            step = np.arange(win)
            rows = (oy + step)[:, :, None]  # (n, win, 1)
            cols = (ox + step)[:, None, :]  # (n, 1, win)
            out[idx[:, None, None], rows, cols] = cover
    return out[:, None]


def _backgrounds(
    kinds: np.ndarray, base: np.ndarray, second: np.ndarray, theta: np.ndarray, size: int
) -> torch.Tensor:
    """Background images (n, 3, size, size) float32 in 0..255: the base colour (plain), or a
    ramp from it to ``second`` along the direction ``theta`` (n,) (gradient)."""
    n = len(kinds)
    grid = (torch.arange(size, dtype=torch.float32) + 0.5) / size - 0.5
    c0 = torch.from_numpy(base)[:, :, None, None]  # (n, 3, 1, 1)
    c1 = torch.from_numpy(second)[:, :, None, None]
    colour = c0.expand(n, 3, size, size).clone()  # plain: the base colour everywhere
    idx = torch.from_numpy(np.nonzero(kinds == BACKGROUND_KINDS.index("gradient"))[0])
    angle = torch.from_numpy(theta)[idx][:, None, None]
    along = angle.cos() * grid[None, None, :] + angle.sin() * grid[None, :, None]  # (k, H, W)
    mix = (along / 1.4 + 0.5).clamp(0.0, 1.0)[:, None]  # (k, 1, H, W)
    colour[idx] = c0[idx] + mix * (c1[idx] - c0[idx])
    return colour.clamp_(0.0, 255.0)


@dataclass
class _Scenes:
    """Everything drawn at random for a batch of shape images: all of it is drawn before any
    pixel, so the captions alone (`shape_captions`) need no rendering."""

    labels: np.ndarray  # (n,) index into SHAPE_NAMES
    colour_idx: np.ndarray  # (n,) index into PALETTE
    bg_idx: np.ndarray  # (n,) index into BACKGROUND_PALETTE
    second_idx: np.ndarray  # (n,) gradient end colour, index into BACKGROUND_PALETTE
    kinds: np.ndarray  # (n,) index into BACKGROUND_KINDS
    size_idx: np.ndarray  # (n,) index into SIZE_RANGES
    radius: np.ndarray  # (n,) circumradius, fraction of the side
    cx: np.ndarray  # (n,) centre, fraction of the side
    cy: np.ndarray
    angle: np.ndarray  # (n,) rotation, radians
    fg: np.ndarray  # (n, 3) shape colour, jittered
    base: np.ndarray  # (n, 3) background colour, jittered
    second: np.ndarray  # (n, 3) gradient end colour
    theta: np.ndarray  # (n,) gradient direction, radians


def _draw_scenes(num_images: int, seed: int) -> _Scenes:
    """Labels exactly balanced (then shuffled); every nuisance factor drawn independently of
    the label and of each other, except that the background colour never equals the shape's."""
    rng = np.random.default_rng(seed)
    n, num_shapes = num_images, len(SHAPE_NAMES)
    labels = rng.permutation(np.arange(n) % num_shapes)
    colour_names, bg_names = list(PALETTE), list(BACKGROUND_PALETTE)
    colour_idx = rng.integers(0, len(colour_names), n)
    # Background colours from the others: draw an offset so the shape colour is never picked.
    bg_idx = (colour_idx + rng.integers(1, len(bg_names), n)) % len(bg_names)
    # Gradient end colour: uniform over the colours that are neither the shape's nor the first.
    second_idx = rng.integers(0, len(bg_names) - 2, n)
    for taken in np.sort(np.stack([colour_idx, bg_idx]), axis=0):  # skip past taken, lowest first
        second_idx = second_idx + (second_idx >= taken)
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
    theta = rng.uniform(0, 2 * math.pi, n).astype(np.float32)  # gradient direction
    return _Scenes(
        labels,
        colour_idx,
        bg_idx,
        second_idx,
        kinds,
        size_idx,
        radius,
        cx,
        cy,
        angle,
        fg,
        base,
        second,
        theta,
    )


def _describe(scenes: _Scenes) -> tuple[dict[str, list[str]], list[str]]:
    """(factors, captions) of drawn scenes: the words, one per image."""
    colour_names, bg_names, size_words = list(PALETTE), list(BACKGROUND_PALETTE), list(SIZE_RANGES)
    row = np.minimum((scenes.cy * 3).astype(int), 2)
    col = np.minimum((scenes.cx * 3).astype(int), 2)
    factors: dict[str, list[str]] = {
        "color": [colour_names[i] for i in scenes.colour_idx],
        "size": [size_words[i] for i in scenes.size_idx],
        "position": [POSITION_WORDS[r][c] for r, c in zip(row, col)],
        "background": [BACKGROUND_KINDS[k] for k in scenes.kinds],
        "background_color": [bg_names[i] for i in scenes.bg_idx],
    }
    captions = [
        _caption(SHAPE_NAMES[label], factors, bg_names[second], i)
        for i, (label, second) in enumerate(zip(scenes.labels, scenes.second_idx))
    ]
    return factors, captions


def generate_shapes(
    num_images: int, seed: int, size: int = NATIVE_SIZE, supersample: int = 3
) -> ShapeBatch:
    """Render ``num_images`` labelled shape images, the same ones for the same arguments.

    Labels are exactly balanced (then shuffled); every nuisance factor is drawn independently of
    the label and of each other, except that the background colour never equals the shape colour.
    """
    if not 1 <= supersample <= 15:  # coverage is counted in uint8: s * s must stay below 256
        raise DatasetError(f"supersample must be from 1 to 15, got {supersample}")
    scenes = _draw_scenes(num_images, seed)
    cover = torch.from_numpy(
        _coverage(
            scenes.labels,
            scenes.size_idx,
            scenes.cx,
            scenes.cy,
            scenes.radius,
            scenes.angle,
            size,
            supersample,
        )
    )
    images = torch.empty((num_images, 3, size, size), dtype=torch.uint8)
    for start in range(0, num_images, _CHUNK):
        part = slice(start, start + _CHUNK)
        background = _backgrounds(
            scenes.kinds[part], scenes.base[part], scenes.second[part], scenes.theta[part], size
        )
        colour = torch.from_numpy(scenes.fg[part])[:, :, None, None]  # (n, 3, 1, 1)
        # Alpha-composite: coverage is the opacity of the shape colour over the background.
        images[part] = background.lerp_(colour, cover[part]).round_().to(torch.uint8)
    factors, captions = _describe(scenes)
    return ShapeBatch(
        images=images,
        labels=torch.from_numpy(scenes.labels.astype(np.int64)),
        captions=captions,
        factors=factors,
        masks=(cover[:, 0] >= 0.5).to(torch.uint8),
    )


def shape_captions(num_images: int, seed: int) -> list[str]:
    """The captions `generate_shapes(num_images, seed)` gives, without drawing any pixel."""
    return _describe(_draw_scenes(num_images, seed))[1]


def _caption(shape: str, factors: dict[str, list[str]], second: str, i: int) -> str:
    """One caption, e.g. "a small red star on a plain blue background, top left"."""
    kind, bg = factors["background"][i], factors["background_color"][i]
    backdrop = f"{bg} to {second} gradient" if kind == "gradient" else f"{kind} {bg} background"
    article = "an" if backdrop[0] in "aeiou" else "a"
    size, colour, place = factors["size"][i], factors["color"][i], factors["position"][i]
    return f"a {size} {colour} {shape} on {article} {backdrop}, {place}"


def caption_variants(
    shape: str, factors: dict[str, list[str]], i: int, colour: bool = True
) -> list[str]:
    """Shorter captions of image ``i`` that each name its shape and some of its other factors,
    as a photo has several captions of different detail (COCO has five). CLIP draws one of
    them, or the full caption, per image and step: with the full caption alone, colour, size,
    place and background already tell every caption of a batch apart, and the shape is never
    needed (bench/RESULTS-text.md).

    The ones that name no colour come first; ``colour=False`` gives only those, the captions
    that still fit a grey copy of the image."""
    size, place = factors["size"][i], factors["position"][i]
    plain = [f"a {shape}", f"a {size} {shape}", f"a {shape}, {place}"]
    if not colour:
        return plain
    hue, backdrop = factors["color"][i], factors["background_color"][i]
    return plain + [
        f"a {hue} {shape}",
        f"a {size} {hue} {shape}",
        f"a {shape} on a {backdrop} background",
    ]
