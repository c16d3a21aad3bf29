"""Ground-truth object masks of `shapes`: geometry checked by hand, determinism, the catalog."""

import math

import numpy as np
import torch

from engine.data import shapes
from engine.data.datasets import clear_memory_cache, load_dataset, resize_masks


def test_masks_are_uint8_per_image_and_deterministic():
    batch = shapes.generate_shapes(40, seed=3, size=32)
    assert batch.masks.shape == (40, 32, 32) and batch.masks.dtype == torch.uint8
    assert set(batch.masks.unique().tolist()) == {0, 1}
    assert torch.equal(shapes.generate_shapes(40, seed=3, size=32).masks, batch.masks)
    assert not torch.equal(shapes.generate_shapes(40, seed=4, size=32).masks, batch.masks)


def test_circle_and_square_masks_have_their_areas():
    # A circle of circumradius r (fraction of the side) is u^2 + v^2 <= 0.85 in radii: area
    # 0.85 pi (r size)^2 pixels; a square max(|u|, |v|) <= 0.72: (1.44 r size)^2.
    size = 64
    batch = shapes.generate_shapes(200, seed=11, size=size)
    scenes = shapes._draw_scenes(200, 11)
    checked = 0
    for i, label in enumerate(scenes.labels):
        name = shapes.SHAPE_NAMES[label]
        r = float(scenes.radius[i]) * size
        if name == "circle":
            expected = 0.85 * math.pi * r * r
        elif name == "square":
            expected = (1.44 * r) ** 2
        else:
            continue
        area = int(batch.masks[i].sum())
        assert abs(area - expected) <= 0.04 * expected + 2 * r, (name, area, expected)
        # The mask sits where the shape is: its centroid is the drawn centre.
        ys, xs = np.nonzero(batch.masks[i].numpy())
        assert abs(xs.mean() + 0.5 - scenes.cx[i] * size) < 1.0
        assert abs(ys.mean() + 0.5 - scenes.cy[i] * size) < 1.0
        checked += 1
    assert checked >= 20


def test_mask_pixels_carry_the_shape_colour():
    batch = shapes.generate_shapes(20, seed=5, size=32)
    scenes = shapes._draw_scenes(20, 5)
    for i in range(20):
        inside = batch.masks[i].bool()
        colour = torch.from_numpy(scenes.fg[i]).round()
        # Pixels fully inside the shape (eroded by one pixel) are exactly its colour.
        core = inside.clone()
        core[1:-1, 1:-1] &= inside[:-2, 1:-1] & inside[2:, 1:-1] & inside[1:-1, :-2]
        core[1:-1, 1:-1] &= inside[1:-1, 2:]
        pixels = batch.images[i][:, core].float().T  # (n, 3)
        assert (pixels - colour).abs().max() <= 1.0


def test_the_test_split_has_masks_at_the_asked_size(tmp_path):
    test = load_dataset("shapes", "test", image_size=32)
    assert test.masks is not None and test.masks.shape == (len(test), 32, 32)
    assert test.masks.dtype == torch.uint8
    native = shapes.generate_shapes(shapes.NUM_TEST, seed=shapes.SPLIT_SEEDS["test"]).masks
    assert torch.equal(test.masks, resize_masks(native, 32))
    load_dataset("shapes", "test", image_size=32, cache_dir=tmp_path)  # writes the cache
    clear_memory_cache()
    cached = load_dataset("shapes", "test", image_size=32, cache_dir=tmp_path)  # reads it
    assert torch.equal(cached.masks, test.masks)
    assert load_dataset("digits", "test", image_size=32).masks is None


def test_resize_masks_by_hand():
    # A 4 x 4 mask whose left half is set, halved: the left column stays, the right goes.
    mask = torch.zeros(1, 4, 4, dtype=torch.uint8)
    mask[:, :, :2] = 1
    assert resize_masks(mask, 2).tolist() == [[[1, 0], [1, 0]]]
    assert resize_masks(mask, 4) is not None and torch.equal(resize_masks(mask, 4), mask)
