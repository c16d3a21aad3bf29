"""The lenses' input images: any upload, PIL image, array or tensor -> uint8 RGB, checked
against a pixel limit before decoding; the centred square the panels show; the model's input.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from engine.inference.models import LensError

MAX_PIXELS = int(os.environ.get("PRETEXT_LENS_MAX_PIXELS", 40_000_000))


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise LensError(
            f"the image is {width}x{height} ({width * height / 1e6:.1f} megapixels); "
            f"the lenses take at most {max_pixels / 1e6:.0f} megapixels: "
            "downscale it first"
        )
    if min(width, height) < 1:
        raise LensError(f"the image is empty ({width}x{height})")


def load_image(source: Any, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An image file path, PIL image or array -> (H, W, 3) uint8 RGB.

    The pixel limit is checked from the file header, before any pixel is decoded; a file that
    is not an image gets a message naming it, not a decoder's stack trace.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if source is None:
        raise LensError("no image: upload one or pick an example")
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, max_pixels)
    if isinstance(source, Image.Image):
        _check_pixels(*source.size, max_pixels)
        return np.asarray(source.convert("RGB"))
    if hasattr(source, "detach"):  # a torch tensor (3, H, W) or (H, W, 3)
        array = source.detach().cpu().numpy()
        if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (3, 4):
            array = array.transpose(1, 2, 0)
        return _array_to_rgb(array, max_pixels)
    path = Path(getattr(source, "path", None) or getattr(source, "name", None) or source)
    if not path.is_file():
        raise LensError(f"no image file at {path}")
    try:
        with Image.open(path) as image:
            _check_pixels(*image.size, max_pixels)
            image.draft("RGB", (2048, 2048))  # JPEG: decode at a reduced scale when huge
            image = ImageOps.exif_transpose(image)
            return np.asarray(image.convert("RGB"))
    except UnidentifiedImageError:
        raise LensError(
            f"{path.name} is not an image file (PNG, JPEG, WebP, GIF, BMP or "
            "TIFF); upload a picture"
        ) from None
    except Image.DecompressionBombError:
        raise LensError(f"{path.name} is too large to decode safely; downscale it first") from None
    except OSError as error:
        raise LensError(f"{path.name} could not be read as an image: {error}") from None


def _array_to_rgb(array: np.ndarray, max_pixels: int) -> np.ndarray:
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise LensError(f"expected an image array shaped (H, W, 3), got {array.shape}")
    _check_pixels(array.shape[1], array.shape[0], max_pixels)
    if array.dtype != np.uint8:
        array = np.asarray(array, dtype=np.float64)
        if array.size and array.max() <= 1.0:
            array = array * 255.0
        array = np.clip(np.round(array), 0, 255).astype(np.uint8)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])


def center_square(image: np.ndarray) -> np.ndarray:
    """The largest centred square of an (H, W, C) image (what the model and the panels show)."""
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[top : top + side, left : left + side]


def model_input(
    image: np.ndarray, size: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[Any, Any]:
    """A square uint8 (S0, S0, 3) image -> (uint8 (1, 3, size, size), normalised float pixels),
    resized as the datasets are (antialiased bilinear), so a run sees what it trained on."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None].float()
    if x.shape[-1] != size:
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    uint8 = x.round().clamp(0, 255).to(torch.uint8)  # (1, 3, S, S)
    mean_t = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    std_t = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return uint8, (uint8.float() / 255.0 - mean_t) / std_t
