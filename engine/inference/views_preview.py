"""The views lens: what a method trains on, made by the method's own code.

A method is built from its config (the quick preset unless asked otherwise) and asked for its
`preview_views` (see `SSLMethod.preview_views`): SimCLR's two augmented views, MAE's crop and
masked input, and whatever each other method's file shows (multi-crop, tiles, rotations, ...).
Methods are built on torch's meta device first: their networks get no memory and no
initialisation (a Barlow Twins projector alone is 67M parameters), and the view makers, which
hold no weights, work as in training. A method whose constructor or preview needs real tensors
is built again on the CPU. Built methods are kept, least recently used out first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from engine import checks
from engine.inference import render
from engine.inference.models import LensError

MAX_IMAGES = 8
DISPLAY = 128  # a view's side in the grid, about
_KEEP = 8
_methods: OrderedDict[tuple[str, str], Any] = OrderedDict()
_methods_lock = threading.Lock()


def image_methods() -> list[str]:
    """The registered methods that train on images (those the lens can show)."""
    from engine.registry import get_method, list_methods

    return [name for name in list_methods() if get_method(name).modality == "image"]


def build_method(
    method: str, preset: str = "quick", real: bool = False, dataset: str | None = None
) -> Any:
    """A method built from `preset` (cached), in eval mode, on the meta device unless `real`
    (or unless its constructor needs real tensors); LensError when it trains on text. Its
    config is a job's on `dataset` (default: the method's own): an `augmentation` of "auto"
    becomes that dataset's suggestion."""
    import torch

    from engine.config import TrainSpec
    from engine.registry import get_method
    from engine.runs import resolve

    cls = get_method(method)
    if cls.modality != "image":
        raise LensError(
            f"{method} trains on {cls.modality}, not on image views; the views "
            f"lens shows {', '.join(image_methods())}"
        )
    config = resolve(TrainSpec(method, dataset or cls.default_dataset, preset))[1]
    key = (method, preset, getattr(config, "augmentation", None))
    with _methods_lock:
        cached = _methods.get(key)
        if cached is not None and (not real or not _on_meta(cached)):
            _methods.move_to_end(key)
            return cached
    info = {"num_classes": 10, "image_size": config.image_size}
    instance = None
    if not real:
        try:
            with torch.device("meta"):
                instance = cls(config, info)
        except Exception:  # noqa: BLE001 - some constructors compute on tensors: build for real
            instance = None
    if instance is None:
        instance = cls(config, info)
    instance.eval()
    with _methods_lock:
        _methods[key] = instance
        _methods.move_to_end(key)
        while len(_methods) > _KEEP:
            _methods.popitem(last=False)
    return instance


def _on_meta(instance: Any) -> bool:
    return any(t.is_meta for t in [*instance.parameters(), *instance.buffers()])


def _seeded_views(instance: Any, images: Any, seed: int) -> list[tuple[str, Any]]:
    import torch

    with torch.random.fork_rng(devices=[]):  # the views' draws; the process's RNG untouched
        torch.manual_seed(seed)
        return instance.preview_views(images)


def _views_of(
    method: str, preset: str, images: Any, seed: int, dataset: str | None = None
) -> list[tuple[str, Any]]:
    """The method's `preview_views(images)` under `seed`, retried on a real build when the
    meta-built one cannot make them (a hook that needs weights or buffers)."""
    instance = build_method(method, preset, dataset=dataset)
    try:
        views = _seeded_views(instance, images, seed)
        if not any(getattr(batch, "is_meta", False) for _, batch in views):
            return views
    except NotImplementedError as error:
        if "preview_views" in str(error):  # the hook's own "does not show its views yet"
            raise LensError(str(error)) from None
        if not _on_meta(instance):
            raise
    except Exception:
        if not _on_meta(instance):
            raise
    try:
        return _seeded_views(build_method(method, preset, real=True, dataset=dataset), images, seed)
    except NotImplementedError as error:
        raise LensError(str(error)) from None


def _picture(batch: Any, index: int) -> np.ndarray:
    """uint8 (B, 3, h, w) tensor -> its image `index` as (h, w, 3), upscaled for display."""
    image = batch[index].permute(1, 2, 0).contiguous().numpy()
    return render.upscale(image, render.display_factor(image.shape[0], DISPLAY))


def preview_views(
    method: str,
    dataset: str,
    seed: int = 0,
    num_images: int = 4,
    preset: str = "quick",
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """`num_images` images of `dataset` (drawn by `seed`) and the views `method` makes of them.

    Returns {"items": [(uint8 (h, w, 3), caption), ...] row by row: each image, then each of
    its views, "columns": pictures per row, "captions": the view kinds, "sizes": their sides in
    pixels, "image_size", "method", "dataset", "preset"}.
    """
    import torch

    from engine.data.datasets import load_dataset

    num_images = checks.whole_number(num_images, "number of images", error=LensError)
    seed = checks.whole_number(seed, "seed", 0, checks.MAX_SEED, LensError)
    if not 1 <= num_images <= MAX_IMAGES:
        raise LensError(f"show from 1 to {MAX_IMAGES} images, not {num_images}")
    size = int(build_method(method, preset, dataset=dataset).config.image_size)
    data = load_dataset(dataset, "train", size, cache_dir=cache_dir)
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randperm(len(data.images), generator=generator)[:num_images]
    images = data.images[rows]  # (n, 3, S, S) uint8
    views = _views_of(method, preset, images, seed, dataset)
    for caption, batch in views:
        if batch.dtype != torch.uint8 or batch.ndim != 4 or len(batch) != len(images):
            raise LensError(
                f"{method}.preview_views gave {caption!r} as {batch.dtype} "
                f"{tuple(batch.shape)}; expected uint8 ({len(images)}, 3, h, w)"
            )
    items: list[tuple[np.ndarray, str]] = []
    for i in range(len(images)):
        items.append((_picture(images, i), f"image {i + 1}, {size} px"))
        for caption, batch in views:
            side = batch.shape[-1]
            label = caption if side == size else f"{caption}, {side} px"
            items.append((_picture(batch, i), label))
    return {
        "items": items,
        "columns": 1 + len(views),
        "captions": [c for c, _ in views],
        "sizes": [int(b.shape[-1]) for _, b in views],
        "image_size": size,
        "method": method,
        "dataset": dataset,
        "preset": preset,
    }
