"""Batched augmented views, drawn per sample, on whatever device holds the images.

Recipes follow the papers: SimCLR (Chen et al. 2020, arXiv:2002.05709, appendix A: crop, flip,
colour jitter, grayscale, blur), MAE (He et al. 2022, arXiv:2111.06377: crop and flip only) and
BEiT (Bao et al. 2021, arXiv:2106.08254: crop, flip, colour jitter). Domain presets (``DOMAINS``:
natural, medical, satellite) are the recipes a user picks per job for the invariance methods;
``view_pair`` gives BYOL's asymmetric pair of them and ``MultiCrop`` DINO's global and local crops.
Crop and flip are one ``grid_sample`` with a per-sample affine grid; colour jitter, grayscale and
normalisation are per-sample 3x3 colour matrices (``bmm``); blur is a grouped convolution with a
per-sample kernel. Parameters follow torchvision's sampling rules (``RandomResizedCrop``,
``ColorJitter``) and are drawn from the CPU generator, so ``torch.manual_seed`` fixes the views on
any device, and every sample of a batch gets its own draw.

Why not kornia.augmentation: on two CPU cores its SimCLR pipeline ran at about 9k images/s at 32 px
and 2k at 64 px against 35-45k and 7-8k here (bench/views.py). Its ColorJitter converts to HSV and
back (the hue step alone runs at ~20k images/s at 32 px) and its RandomResizedCrop resizes crop by
crop. Hue here is a rotation about the grey axis of RGB (the classic hue-rotate matrix): it maps
red to green at 120 degrees as HSV does, but keeps the mean of R, G, B rather than HSV value, and
is clamped to [0, 1] like the other steps.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.distributed import draw_rows, local_rows
from engine.errors import DatasetError, SpecError

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
RECIPES: dict[str, str] = {
    "simclr": "SimCLR: random resized crop, flip, colour jitter (p 0.8), grayscale (p 0.2), "
    "blur (p 0.5, above 32 px)",
    "mae": "MAE: random resized crop (scale 0.2-1), horizontal flip, nothing else",
    "beit": "BEiT: random resized crop, horizontal flip, colour jitter 0.4 (no hue), bicubic",
    "natural": "natural images: the SimCLR recipe (crop, flip, colour jitter, grayscale, blur)",
    "medical": "medical scans: weak crops (scale 0.5-1), flip, little brightness/contrast change, "
    "always grayscale",
    "satellite": "overhead imagery: crop, 90-degree rotations, horizontal and vertical flips, "
    "brightness/contrast only",
    "synthetic": "rendered images whose colours are arbitrary (shapes, diagrams): crop (scale "
    "0.3-1), flip, colour jitter with any hue (p 0.8), grayscale half the time",
    "none": "resize and normalise only; no randomness",
}
# The augmentation presets a user picks per job for contrastive and invariance methods.
DOMAINS: tuple[str, ...] = ("natural", "medical", "satellite", "synthetic")
# A method's `augmentation` may also be "auto": the dataset's own suggestion (DatasetSource),
# filled in when a job is validated; "natural" where no dataset is known.
AUTO = "auto"
AUGMENTATIONS: tuple[str, ...] = (AUTO, *DOMAINS)
# BYOL's colour jitter (Grill et al. 2020, table 6), also DINO's, Barlow Twins' and VICReg's.
BYOL_JITTER: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)
_LUMA = (0.2989, 0.587, 0.114)  # ITU-R 601 weights as torchvision rounds them (rgb_to_grayscale)


@dataclass(frozen=True)
class _Plan:
    """What one recipe does at one size; probabilities are per sample."""

    crop_scale: tuple[float, float] | None  # None: resize the whole image, no random crop
    flip: bool = False
    vflip: bool = False  # vertical flips (p 0.5)
    rotate90: bool = False  # a uniform number of quarter turns per sample
    jitter: tuple[float, float, float, float] | None = None  # brightness, contrast, saturation, hue
    jitter_p: float = 0.0
    gray_p: float = 0.0
    blur_p: float = 0.0
    blur_kernel: int = 0  # 0: this recipe does not blur at this size, whatever blur_p says
    solarize_p: float = 0.0
    mode: str = "bilinear"


def _plan(recipe: str, size: int, crop_scale: tuple[float, float] | None) -> _Plan:
    if recipe not in RECIPES:
        raise SpecError(f"unknown view recipe {recipe!r}; known recipes: {', '.join(RECIPES)}")
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 8:
        raise SpecError(f"view size must be a whole number of pixels, at least 8, got {size!r}")
    if crop_scale is not None:
        if recipe == "none":
            raise SpecError("recipe 'none' does not crop; drop crop_scale or pick another recipe")
        try:
            low, high = (float(v) for v in crop_scale)
        except (TypeError, ValueError) as exc:
            raise SpecError(
                f"crop_scale must be two numbers (low, high), got {crop_scale!r}"
            ) from exc
        if not 0.0 < low <= high <= 1.0:
            raise SpecError(
                f"crop_scale must satisfy 0 < low <= high <= 1, got {tuple(crop_scale)}"
            )
        crop_scale = (low, high)
    # ImageNet setting (0.08, 1); the CIFAR-size setups use (0.2, 1) for small images.
    default_scale = (0.2, 1.0) if size <= 64 else (0.08, 1.0)
    if recipe in ("simclr", "natural"):
        # Kernel about 10% of the side, odd; SimCLR skipped blur on CIFAR-10 (32 px).
        kernel = int(0.1 * size) // 2 * 2 + 1
        kernel = kernel if size > 32 and kernel >= 3 else 0
        return _Plan(
            crop_scale or default_scale,
            flip=True,
            jitter=(0.4, 0.4, 0.4, 0.1),
            jitter_p=0.8,
            gray_p=0.2,
            blur_p=0.5 if kernel else 0.0,
            blur_kernel=kernel,
        )
    if recipe == "medical":
        # Scans have no colour to be invariant to and small findings a strong crop would cut
        # away: keep most of the image, move intensities a little, and look in grey.
        return _Plan(
            crop_scale or (0.5, 1.0),
            flip=True,
            jitter=(0.2, 0.2, 0.0, 0.0),
            jitter_p=0.8,
            gray_p=1.0,
        )
    if recipe == "satellite":
        # Overhead images have no up: all eight flips and quarter turns are the same scene.
        # Colour carries land cover, so only brightness and contrast (illumination) change.
        return _Plan(
            crop_scale or default_scale,
            flip=True,
            vflip=True,
            rotate90=True,
            jitter=(0.4, 0.4, 0.0, 0.0),
            jitter_p=0.8,
        )
    if recipe == "synthetic":
        # Where colour is drawn independently of what an image shows (the builtin shapes), the
        # natural recipe's small hue jitter leaves colour the easiest way to tell two images
        # apart, and a contrastive method learns colour, not shape. Any hue and more grayscale
        # make colour useless; crops keep at least 30% so a view rarely misses the object.
        # bench/RESULTS.md: SimCLR on shapes reaches k-NN 0.74 in 500 steps with this recipe
        # and 0.22 with the natural one (random init 0.17).
        return _Plan(
            crop_scale or (0.3, 1.0),
            flip=True,
            jitter=(0.4, 0.4, 0.4, 0.5),
            jitter_p=0.8,
            gray_p=0.5,
        )
    if recipe == "beit":
        # BEiT's code: ColorJitter(0.4, 0.4, 0.4) on every image, flip, bicubic crop.
        return _Plan(
            crop_scale or default_scale,
            flip=True,
            jitter=(0.4, 0.4, 0.4, 0.0),
            jitter_p=1.0,
            mode="bicubic",
        )
    if recipe == "mae":
        return _Plan(crop_scale or (0.2, 1.0), flip=True, mode="bicubic")  # MAE used bicubic (3)
    return _Plan(None)


def _probability(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise SpecError(f"{name} must be a probability, got {value!r}") from None
    if not 0.0 <= value <= 1.0:
        raise SpecError(f"{name} must be between 0 and 1, got {value!r}")
    return value


def _override(
    plan: _Plan,
    recipe: str,
    blur_p: float | None,
    solarize_p: float | None,
    jitter: tuple[float, float, float, float] | None,
) -> _Plan:
    """The plan with per-view probabilities or jitter strengths replaced (BYOL's and DINO's
    asymmetric views). Blur stays off where the recipe does not blur at this size."""
    changes: dict[str, Any] = {}
    if blur_p is not None:
        changes["blur_p"] = _probability("blur_p", blur_p) if plan.blur_kernel else 0.0
    if solarize_p is not None:
        changes["solarize_p"] = _probability("solarize_p", solarize_p)
    if jitter is not None:
        if plan.jitter is None:
            raise SpecError(f"recipe {recipe!r} has no colour jitter to set strengths for")
        try:
            strengths = tuple(float(v) for v in jitter)
        except (TypeError, ValueError):
            raise SpecError(f"jitter must be four numbers, got {jitter!r}") from None
        if len(strengths) != 4 or min(strengths) < 0 or strengths[3] > 0.5:
            raise SpecError(
                f"jitter must be (brightness, contrast, saturation, hue), all >= 0 "
                f"and hue <= 0.5, got {jitter!r}"
            )
        changes["jitter"] = strengths
    return dataclasses.replace(plan, **changes) if changes else plan


def sample_crop_boxes(
    batch: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    tries: int = 10,
) -> Tensor:
    """Per-sample crop boxes (B, 4) as float ``x0, y0, w, h`` in pixels, CPU.

    torchvision's ``RandomResizedCrop.get_params``, vectorised: ``tries`` candidates per sample,
    the first that fits is kept, else the central crop clipped to ``ratio``.
    """
    area = height * width
    target = area * torch.empty(batch, tries).uniform_(*scale)  # (B, tries)
    aspect = torch.exp(torch.empty(batch, tries).uniform_(math.log(ratio[0]), math.log(ratio[1])))
    w = torch.sqrt(target * aspect).round()
    h = torch.sqrt(target / aspect).round()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.int().argmax(dim=1, keepdim=True)  # index of the first fitting try
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]  # (B,)
    # Fallback for samples where no try fitted: the whole image, cut to the aspect range.
    in_ratio = width / height
    fw = width if in_ratio <= ratio[1] else round(height * ratio[1])
    fh = height if in_ratio >= ratio[0] else round(width / ratio[0])
    found = fits.any(dim=1)
    w = torch.where(found, w, float(fw))
    h = torch.where(found, h, float(fh))
    corner = torch.rand(batch, 2)
    x0 = torch.where(found, (corner[:, 0] * (width - w + 1)).floor(), float((width - fw) // 2))
    y0 = torch.where(found, (corner[:, 1] * (height - h + 1)).floor(), float((height - fh) // 2))
    return torch.stack([x0, y0, w, h], dim=1)


def _crop_and_flip(x: Tensor, boxes: Tensor, flip: Tensor, size: int, mode: str) -> Tensor:
    """Resample each box of ``x`` (B, 3, H, W) to (B, 3, size, size), mirrored where ``flip``."""
    batch, _, height, width = x.shape
    x0, y0, w, h = (v[:, None] for v in boxes.unbind(1))  # each (B, 1)
    # Output pixel i samples x0 + (i + 0.5) * w / size - 0.5 (a half-pixel resize of the crop),
    # written in grid_sample's [-1, 1] coordinates. Built by broadcasting: the box is axis
    # aligned, and F.affine_grid's general (B, size*size, 3) @ (B, 3, 2) costs more than the
    # sampling itself on CPU.
    unit = (torch.arange(size, dtype=torch.float32) + 0.5) / size  # (size,) in (0, 1)
    unit_x = torch.where(flip[:, None], 1 - unit, unit)  # (B, size), mirrored rows for flips
    grid_x = (2 * (x0 + unit_x * w) / width - 1).to(x.device)  # (B, size)
    grid_y = (2 * (y0 + unit * h) / height - 1).to(x.device)  # (B, size)
    grid = torch.stack(
        [
            grid_x[:, None, :].expand(batch, size, size),
            grid_y[:, :, None].expand(batch, size, size),
        ],
        dim=-1,
    )  # (B, size, size, 2)
    return F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=False)


def _jitter_matrices(factors: Tensor) -> Tensor:
    """Colour matrices (B, 4, 3, 3) for brightness, contrast (scale part), saturation, hue."""
    batch = factors.shape[0]
    eye = torch.eye(3).expand(batch, 3, 3)
    grey = torch.tensor(_LUMA).expand(3, 3)  # every output channel = luma
    bright, contrast, sat, hue = (factors[:, i, None, None] for i in range(4))
    angle = 2 * math.pi * hue
    cross = torch.tensor([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]])
    # Rodrigues rotation about the grey axis (1, 1, 1) / sqrt(3).
    rotate = angle.cos() * eye + (1 - angle.cos()) / 3 + angle.sin() / math.sqrt(3) * cross
    return torch.stack([bright * eye, contrast * eye, sat * eye + (1 - sat) * grey, rotate], dim=1)


def _sample_jitter(
    batch: int, strength: tuple[float, float, float, float], p: float
) -> tuple[Tensor, Tensor]:
    """torchvision's ColorJitter draws, per sample: factors (B, 4) and step order (B, 4).

    Samples skipped by ``p`` get neutral factors, so every sample runs the same code.
    """
    low = torch.tensor([max(0.0, 1 - s) for s in strength[:3]] + [-strength[3]])
    high = torch.tensor([1 + s for s in strength[:3]] + [strength[3]])
    factors = low + torch.rand(batch, 4) * (high - low)  # (B, 4)
    neutral = torch.tensor([1.0, 1.0, 1.0, 0.0])
    factors = torch.where((torch.rand(batch) < p)[:, None], factors, neutral)
    order = torch.rand(batch, 4).argsort(dim=1)  # a permutation of the four steps per sample
    return factors, order


def _colour_jitter(x: Tensor, factors: Tensor, order: Tensor) -> Tensor:
    """Brightness, contrast, saturation, hue on x (B, 3, H, W) in [0, 1], each sample in its order.

    ``factors`` (B, 4) as in torchvision (hue in turns), ``order`` (B, 4) step indices 0..3.
    """
    batch = x.shape[0]
    mats = _jitter_matrices(factors).to(x.device)  # (B, 4, 3, 3)
    contrast = factors[:, 1].to(x.device)
    order = order.to(x.device)
    luma = torch.tensor(_LUMA, device=x.device)
    rows = torch.arange(batch, device=x.device)
    flat = x.reshape(batch, 3, -1)  # (B, 3, H*W)
    for step in range(4):
        op = order[:, step]
        # Contrast blends with the mean grey level of the image as it is at this step.
        mean_grey = flat.mean(dim=2) @ luma  # (B,)
        shift = torch.where(op == 1, (1 - contrast) * mean_grey, 0.0)[:, None, None]  # (B, 1, 1)
        # Clamp after every step, as torchvision does, so saturated pixels stay saturated.
        # (bmm then in-place add: baddbmm would first copy the broadcast shift to full size.)
        flat = torch.bmm(mats[rows, op], flat).add_(shift).clamp_(0.0, 1.0)
    return flat.view_as(x)


def _gaussian_blur(x: Tensor, sigma: Tensor, kernel: int) -> Tensor:
    """Blur each image of x (b, 3, H, W) with its own sigma (b,), separable, reflect padding."""
    b, c, height, width = x.shape
    radius = kernel // 2
    offsets = torch.arange(kernel, dtype=torch.float32) - radius
    weights = torch.exp(-(offsets[None] ** 2) / (2 * sigma[:, None] ** 2))  # (b, kernel)
    weights = (weights / weights.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0).to(x.device)
    padded = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    # (b, c, H + 2r, W + 2r) -> (1, b*c, H + 2r, W + 2r): one conv group per image plane
    planes = padded.reshape(1, b * c, height + 2 * radius, width + 2 * radius)
    planes = F.conv2d(planes, weights[:, None, None, :], groups=b * c)  # along width
    planes = F.conv2d(planes, weights[:, None, :, None], groups=b * c)  # along height
    return planes.view(b, c, height, width)


def _to_unit(images: Tensor) -> Tensor:
    """uint8 (B, 3, H, W) -> float32 in [0, 1]; floating input is taken as already in [0, 1]."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise DatasetError(f"expected images shaped (B, 3, H, W), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float().mul_(1 / 255)
    if not images.is_floating_point():
        raise DatasetError(f"expected uint8 or float images, got {images.dtype}")
    return images.float()


def grey(images: Tensor) -> Tensor:
    """(B, 3, H, W) -> the same images in grey (luma in all three channels), same dtype."""
    luma = torch.tensor(_LUMA, device=images.device)[:, None, None]
    y = (images.float() * luma).sum(dim=1, keepdim=True).expand_as(images)
    return y.round().to(images.dtype) if images.dtype == torch.uint8 else y.to(images.dtype)


def normalize(images: Tensor) -> Tensor:
    """uint8 (B, 3, H, W) -> float32 normalised with the ImageNet mean and std; no augmentation."""
    x = _to_unit(images)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, device=x.device)[:, None, None]
    return (x - mean) / std


class Views(torch.nn.Module):
    """Turn a uint8 batch (B, 3, H, W) on any device into one float, normalised, augmented view
    (B, 3, size, size), with random parameters drawn per sample (not per batch).

    Call it twice for two views. Floating input is accepted and taken to be in [0, 1].
    `blur_p`, `solarize_p` and `jitter` (brightness, contrast, saturation, hue strengths) replace
    the recipe's values, for methods whose two views differ (BYOL, DINO).
    """

    def __init__(
        self,
        recipe: str,
        size: int,
        *,
        crop_scale: tuple[float, float] | None = None,
        blur_p: float | None = None,
        solarize_p: float | None = None,
        jitter: tuple[float, float, float, float] | None = None,
    ) -> None:
        super().__init__()
        self.recipe = recipe
        self.size = int(size)
        self.plan = _override(_plan(recipe, size, crop_scale), recipe, blur_p, solarize_p, jitter)

    def extra_repr(self) -> str:
        return f"recipe={self.recipe!r}, size={self.size}, crop_scale={self.plan.crop_scale}"

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        plan, size = self.plan, self.size
        x = _to_unit(images)
        batch, _, height, width = x.shape
        if plan.crop_scale is None:
            if (height, width) != (size, size):
                x = F.interpolate(
                    x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
                )
            return normalize(x)
        # Random parameters are drawn for the whole global batch and this rank's rows kept
        # (engine.distributed.draw_rows; all of them in one process), so a row's views are
        # the same whatever the number of processes.
        total, rows = draw_rows(batch)
        boxes = local_rows(sample_crop_boxes(total, height, width, plan.crop_scale), rows)
        flip = (
            local_rows(torch.rand(total) < 0.5, rows)
            if plan.flip
            else torch.zeros(batch, dtype=torch.bool)
        )
        x = _crop_and_flip(x, boxes, flip, size, plan.mode)
        if plan.vflip:
            flipped = torch.nonzero(local_rows(torch.rand(total) < 0.5, rows))[:, 0].to(x.device)
            x[flipped] = x[flipped].flip(2)
        if plan.rotate90:
            turns = local_rows(torch.randint(0, 4, (total,)), rows)
            for k in (1, 2, 3):
                chosen = torch.nonzero(turns == k)[:, 0].to(x.device)
                x[chosen] = torch.rot90(x[chosen], k, dims=(2, 3))
        if plan.jitter is not None:
            factors, order = _sample_jitter(total, plan.jitter, plan.jitter_p)
            x = _colour_jitter(x, local_rows(factors, rows), local_rows(order, rows))
        else:
            x = x.clamp_(0.0, 1.0)  # bicubic overshoots a little at edges
        # Grayscale and normalisation are one matrix per sample; blur is linear with weights
        # summing to one, so it commutes with them and runs last, on the chosen samples only.
        grey = local_rows(torch.rand(total) < plan.gray_p, rows)
        if plan.solarize_p > 0:
            return self._grey_blur_solarize(x, grey, total, rows)
        std = torch.tensor(IMAGENET_STD)
        colour = torch.where(grey[:, None, None], torch.tensor(_LUMA).expand(3, 3), torch.eye(3))
        colour = (colour / std[:, None]).to(x.device)  # (B, 3, 3): grey-or-identity, then / std
        shift = (-torch.tensor(IMAGENET_MEAN) / std).to(x.device)[None, :, None]  # (1, 3, 1)
        x = torch.bmm(colour, x.reshape(batch, 3, -1)).add_(shift).view(batch, 3, size, size)
        if plan.blur_p > 0:
            x = self._blur(x, total, rows)
        return x

    def _blur(self, x: Tensor, total: int, rows: Tensor | None) -> Tensor:
        """Blur the samples drawn (p blur_p), each with its own sigma, both drawn for the
        `total` rows of the global batch; `rows` are this rank's."""
        chosen = torch.nonzero(torch.rand(total) < self.plan.blur_p)[:, 0]
        sigma = torch.empty(len(chosen)).uniform_(0.1, 2.0)
        if rows is not None:
            mask = torch.zeros(total, dtype=torch.bool)
            mask[chosen] = True
            every = torch.zeros(total)
            every[chosen] = sigma
            chosen = torch.nonzero(mask[rows])[:, 0]
            sigma = every[rows][chosen]
        if len(chosen):
            chosen = chosen.to(x.device)
            x[chosen] = _gaussian_blur(x[chosen], sigma, self.plan.blur_kernel)
        return x

    def _grey_blur_solarize(
        self, x: Tensor, grey: Tensor, total: int, rows: Tensor | None
    ) -> Tensor:
        """Grayscale, blur, solarise, normalise, in that order (BYOL, DINO): solarisation is not
        linear, so unlike the fused path above it must see the blurred [0, 1] pixels."""
        plan, (batch, _, height, width) = self.plan, x.shape
        colour = torch.where(grey[:, None, None], torch.tensor(_LUMA).expand(3, 3), torch.eye(3))
        x = torch.bmm(colour.to(x.device), x.reshape(batch, 3, -1)).view(batch, 3, height, width)
        if plan.blur_p > 0:
            x = self._blur(x, total, rows)
        # PIL's ImageOps.solarize(threshold=128): values at or above the threshold are inverted.
        solar = local_rows(torch.rand(total) < plan.solarize_p, rows).to(x.device)
        x = torch.where(solar[:, None, None, None] & (x >= 128 / 255), 1.0 - x, x)
        return normalize(x)


def make_views(recipe: str, size: int, **kwargs: Any) -> Views:
    """The ``Views`` of a named recipe (see ``RECIPES``) at ``size`` px; kwargs go to ``Views``."""
    return Views(recipe, size, **kwargs)


def view_pair(
    augmentation: str,
    size: int,
    *,
    asymmetric: bool = False,
    crop_scale: tuple[float, float] | None = None,
) -> tuple[Views, Views]:
    """The two view makers of a two-view method under a domain preset (see ``DOMAINS``);
    ``crop_scale`` replaces the preset's random-resized-crop range in both.

    With ``asymmetric`` and the natural domain: BYOL's pair (Grill et al. 2020, table 6; also
    Barlow Twins' and VICReg's): colour jitter 0.4/0.4/0.2/0.1 with p 0.8 and grayscale 0.2 in
    both, blur always in the first and with p 0.1 in the second, solarisation only in the second
    (p 0.2). The medical and satellite presets neither blur nor solarise, so their two view
    makers are the same.
    """
    augmentation = "natural" if augmentation == AUTO else augmentation
    if augmentation not in DOMAINS:
        raise SpecError(
            f"unknown augmentation preset {augmentation!r}; choose one of {', '.join(DOMAINS)}"
        )
    if asymmetric and augmentation == "natural":
        shared = dict(crop_scale=crop_scale, jitter=BYOL_JITTER)
        return (
            Views("natural", size, blur_p=1.0, solarize_p=0.0, **shared),
            Views("natural", size, blur_p=0.1, solarize_p=0.2, **shared),
        )
    views = Views(augmentation, size, crop_scale=crop_scale)
    return views, views
