"""Multi-crop, the domain augmentation presets and BYOL's asymmetric pair."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.data.presets import MultiCrop
from engine.data.views import DOMAINS, IMAGENET_MEAN, IMAGENET_STD, Views, view_pair
from engine.errors import SpecError

MEAN = torch.tensor(IMAGENET_MEAN)[None, :, None, None]
STD = torch.tensor(IMAGENET_STD)[None, :, None, None]


def _images(batch: int = 8, size: int = 32, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    field = torch.rand(batch, 3, 4, 4, generator=gen)
    smooth = F.interpolate(field, size=(size, size), mode="bilinear", align_corners=False)
    return (smooth * 255).round().to(torch.uint8)


def _unit(views: torch.Tensor) -> torch.Tensor:
    return views * STD + MEAN  # back to [0, 1]


@pytest.mark.parametrize("augmentation", DOMAINS)
@pytest.mark.parametrize("num_local", [0, 3])
def test_multicrop_shapes_and_ranges(augmentation: str, num_local: int) -> None:
    crops = MultiCrop(augmentation, 32, 12, num_local)
    global_crops, local_crops = crops(_images(5, 40))
    assert global_crops.shape == (10, 3, 32, 32)
    assert local_crops.shape == (num_local * 5, 3, 12, 12)
    for x in (global_crops, local_crops):
        assert x.dtype == torch.float32 and torch.isfinite(x).all()
        unit = _unit(x)
        assert ((unit >= -1e-4) & (unit <= 1 + 1e-4)).all()


def test_multicrop_draws_every_crop_of_every_image_separately() -> None:
    same = _images(1).expand(6, -1, -1, -1).contiguous()
    torch.manual_seed(0)
    global_crops, local_crops = MultiCrop("natural", 32, 16, 4)(same)
    for x in (global_crops, local_crops):
        distinct = {tuple(v.flatten()[:64].tolist()) for v in x}
        assert len(distinct) == len(x)


def test_local_crops_cover_less_of_the_image_than_global_crops() -> None:
    # A left-to-right ramp: the spread of values in a crop grows with the share it covers.
    ramp = torch.linspace(0, 255, 64).round().to(torch.uint8)
    images = ramp.expand(64, 3, 64, 64).contiguous()
    torch.manual_seed(0)
    crops = MultiCrop("medical", 16, 16, 1, global_scale=(0.4, 1.0), local_scale=(0.05, 0.4))
    global_crops, local_crops = crops(images)

    def spread(x):
        grey = _unit(x).mean(dim=1).flatten(1)
        return (grey.max(dim=1).values - grey.min(dim=1).values).mean()

    assert spread(local_crops) < 0.75 * spread(global_crops)


def test_natural_multicrop_follows_dino() -> None:
    crops = MultiCrop("natural", 224, 96, 8)
    first, second = (v.plan for v in crops.global_views)
    local = crops.local_views.plan
    assert (first.blur_p, first.solarize_p) == (1.0, 0.0)
    assert (second.blur_p, second.solarize_p) == (0.1, 0.2)
    assert (local.blur_p, local.solarize_p) == (0.5, 0.0)
    assert first.crop_scale == (0.4, 1.0) and local.crop_scale == (0.05, 0.4)
    assert first.jitter == (0.4, 0.4, 0.2, 0.1) and first.gray_p == 0.2
    # Small images: no blur (as SimCLR on CIFAR), solarisation stays.
    small = MultiCrop("natural", 32, 12, 2)
    assert small.global_views[0].plan.blur_p == 0.0 and small.global_views[1].plan.solarize_p == 0.2


def test_view_pair_is_asymmetric_only_for_natural_images() -> None:
    a, b = view_pair("natural", 96, asymmetric=True)
    assert (a.plan.blur_p, a.plan.solarize_p) == (1.0, 0.0)
    assert (b.plan.blur_p, b.plan.solarize_p) == (0.1, 0.2)
    a, b = view_pair("natural", 96)
    assert a.plan == b.plan and a.plan.solarize_p == 0.0 and a.plan.blur_p == 0.5
    for domain in ("medical", "satellite"):
        a, b = view_pair(domain, 96, asymmetric=True)
        assert a.plan == b.plan and a.plan.blur_p == 0.0 and a.plan.solarize_p == 0.0


def test_natural_is_the_simclr_recipe() -> None:
    for size in (32, 96):
        assert Views("natural", size).plan == Views("simclr", size).plan


@pytest.mark.parametrize("augmentation", DOMAINS)
def test_domain_presets_draw_per_sample(augmentation: str) -> None:
    same = _images(1).expand(16, -1, -1, -1).contiguous()
    torch.manual_seed(0)
    out = Views(augmentation, 32)(same)
    assert len({tuple(v.flatten()[:64].tolist()) for v in out}) == 16


def _bright_corner(batch: int) -> torch.Tensor:
    images = torch.full((batch, 3, 32, 32), 40, dtype=torch.uint8)
    images[:, :, :10, :10] = 250  # a bright square in the top-left corner
    return images


def _quadrants(views: torch.Tensor) -> set[int]:
    grey = _unit(views).mean(dim=1)  # (B, S, S)
    half = grey.shape[-1] // 2
    quads = torch.stack(
        [
            grey[:, :half, :half],
            grey[:, :half, half:],
            grey[:, half:, :half],
            grey[:, half:, half:],
        ],
        dim=1,
    ).mean(dim=(2, 3))  # (B, 4)
    return set(quads.argmax(dim=1).tolist())


def test_satellite_turns_and_flips_vertically_natural_does_not() -> None:
    torch.manual_seed(0)
    whole = (1.0, 1.0)  # no zoom: only flips and turns move the corner
    assert _quadrants(Views("satellite", 32, crop_scale=whole)(_bright_corner(64))) == {0, 1, 2, 3}
    assert _quadrants(Views("natural", 32, crop_scale=whole)(_bright_corner(64))) == {0, 1}


def test_satellite_changes_only_brightness_and_contrast() -> None:
    torch.manual_seed(0)
    red = torch.zeros(16, 3, 32, 32, dtype=torch.uint8)
    red[:, 0] = 200
    unit = _unit(Views("satellite", 32)(red))
    # Contrast blends towards the mean grey (as torchvision's), which lifts G and B equally;
    # a hue rotation or saturation change would make them differ.
    assert torch.allclose(unit[:, 1], unit[:, 2], atol=1e-5)
    assert (unit[:, 0] > unit[:, 1]).all()
    plan = Views("satellite", 32).plan
    assert plan.jitter == (0.4, 0.4, 0.0, 0.0) and plan.gray_p == 0.0 and plan.blur_p == 0.0


def test_medical_is_grey_with_weak_crops() -> None:
    torch.manual_seed(0)
    unit = _unit(Views("medical", 32)(_images(16)))
    assert torch.allclose(unit[:, 0], unit[:, 1], atol=1e-5)
    assert torch.allclose(unit[:, 1], unit[:, 2], atol=1e-5)
    assert Views("medical", 32).plan.crop_scale == (0.5, 1.0)


def test_solarize_inverts_bright_pixels() -> None:
    white = torch.full((8, 3, 32, 32), 255, dtype=torch.uint8)
    torch.manual_seed(0)
    # Jitter moves white to at least 0.6 (brightness >= 0.6; contrast and colour keep a flat grey).
    assert _unit(Views("natural", 32, solarize_p=0.0)(white)).min() > 0.59
    assert _unit(Views("natural", 32, solarize_p=1.0)(white)).max() < 0.41


def test_bad_arguments_raise_spec_errors() -> None:
    with pytest.raises(SpecError, match="augmentation"):
        view_pair("underwater", 32)
    with pytest.raises(SpecError, match="augmentation"):
        MultiCrop("underwater", 32, 16, 2)
    with pytest.raises(SpecError, match="num_local"):
        MultiCrop("natural", 32, 16, -1)
    with pytest.raises(SpecError, match="no colour jitter"):
        Views("mae", 32, jitter=(0.4, 0.4, 0.2, 0.1))
    with pytest.raises(SpecError, match="between 0 and 1"):
        Views("natural", 32, solarize_p=1.5)
