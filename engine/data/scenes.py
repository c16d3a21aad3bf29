"""Procedural upright scenes: everyday objects with a canonical orientation and typical colours.

`shapes` draws its shapes at any rotation in any colour on purpose (colour and pose carry no
label there), which is exactly what rotation prediction (Gidaris et al. 2018) and colorization
(Zhang et al. 2016) cannot learn from: a shape has no "up", and its colour is noise. Natural
photos have both: skies are above, ground below, trees are green and trunks brown. `scenes`
gives the builtin data those two regularities and keeps everything else `shapes` has: ten
labelled classes, exactly balanced, deterministic by seed, captions, nuisance factors and an
object mask per image (the ground truth of the `segmentation` protocol).

Each object stands upright (it leans by at most 12 degrees; size, horizontal place and mirror
image vary) in one of two backdrops: outdoors, a sky (a vertical gradient, lighter towards the
horizon) over a ground band of grass, sand or snow; or a plain wall of a random colour. The wall,
60% of the images, carries no "up" and no typical colour: there only the object tells which way
is up (a tree's crown above its trunk, a house's roof above its door) and what colour a part
should be, so rotation prediction and colorization have to learn the objects rather than find
the sky. Objects are a tree, a house, a car, a sailboat, a mushroom, a flower, a rocket, a
snowman, an ice-cream cone and a lamp post, with fixed part colours and a small jitter (a car's
body is one of a few car colours). Parts are implicit regions on a supersampled grid, box-filtered down as in `shapes`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from engine.errors import DatasetError

CLASS_NAMES: tuple[str, ...] = (
    "tree",
    "house",
    "car",
    "sailboat",
    "mushroom",
    "flower",
    "rocket",
    "snowman",
    "ice cream",
    "lamp post",
)
NATIVE_SIZE = 64
NUM_TRAIN = 5000
NUM_TEST = 1000
SPLIT_SEEDS: dict[str, int] = {"train": 2468, "test": 1357}
SUPERSAMPLE = 2
_CHUNK = 256  # images rasterised at once: ~40 MB per supersampled float32 plane
MAX_LEAN_DEG = 12.0
GROUNDS: dict[str, tuple[int, int, int]] = {
    "grass": (70, 150, 60),
    "sand": (215, 190, 130),
    "snow": (235, 240, 245),
}
SKIES: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    # (top, horizon) colours of the sky gradient
    "day": ((60, 120, 210), (170, 205, 240)),
    "dusk": ((70, 60, 140), (240, 150, 110)),
    "overcast": ((130, 140, 155), (200, 205, 210)),
}
BACKDROPS: tuple[str, ...] = ("outdoors", "wall")
WALL_SHARE = 0.6  # images with a plain wall of a random colour behind the object
SIZE_RANGES: dict[str, tuple[float, float]] = {
    # object height as a fraction of the image side
    "small": (0.38, 0.48),
    "medium": (0.48, 0.58),
    "large": (0.58, 0.68),
}
CAR_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 35, 35),
    "blue": (40, 70, 190),
    "yellow": (235, 200, 40),
}

Part = tuple[np.ndarray, "tuple[int, int, int] | np.ndarray"]  # (bool region, RGB or (n, 3))
# Each class draws its parts in painting order in its own frame: u to the right, v up, both in
# units of the object's height, (0, 0) at its base centre, the object within v in [0, 1].
_Drawer = Callable[[np.ndarray, np.ndarray, np.ndarray], list[Part]]


def _disc(u, v, cu, cv, r):
    return (u - cu) ** 2 + (v - cv) ** 2 <= r * r


def _box(u, v, u0, u1, v0, v1):
    return (u >= u0) & (u <= u1) & (v >= v0) & (v <= v1)


def _tri(u, v, half_base, v0, v1):
    """An isosceles triangle, base `2 * half_base` wide at v0, apex at v1 (either above or below)."""
    t = (v - v0) / (v1 - v0)
    return (t >= 0) & (t <= 1) & (np.abs(u) <= half_base * (1 - t))


def _tree(u, v, extra):
    return [
        (_box(u, v, -0.07, 0.07, 0.0, 0.45), (110, 70, 35)),
        (
            _disc(u, v, 0.0, 0.62, 0.3)
            | _disc(u, v, -0.16, 0.5, 0.2)
            | _disc(u, v, 0.16, 0.5, 0.2),
            (45, 140, 50),
        ),
    ]


def _house(u, v, extra):
    return [
        (_box(u, v, -0.38, 0.38, 0.0, 0.55), (230, 215, 180)),
        (_tri(u, v, 0.48, 0.55, 1.0), (170, 50, 40)),
        (_box(u, v, -0.08, 0.08, 0.0, 0.28), (90, 55, 30)),
        (_box(u, v, 0.16, 0.3, 0.3, 0.44), (120, 180, 230)),
    ]


def _car(u, v, extra):
    return [  # the body in one of the car colours, per image (`extra`: (n, 3))
        (_box(u, v, -0.7, 0.7, 0.12, 0.42) | _box(u, v, -0.38, 0.3, 0.42, 0.72), extra),
        (_box(u, v, -0.3, -0.06, 0.46, 0.66) | _box(u, v, 0.02, 0.24, 0.46, 0.66), (150, 200, 235)),
        (_disc(u, v, -0.42, 0.14, 0.14) | _disc(u, v, 0.42, 0.14, 0.14), (30, 30, 30)),
    ]


def _sailboat(u, v, extra):
    hull = (v >= 0.0) & (v <= 0.2) & (np.abs(u) <= 0.32 + 0.9 * v)
    sail = (u >= 0.04) & (u <= 0.04 + 0.5 * (1.0 - v) / 0.75) & (v >= 0.25) & (v <= 1.0)
    return [
        (hull, (120, 75, 40)),
        (_box(u, v, -0.02, 0.02, 0.2, 1.0), (90, 60, 35)),
        (sail, (245, 245, 240)),
    ]


def _mushroom(u, v, extra):
    cap = ((u / 0.55) ** 2 + ((v - 0.5) / 0.45) ** 2 <= 1.0) & (v >= 0.5)
    dots = _disc(u, v, -0.22, 0.72, 0.07) | _disc(u, v, 0.18, 0.8, 0.07)
    return [
        (_box(u, v, -0.13, 0.13, 0.0, 0.52), (240, 235, 220)),
        (cap, (205, 40, 35)),
        (cap & dots, (250, 250, 250)),
    ]


def _flower(u, v, extra):
    petals = np.zeros(u.shape, dtype=bool)
    for k in range(6):
        a = 2 * math.pi * k / 6
        petals |= _disc(u, v, 0.17 * math.cos(a), 0.72 + 0.17 * math.sin(a), 0.12)
    return [
        (_box(u, v, -0.03, 0.03, 0.0, 0.65), (50, 150, 55)),
        (((u - 0.12) / 0.12) ** 2 + ((v - 0.3) / 0.05) ** 2 <= 1.0, (50, 150, 55)),
        (petals, (235, 110, 180)),
        (_disc(u, v, 0.0, 0.72, 0.1), (245, 205, 40)),
    ]


def _rocket(u, v, extra):
    return [
        (_tri(u, v, 0.09, 0.22, -0.0) & (v >= 0.0), (245, 150, 30)),
        (_tri(u, v, 0.3, 0.18, 0.42), (190, 40, 40)),
        (_box(u, v, -0.14, 0.14, 0.18, 0.78), (225, 225, 230)),
        (_tri(u, v, 0.14, 0.78, 1.0), (190, 40, 40)),
        (_disc(u, v, 0.0, 0.55, 0.07), (70, 130, 210)),
    ]


def _snowman(u, v, extra):
    return [
        (
            _disc(u, v, 0.0, 0.2, 0.2) | _disc(u, v, 0.0, 0.5, 0.15) | _disc(u, v, 0.0, 0.76, 0.11),
            (245, 245, 250),
        ),
        ((v >= 0.75) & (v <= 0.79 - 0.3 * u) & (u >= 0) & (u <= 0.13), (240, 130, 30)),
        (_box(u, v, -0.11, 0.11, 0.86, 0.9) | _box(u, v, -0.07, 0.07, 0.9, 1.0), (30, 30, 35)),
    ]


def _ice_cream(u, v, extra):
    return [
        (_tri(u, v, 0.22, 0.62, 0.0), (210, 160, 90)),
        (_disc(u, v, 0.0, 0.72, 0.24) & (v >= 0.58), (245, 170, 200)),
        (_disc(u, v, 0.0, 0.98, 0.05), (200, 30, 50)),
    ]


def _lamp_post(u, v, extra):
    return [
        (_box(u, v, -0.12, 0.12, 0.0, 0.06), (45, 45, 50)),
        (_box(u, v, -0.035, 0.035, 0.0, 0.8), (45, 45, 50)),
        (_box(u, v, -0.12, 0.12, 0.78, 0.94), (250, 230, 140)),
        (_tri(u, v, 0.15, 0.94, 1.0), (45, 45, 50)),
    ]


_DRAWERS: tuple[_Drawer, ...] = (
    _tree,
    _house,
    _car,
    _sailboat,
    _mushroom,
    _flower,
    _rocket,
    _snowman,
    _ice_cream,
    _lamp_post,
)
# Each object's width in units of its height, and the share of the drawn size it takes (wide
# objects are drawn smaller so that every one fits the frame).
_WIDTH = dict(zip(CLASS_NAMES, (0.7, 0.96, 1.4, 1.0, 1.1, 0.6, 0.6, 0.5, 0.5, 0.35)))
_SCALE = dict(zip(CLASS_NAMES, (1.0, 0.85, 0.6, 0.85, 0.85, 1.0, 1.0, 1.0, 1.0, 1.0)))


@dataclass
class SceneBatch:
    """Generated images with their labels, captions, factors and object masks."""

    images: torch.Tensor  # (N, 3, size, size) uint8
    labels: torch.Tensor  # (N,) int64, index into CLASS_NAMES
    captions: list[str]
    factors: dict[str, list[str]]
    masks: torch.Tensor  # (N, size, size) uint8: 1 where the object covers half a pixel or more


@dataclass
class _Draws:
    labels: np.ndarray
    ground_idx: np.ndarray
    sky_idx: np.ndarray
    size_idx: np.ndarray
    height: np.ndarray  # object height, fraction of the side
    wall: np.ndarray  # bool: a plain wall rather than sky and ground
    wall_rgb: np.ndarray  # (n, 3) the wall's colour
    horizon: np.ndarray  # the ground's top edge, fraction of the side from the top
    cx: np.ndarray  # base centre, fraction of the side
    base_y: np.ndarray
    lean: np.ndarray  # radians
    mirror: np.ndarray  # bool
    car_idx: np.ndarray
    jitter: np.ndarray  # (n, 3) colour offset shared by the object's parts


def _draw(num_images: int, seed: int) -> _Draws:
    rng = np.random.default_rng(seed)
    n = num_images
    labels = rng.permutation(np.arange(n) % len(CLASS_NAMES))
    size_idx = rng.integers(0, len(SIZE_RANGES), n)
    bounds = np.array(list(SIZE_RANGES.values()), dtype=np.float32)[size_idx]
    scale = np.array([_SCALE[c] for c in CLASS_NAMES], dtype=np.float32)[labels]
    height = (rng.uniform(bounds[:, 0], bounds[:, 1]) * scale).astype(np.float32)
    horizon = rng.uniform(0.62, 0.78, n).astype(np.float32)
    half_width = height * np.array([_WIDTH[c] for c in CLASS_NAMES], dtype=np.float32)[labels] / 2
    margin = np.minimum(half_width + 0.03, 0.49)
    cx = rng.uniform(margin, 1 - margin).astype(np.float32)
    wall = rng.random(n) < WALL_SHARE
    # Outdoors the base stands on the ground band, a little below the horizon; before a wall
    # anywhere the object fits. The top always stays a little below the upper edge.
    ground_y = np.minimum(horizon + rng.uniform(0.04, 0.16, n), 0.97)
    wall_y = rng.uniform(height + 0.07, 0.97)
    base_y = np.where(wall, wall_y, ground_y)
    base_y = np.maximum(base_y, height + 0.07).astype(np.float32)
    return _Draws(
        labels=labels,
        ground_idx=rng.integers(0, len(GROUNDS), n),
        sky_idx=rng.integers(0, len(SKIES), n),
        size_idx=size_idx,
        height=height,
        wall=wall,
        wall_rgb=rng.uniform(40, 235, (n, 3)).astype(np.float32),
        horizon=horizon,
        cx=cx,
        base_y=base_y,
        lean=np.radians(rng.uniform(-MAX_LEAN_DEG, MAX_LEAN_DEG, n)).astype(np.float32),
        mirror=rng.random(n) < 0.5,
        car_idx=rng.integers(0, len(CAR_COLOURS), n),
        jitter=rng.uniform(-18, 18, (n, 3)).astype(np.float32),
    )


def _describe(d: _Draws) -> tuple[dict[str, list[str]], list[str]]:
    grounds, skies, sizes, cars = list(GROUNDS), list(SKIES), list(SIZE_RANGES), list(CAR_COLOURS)
    place = ["left" if x < 1 / 3 else "right" if x > 2 / 3 else "centre" for x in d.cx]
    factors = {
        "size": [sizes[i] for i in d.size_idx],
        "position": place,
        "backdrop": [BACKDROPS[int(w)] for w in d.wall],
        "ground": ["none" if w else grounds[i] for w, i in zip(d.wall, d.ground_idx)],
        "sky": ["none" if w else skies[i] for w, i in zip(d.wall, d.sky_idx)],
    }
    sky_words = {"day": "a blue sky", "dusk": "a dusk sky", "overcast": "an overcast sky"}
    captions = []
    for i, label in enumerate(d.labels):
        name = CLASS_NAMES[label]
        thing = f"{cars[d.car_idx[i]]} car" if name == "car" else name
        article = "an" if factors["size"][i][0] in "aeiou" else "a"
        if d.wall[i]:
            where = "in front of a plain wall"
        else:
            where = f"on {factors['ground'][i]} under {sky_words[factors['sky'][i]]}"
        captions.append(f"{article} {factors['size'][i]} {thing} {where}, {place[i]}")
    return factors, captions


def _backgrounds(d: _Draws, part: slice, size: int) -> torch.Tensor:
    """Sky gradient above the horizon and the ground colour below, or a plain wall:
    (n, 3, size, size) float32."""
    y = ((torch.arange(size, dtype=torch.float32) + 0.5) / size)[None, :, None]  # (1, H, 1)
    horizon = torch.from_numpy(d.horizon[part])[:, None, None]  # (n, 1, 1)
    skies = np.array([SKIES[s] for s in SKIES], dtype=np.float32)  # (S, 2, 3)
    top = torch.from_numpy(skies[d.sky_idx[part], 0])[:, :, None, None]  # (n, 3, 1, 1)
    low = torch.from_numpy(skies[d.sky_idx[part], 1])[:, :, None, None]
    mix = (y / horizon).clamp(0, 1)[:, None]  # (n, 1, H, 1)
    sky = top + mix * (low - top)
    ground = torch.from_numpy(
        np.array([GROUNDS[g] for g in GROUNDS], dtype=np.float32)[d.ground_idx[part]]
    )[:, :, None, None]
    # Soft horizon over about one pixel.
    below = ((y - horizon) * size + 0.5).clamp(0, 1)[:, None]  # (n, 1, H, 1)
    image = (sky + below * (ground - sky)).expand(-1, 3, size, size).clone()
    wall = torch.from_numpy(d.wall[part])
    image[wall] = torch.from_numpy(d.wall_rgb[part][d.wall[part]])[:, :, None, None].expand(
        -1, 3, size, size
    )
    return image


def _box_filter(fine: np.ndarray, size: int, s: int) -> np.ndarray:
    """(n, size*s, size*s) bool -> (n, size, size) float32 coverage."""
    n = len(fine)
    counts = fine.reshape(n, size, s, size, s).sum(axis=(2, 4), dtype=np.uint16)
    return counts.astype(np.float32) / (s * s)


def generate_scenes(num_images: int, seed: int, size: int = NATIVE_SIZE) -> SceneBatch:
    """Render `num_images` labelled upright scenes, the same ones for the same arguments."""
    if num_images < 1:
        raise DatasetError(f"num_images must be at least 1, got {num_images}")
    d = _draw(num_images, seed)
    s = SUPERSAMPLE
    images = torch.empty((num_images, 3, size, size), dtype=torch.uint8)
    masks = torch.empty((num_images, size, size), dtype=torch.uint8)
    fine = (np.arange(size * s, dtype=np.float32) + 0.5) / (size * s)  # image coords, 0..1
    car_rgb = np.array(list(CAR_COLOURS.values()), dtype=np.float32)
    for start in range(0, num_images, _CHUNK):
        part = slice(start, min(start + _CHUNK, num_images))
        canvas = _backgrounds(d, part, size)
        coverage = np.zeros((part.stop - part.start, size, size), dtype=np.float32)
        for label, draw in enumerate(_DRAWERS):
            idx = np.nonzero(d.labels[part] == label)[0]
            if not len(idx):
                continue
            g = idx + start
            h = d.height[g][:, None, None]
            # Image -> object frame: shift to the base, undo the lean, scale by the height,
            # v pointing up, u mirrored for half of the images.
            dx = (fine[None, None, :] - d.cx[g][:, None, None]) / h
            dy = (d.base_y[g][:, None, None] - fine[None, :, None]) / h
            cos, sin = np.cos(d.lean[g])[:, None, None], np.sin(d.lean[g])[:, None, None]
            u = dx * cos - dy * sin
            v = dx * sin + dy * cos
            u = np.where(d.mirror[g][:, None, None], -u, u)
            extra = car_rgb[d.car_idx[g]]
            union = np.zeros(u.shape, dtype=bool)
            for region, rgb in draw(u, v, extra):
                cover = torch.from_numpy(_box_filter(region, size, s))[:, None]  # (k, 1, H, W)
                colour = np.broadcast_to(np.asarray(rgb, np.float32), (len(idx), 3)) + d.jitter[g]
                colour_t = torch.from_numpy(np.clip(colour, 0, 255).astype(np.float32))
                canvas[idx] = canvas[idx].lerp(colour_t[:, :, None, None], cover)
                union |= region
            coverage[idx] = _box_filter(union, size, s)
        images[part] = canvas.round_().clamp_(0, 255).to(torch.uint8)
        masks[part] = torch.from_numpy(coverage >= 0.5).to(torch.uint8)
    factors, captions = _describe(d)
    return SceneBatch(
        images=images,
        labels=torch.from_numpy(d.labels.astype(np.int64)),
        captions=captions,
        factors=factors,
        masks=masks,
    )


def scene_captions(num_images: int, seed: int) -> list[str]:
    """The captions `generate_scenes(num_images, seed)` gives, without drawing any pixel."""
    return _describe(_draw(num_images, seed))[1]
