"""The views lens: what a method trains on, made by the method's own code.

A method is built from its config (the quick preset unless asked otherwise) and asked for its
`preview_views` (see `SSLMethod.preview_views`): SimCLR's two augmented views, MAE's crop and
masked input, and whatever each other method's file shows (multi-crop, tiles, rotations, ...).
Built methods are kept (a few, least recently used first out): building one costs its
networks' initialisation, a preview only its views.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from engine.inference import render
from engine.inference.models import LensError

MAX_IMAGES = 8
DISPLAY = 128  # a view's side in the grid, about
_KEEP = 4
_methods: OrderedDict[tuple[str, str], Any] = OrderedDict()
_methods_lock = threading.Lock()


def image_methods() -> list[str]:
    """The registered methods that train on images (those the lens can show)."""
    from engine.registry import get_method, list_methods

    return [name for name in list_methods() if get_method(name).modality == "image"]


def build_method(method: str, preset: str = "quick") -> Any:
    """A method built from `preset` (cached), in eval mode; LensError when it trains on text."""
    from engine.config import build_config
    from engine.registry import get_method

    cls = get_method(method)
    if cls.modality != "image":
        raise LensError(f"{method} trains on {cls.modality}, not on image views; the views "
                        f"lens shows {', '.join(image_methods())}")
    key = (method, preset)
    with _methods_lock:
        if key in _methods:
            _methods.move_to_end(key)
            return _methods[key]
    config = build_config(cls.Config, preset, {})
    instance = cls(config, {"num_classes": 10, "image_size": config.image_size}).eval()
    with _methods_lock:
        _methods[key] = instance
        while len(_methods) > _KEEP:
            _methods.popitem(last=False)
    return instance


def _picture(batch: Any, index: int) -> np.ndarray:
    """uint8 (B, 3, h, w) tensor -> its image `index` as (h, w, 3), upscaled for display."""
    image = batch[index].permute(1, 2, 0).contiguous().numpy()
    return render.upscale(image, render.display_factor(image.shape[0], DISPLAY))


def preview_views(method: str, dataset: str, seed: int = 0, num_images: int = 4,
                  preset: str = "quick", cache_dir: Path | None = None) -> dict[str, Any]:
    """`num_images` images of `dataset` (drawn by `seed`) and the views `method` makes of them.

    Returns {"items": [(uint8 (h, w, 3), caption), ...] row by row: each image, then each of
    its views, "columns": pictures per row, "captions": the view kinds, "sizes": their sides in
    pixels, "image_size", "method", "dataset", "preset"}.
    """
    import torch

    from engine.data.datasets import load_dataset

    try:
        num_images, seed = int(num_images), int(seed)
    except (TypeError, ValueError):
        raise LensError("number of images and seed must be whole numbers") from None
    if not 1 <= num_images <= MAX_IMAGES:
        raise LensError(f"show from 1 to {MAX_IMAGES} images, not {num_images}")
    instance = build_method(method, preset)
    size = int(instance.config.image_size)
    data = load_dataset(dataset, "train", size, cache_dir=cache_dir)
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randperm(len(data.images), generator=generator)[:num_images]
    images = data.images[rows]  # (n, 3, S, S) uint8
    with torch.random.fork_rng(devices=[]):  # the views' draws; the process's RNG untouched
        torch.manual_seed(seed)
        try:
            views = instance.preview_views(images)
        except NotImplementedError as error:
            raise LensError(str(error)) from None
    for caption, batch in views:
        if batch.dtype != torch.uint8 or batch.ndim != 4 or len(batch) != len(images):
            raise LensError(f"{method}.preview_views gave {caption!r} as {batch.dtype} "
                            f"{tuple(batch.shape)}; expected uint8 ({len(images)}, 3, h, w)")
    items: list[tuple[np.ndarray, str]] = []
    for i in range(len(images)):
        items.append((_picture(images, i), f"image {i + 1} ({size} px)"))
        for caption, batch in views:
            items.append((_picture(batch, i), f"{caption} ({batch.shape[-1]} px)"))
    return {"items": items, "columns": 1 + len(views), "captions": [c for c, _ in views],
            "sizes": [int(b.shape[-1]) for _, b in views], "image_size": size,
            "method": method, "dataset": dataset, "preset": preset}
