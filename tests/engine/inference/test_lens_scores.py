"""The lenses score themselves where the truth is known: the Attention lens's Jaccard on a
builtin example picture (its object mask), the MAE lens's PSNR beside the two fills."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.data.shapes import generate_shapes
from engine.inference import attention as attention_lens
from engine.inference.attention import attention_maps
from engine.inference.examples import NUM_SHAPES, SHAPES_SEED, SHAPES_SIZE, scene_examples
from engine.inference.reconstruct import reconstruct
from engine.inference.truth import known_mask
from tests.engine.inference.test_image_lenses import PHOTO, RECONSTRUCT, _load, folders  # noqa: F401


def _examples():
    batch = generate_shapes(NUM_SHAPES, seed=SHAPES_SEED, size=SHAPES_SIZE)
    return [img.permute(1, 2, 0).numpy() for img in batch.images], batch.masks


def test_example_pictures_are_recognised_and_nothing_else():
    pictures, masks = _examples()
    for picture, mask in zip(pictures, masks, strict=True):
        assert np.array_equal(known_mask(picture.copy()), mask.numpy().astype(bool))
    scenes = scene_examples()  # the scenes pictures: their masks too
    for image, mask in zip(scenes.images, scenes.masks, strict=True):
        assert np.array_equal(known_mask(image.permute(1, 2, 0).numpy()), mask.numpy() > 0)
        assert 0 < mask.float().mean() < 0.5  # an object, not the whole picture
    assert known_mask(PHOTO) is None
    changed = pictures[0].copy()
    changed[0, 0, 0] ^= 1  # one pixel off: not the example any more
    assert known_mask(changed) is None


def _attend(monkeypatch, weights):
    """Make the lens's last-layer [CLS] row over the 16 patches equal `weights` (16,)."""
    real = attention_lens.vision_attentions

    def fixed(lm_, pixels):
        out = real(lm_, pixels)
        last = out[-1].clone()
        last[:, :, 0, :] = 0.0
        last[:, :, 0, 1:] = weights / weights.sum()
        return (*out[:-1], last)

    monkeypatch.setattr(attention_lens, "vision_attentions", fixed)


def test_attention_on_the_object_gives_jaccard_one(folders, monkeypatch):  # noqa: F811
    # A 16 px picture whose "object" is the top-left 8 x 4 pixels: patches 0 and 1 of the
    # 4 x 4 grid of 4 px patches. Attention half on each: the 60% mask is those two: 1.0.
    import engine.inference.truth as truth

    picture = np.zeros((16, 16, 3), dtype=np.uint8)
    mask = np.zeros((16, 16), dtype=bool)
    mask[:4, :8] = True
    monkeypatch.setattr(truth, "known_mask", lambda image: mask if image is picture else None)
    weights = torch.zeros(16)
    weights[:2] = 0.5
    _attend(monkeypatch, weights)
    lm = _load(folders / "vit")
    out = attention_maps(lm, picture)
    assert out["jaccard"] == 1.0 and out["jaccard_heads"] == [1.0] * out["num_heads"]
    # Half the mass on a third patch, outside: the mask keeps it, then one object patch
    # (0.5 + 0.25 >= 0.6): 1 patch shared of 3 in the union.
    weights[2] = 1.0
    out = attention_maps(lm, picture)
    assert out["jaccard"] == pytest.approx(1 / 3, abs=1e-4)
    assert attention_maps(lm, PHOTO)["jaccard"] is None


def test_attention_jaccard_on_a_builtin_example(folders, monkeypatch):  # noqa: F811
    # The real example picture and its own mask, resized to 16 px as the image is; attention
    # spread by how much of each patch the object covers, every attended patch kept.
    pictures, masks = _examples()
    truth16 = torch.nn.functional.interpolate(
        masks[:1, None].float(), size=(16, 16), mode="bilinear", antialias=True
    )[0, 0].ge(0.5)
    patches = truth16.reshape(4, 4, 4, 4).permute(0, 2, 1, 3).reshape(16, 16)  # (patch, px)
    _attend(monkeypatch, patches.float().mean(dim=1))
    out = attention_maps(_load(folders / "vit"), pictures[0], layer=0, keep=1.0)
    covered = upsample(out["keep_mask"], 16)
    expected = (covered & truth16.numpy()).sum() / (covered | truth16.numpy()).sum()
    assert out["jaccard"] == pytest.approx(expected, abs=1e-4) and 0 < expected < 1


def upsample(mask, size):
    factor = size // mask.shape[0]
    return np.kron(mask, np.ones((factor, factor), dtype=bool))


def test_mae_lens_reports_psnr_and_the_fills(folders):  # noqa: F811
    lm = _load(folders / "mae", RECONSTRUCT)
    out = reconstruct(lm, PHOTO, mask_ratio=0.75, seed=3)
    for key in ("psnr", "psnr_mean_colour", "psnr_nearest_visible"):
        assert isinstance(out[key], float) and 0 < out[key] <= 100, key
    assert reconstruct(lm, PHOTO, mask_ratio=0.0)["psnr"] is None  # nothing hidden
