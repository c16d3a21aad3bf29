"""Batched views: shapes, ranges, per-sample randomness, seeding, and torchvision references."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from engine.data import presets as P
from engine.data import views as V
from engine.data.views import IMAGENET_MEAN, IMAGENET_STD, RECIPES, Views, make_views, normalize
from engine.errors import SpecError

LOW = torch.tensor([(0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)])[None, :, None, None]
HIGH = torch.tensor([(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)])[None, :, None, None]
MEAN = torch.tensor(IMAGENET_MEAN)[None, :, None, None]
STD = torch.tensor(IMAGENET_STD)[None, :, None, None]


def _images(batch: int = 8, size: int = 32, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    # Smooth random images (a 4x4 field upsampled), so crops and blur change them visibly.
    field = torch.rand(batch, 3, 4, 4, generator=gen)
    smooth = F.interpolate(field, size=(size, size), mode="bilinear", align_corners=False)
    return (smooth * 255).round().to(torch.uint8)


@pytest.mark.parametrize("recipe", sorted(RECIPES))
@pytest.mark.parametrize("size", [32, 64])
def test_output_shape_dtype_and_range(recipe: str, size: int) -> None:
    out = make_views(recipe, size)(_images(6, 48))
    assert out.shape == (6, 3, size, size) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert (out >= LOW - 1e-4).all() and (out <= HIGH + 1e-4).all()


@pytest.mark.parametrize("recipe", ["simclr", "mae"])
def test_parameters_are_drawn_per_sample(recipe: str) -> None:
    same = _images(1).expand(16, -1, -1, -1).contiguous()  # one image sixteen times
    torch.manual_seed(0)
    out = make_views(recipe, 32)(same)
    distinct = {tuple(v.flatten()[:64].tolist()) for v in out}
    assert len(distinct) == 16, "identical inputs in one batch must get different views"


@pytest.mark.parametrize("recipe", ["simclr", "mae"])
def test_views_are_reproducible_under_manual_seed(recipe: str) -> None:
    x, views = _images(), make_views(recipe, 64)
    torch.manual_seed(123)
    first = views(x)
    torch.manual_seed(123)
    again = views(x)
    assert torch.equal(first, again)
    assert not torch.equal(first, views(x))  # and the next call draws new parameters


def test_none_is_deterministic_resize_then_normalize() -> None:
    x, views = _images(4, 48), make_views("none", 32)
    resized = F.interpolate(
        x.float() / 255, size=(32, 32), mode="bilinear", align_corners=False, antialias=True
    )
    assert torch.equal(views(x), views(x))
    assert torch.allclose(views(x), normalize(resized), atol=1e-6)
    assert torch.allclose(make_views("none", 48)(x), normalize(x), atol=1e-6)


def test_normalize_matches_torchvision() -> None:
    x = _images()
    expected = TF.normalize(x.float() / 255, list(IMAGENET_MEAN), list(IMAGENET_STD))
    assert torch.allclose(normalize(x), expected, atol=1e-6)


def test_full_box_crop_is_identity_and_flip_mirrors() -> None:
    x = _images(2).float()
    box = torch.tensor([[0.0, 0.0, 32.0, 32.0]]).expand(2, 4)
    out = V._crop_and_flip(x, box, torch.tensor([False, True]), 32, "bilinear")
    assert torch.allclose(out[0], x[0], atol=1e-4)
    assert torch.allclose(out[1], x[1].flip(-1), atol=1e-4)


def test_box_crop_matches_torchvision_resized_crop() -> None:
    x = _images(1).float()
    box = torch.tensor([[4.0, 6.0, 16.0, 20.0]])  # x0, y0, w, h
    out = V._crop_and_flip(x, box, torch.tensor([False]), 32, "bilinear")
    expected = TF.resized_crop(x, 6, 4, 20, 16, [32, 32], antialias=False)
    # Inside the crop both interpolate the same pixels; at its rim torchvision replicates the
    # crop's edge while grid_sample reads the real neighbours, so the rim is left out.
    assert torch.allclose(out[..., 2:-2, 2:-2], expected[..., 2:-2, 2:-2], atol=1e-3)


def test_crop_boxes_follow_scale_and_ratio() -> None:
    torch.manual_seed(0)
    boxes = V.sample_crop_boxes(2000, 40, 30, scale=(0.2, 0.5))
    x0, y0, w, h = boxes.unbind(1)
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x0 + w <= 30).all() and (y0 + h <= 40).all()
    area = w * h / (40 * 30)
    assert area.min() > 0.17 and area.max() < 0.55  # whole-pixel rounding widens the range a bit
    assert (w / h).min() > 0.6 and (w / h).max() < 1.45
    assert len({tuple(b) for b in boxes.tolist()}) > 1500


@pytest.mark.parametrize(
    "step, reference",
    [
        (0, TF.adjust_brightness),
        (1, TF.adjust_contrast),
        (2, TF.adjust_saturation),
    ],
)
def test_jitter_steps_match_torchvision(step: int, reference) -> None:
    x = _images(6).float() / 255
    values = torch.tensor([0.6, 0.8, 1.0, 1.2, 1.4, 1.9])
    factors = torch.tensor([1.0, 1.0, 1.0, 0.0]).repeat(6, 1)
    factors[:, step] = values
    order = torch.tensor([step] + [s for s in range(4) if s != step]).repeat(6, 1)
    out = V._colour_jitter(x.clone(), factors, order)
    expected = torch.stack([reference(img, float(v)) for img, v in zip(x, values)])
    assert torch.allclose(out, expected, atol=1e-5)


def test_hue_rotation_keeps_grey_and_turns_red_to_green() -> None:
    pixels = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5]])[:, :, None, None]  # red, grey
    factors = torch.tensor([[1.0, 1.0, 1.0, 1 / 3]]).repeat(2, 1)  # a third of a turn
    out = V._colour_jitter(pixels, factors, torch.tensor([[3, 0, 1, 2]]).repeat(2, 1))
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([0.0, 1.0, 0.0]), atol=1e-5)
    assert torch.allclose(out[1], pixels[1], atol=1e-6)


def test_blur_preserves_constant_images_and_smooths_noise() -> None:
    flat = torch.full((2, 3, 16, 16), 0.3)
    assert torch.allclose(V._gaussian_blur(flat, torch.tensor([0.5, 2.0]), 5), flat, atol=1e-6)
    noise = torch.rand(1, 3, 16, 16)
    assert V._gaussian_blur(noise, torch.tensor([2.0]), 5).std() < noise.std() / 2


def test_bad_arguments_raise_spec_errors() -> None:
    with pytest.raises(SpecError, match="simclr"):
        Views("simclear", 32)
    with pytest.raises(SpecError, match="crop_scale"):
        Views("simclr", 32, crop_scale=(0.5, 0.1))
    with pytest.raises(SpecError, match="size"):
        Views("mae", 4)
    assert make_views("simclr", 32, crop_scale=(0.5, 1.0)).plan.crop_scale == (0.5, 1.0)
    assert make_views("simclr", 32).plan.blur_p == 0.0  # SimCLR skipped blur at CIFAR size
    assert make_views("simclr", 96).plan.crop_scale == (0.08, 1.0)


def _coordinates(batch: int, size: int = 32) -> torch.Tensor:
    """Images whose red channel is the column and green the row (scaled to 0..248): a view's
    values say where in the image each of its pixels came from."""
    ramp = torch.arange(size) * (248 // (size - 1))
    image = torch.stack(
        [
            ramp.expand(size, size),
            ramp[:, None].expand(size, size),
            torch.zeros(size, size, dtype=torch.long),
        ]
    )
    return image.expand(batch, 3, size, size).to(torch.uint8).contiguous()


def test_two_images_of_a_batch_get_their_own_crops() -> None:
    images = _coordinates(2)
    views = Views("mae", 32, crop_scale=(0.2, 0.5))
    torch.manual_seed(4)
    unit = views(images) * STD + MEAN  # (2, 3, 32, 32) back in [0, 1]
    torch.manual_seed(4)
    boxes = V.sample_crop_boxes(2, 32, 32, (0.2, 0.5))  # the first draw the view maker makes
    step = (248 // 31) / 255
    for i in range(2):
        cols, rows = unit[i, 0] / step, unit[i, 1] / step  # source pixel of each view pixel
        x0, y0, w, h = boxes[i].tolist()
        assert cols.min() >= x0 - 0.6 and cols.max() <= x0 + w - 0.4  # inside its own box
        assert rows.min() >= y0 - 0.6 and rows.max() <= y0 + h - 0.4
    assert not torch.equal(boxes[0], boxes[1])
    assert not torch.allclose(unit[0], unit[1], atol=0.05)


def test_colour_steps_are_drawn_per_sample() -> None:
    grey = torch.full((16, 3, 32, 32), 128, dtype=torch.uint8)  # one flat image, 16 times
    torch.manual_seed(0)
    unit = Views("simclr", 32, crop_scale=(1.0, 1.0))(grey) * STD + MEAN  # no zoom: flat
    means = unit.mean(dim=(2, 3))  # (16, 3) the colour each sample was given
    assert len({tuple(m) for m in means.mul(1000).round().tolist()}) >= 12  # jitter p 0.8


@pytest.mark.parametrize("size", [32, 64])
def test_asymmetric_pair_with_solarisation_keeps_shape_and_range(size: int) -> None:
    torch.manual_seed(0)
    for views in V.view_pair("natural", size, asymmetric=True):
        out = views(_images(6, 48))
        assert out.shape == (6, 3, size, size) and out.dtype == torch.float32
        assert torch.isfinite(out).all()
        assert (out >= LOW - 1e-4).all() and (out <= HIGH + 1e-4).all()


def test_synthetic_recipe_makes_colour_useless_but_keeps_brightness_structure() -> None:
    # One red square on blue, 400 times: the natural recipe's small hue jitter keeps the
    # square's hue near red; the synthetic recipe spreads it round the whole colour wheel.
    images = torch.zeros(400, 3, 32, 32, dtype=torch.uint8)
    images[:, 2] = 200
    images[:, :, 8:24, 8:24] = torch.tensor([220, 40, 40], dtype=torch.uint8)[:, None, None]

    def hues(recipe: str) -> torch.Tensor:
        torch.manual_seed(0)
        unit = (Views(recipe, 32, crop_scale=(1.0, 1.0))(images) * STD + MEAN)[:, :, 16, 16]
        r, g, b = unit.unbind(1)
        chroma = unit.max(1).values - unit.min(1).values
        coloured = chroma > 0.05  # grayscale views have no hue
        return torch.atan2(3**0.5 * (g - b), 2 * r - g - b)[coloured], coloured.float().mean()

    natural, natural_colour = hues("natural")
    synthetic, synthetic_colour = hues("synthetic")
    spread = lambda h: 1 - torch.stack([h.cos().mean(), h.sin().mean()]).norm()
    assert spread(natural) < 0.1 < 0.6 < spread(synthetic)  # circular variance of the hue
    assert natural_colour > 0.75 and 0.35 < synthetic_colour < 0.65  # grayscale p 0.2 / 0.5
    assert "synthetic" in V.DOMAINS and V.AUGMENTATIONS[0] == V.AUTO


def test_auto_augmentation_is_the_datasets_suggestion() -> None:
    from engine.config import build_config
    from engine.methods.simclr import SimCLRConfig

    quick = build_config(SimCLRConfig, "quick", {})
    assert quick.augmentation == V.AUTO
    assert P.resolve_augmentation(quick, "shapes").augmentation == "synthetic"
    assert P.resolve_augmentation(quick, "digits").augmentation == "natural"
    assert P.resolve_augmentation(quick, "no-such-dataset").augmentation == "natural"
    chosen = build_config(SimCLRConfig, "quick", {"augmentation": "medical"})
    assert P.resolve_augmentation(chosen, "shapes") is chosen
    assert build_config(SimCLRConfig, "paper", {}).augmentation == "natural"
    # Unresolved (a method built without a dataset), auto makes the natural views.
    first, second = V.view_pair(V.AUTO, 32)
    assert first.plan == Views("natural", 32).plan and second is first


def test_a_job_stores_the_augmentation_it_will_train_with(tmp_path) -> None:
    from engine.api import Studio

    studio = Studio(tmp_path)
    assert studio.validate({"method": "simclr", "dataset": "shapes"})[1].augmentation == "synthetic"
    assert studio.validate({"method": "byol", "dataset": "digits"})[1].augmentation == "natural"
    spec = {"method": "vicreg", "dataset": "shapes", "params": {"augmentation": "satellite"}}
    assert studio.validate(spec)[1].augmentation == "satellite"
    job = studio.store.get_job(studio.submit({"method": "dino", "dataset": "shapes"}))
    assert job.config["augmentation"] == "synthetic"
