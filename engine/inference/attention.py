"""The attention lens: where a ViT's [CLS] token looks, head by head.

Caron et al. 2021 (DINO, arXiv:2104.14294), figure 1 and `visualize_attention.py`: the
attention of the [CLS] query over the patch keys in the last layer, one map per head, and a
mask keeping the patches that carry a chosen share of the attention mass. Any ViT works: a DINO
run's teacher, an MAE run's encoder (all patches, in order), a CLIP run's vision tower, or a Hub
checkpoint such as facebook/dino-vits16. Attention weights need `attn_implementation="eager"`
(the model cache sets it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine import checks
from engine.inference import render
from engine.inference.images import center_square, model_input
from engine.inference.models import Lens, LensError, LensModel

ATTENTION = Lens(
    "attention",
    "attention",
    model_types=("vit", "vit_mae", "clip", "dinov2", "dinov2_with_registers", "deit", "beit"),
    wants="a ViT: a DINO run with a ViT backbone, an MAE run (its encoder), a CLIP run (its "
    "vision tower), or a Hub id such as facebook/dino-vits16",
    suggestions=("facebook/dino-vits16",),
)


def num_layers(lm: LensModel) -> int:
    return int(lm.vision_config.num_hidden_layers)


def layer_index(lm: LensModel, layer: int | float | None) -> int:
    """0-based index of `layer`: 1..N counts from the input, 0 (or None) and -1 are the last."""
    count = num_layers(lm)
    chosen = count if layer is None else checks.whole_number(layer, "layer", error=LensError)
    if chosen == 0:
        chosen = count
    if chosen < 0:
        chosen = count + 1 + chosen
    if not 1 <= chosen <= count:
        raise LensError(
            f"layer {int(layer)}: {lm.label} has {count} layers (1 to {count}; 0 is the last)"
        )
    return chosen - 1


def vision_attentions(lm: LensModel, pixels: Any) -> tuple[Any, ...]:
    """Normalised pixels (B, 3, S, S) -> every layer's attention weights (B, heads, T, T).

    Call with `lm.lock` held (attention_maps does): an MAE encoder's mask ratio is set to 0 on its shared config for
    the call (ViTMAE reads it on every forward), with sorted noise so no patch is shuffled.
    """
    import torch

    model = lm.model
    if lm.model_type == "vit_mae":
        encoder = getattr(model, "vit", model)
        num_patches = (lm.image_size // lm.patch_size) ** 2
        # (B, L), sorted: every patch kept, in order
        noise = torch.arange(num_patches, dtype=torch.float32).expand(pixels.shape[0], -1)
        config = encoder.config
        saved, config.mask_ratio = config.mask_ratio, 0.0
        try:
            out = encoder(pixel_values=pixels, noise=noise, output_attentions=True)
        finally:
            config.mask_ratio = saved
    elif lm.model_type == "clip":
        out = model.vision_model(pixel_values=pixels, output_attentions=True)
    else:
        out = model(pixel_values=pixels, output_attentions=True)
    if not out.attentions or out.attentions[0] is None:
        raise LensError(f"{lm.label} returned no attention weights (it needs eager attention)")
    return out.attentions


def keep_share_mask(values: np.ndarray, keep: float) -> np.ndarray:
    """The fewest highest cells of `values` (h, w) whose sum is at least `keep` of the total
    (DINO's visualize_attention threshold) as an (h, w) bool mask."""
    flat = values.reshape(-1).astype(np.float64)
    order = np.argsort(-flat, kind="stable")
    total = flat.sum()
    shares = np.cumsum(flat[order]) / (total if total > 0 else 1.0)
    count = min(len(flat), int(np.searchsorted(shares, keep - 1e-12)) + 1)
    mask = np.zeros(len(flat), dtype=bool)
    mask[order[:count]] = True
    return mask.reshape(values.shape)


SCALES = ("map", "shared")  # each map stretched to its own range, or one scale for all


def attention_maps(
    lm: LensModel,
    image: np.ndarray,
    layer: int | None = None,
    keep: float = 0.6,
    scale: str = "map",
) -> dict[str, Any]:
    """[CLS] attention of every head of one layer over the patches of `image` (H, W, 3 uint8).

    Returns {"heads": [uint8 overlay per head], "mean": uint8 overlay of the heads' mean,
    "mask": the image kept where the mean carries `keep` of the mass, "image": the square crop
    the maps are drawn on, "attention": float32 (heads, g, g) [CLS]-to-patch weights, "prefix":
    float32 (heads,) weight on [CLS] itself and any other non-patch token (each head's row sums
    to one with the patches), "keep_mask": bool (g, g), "kept_share", "share_range": the
    smallest and largest patch's share of the mean map (1 / g**2 each when uniform), "layer"
    (1-based), "num_layers", "num_heads", "grid", "model", "jaccard": when `image` is a builtin
    example with an object mask (`engine.inference.truth`), the Jaccard of the drawn mask with
    it, and "jaccard_heads": each head's own 60%-style mask's (the `segmentation` protocol's
    per-image scores; both None for any other picture), "scale"}. With `scale` "map" the
    overlays stretch each map from its minimum to its maximum, as DINO's figures do
    (`share_range` says how peaked it really is); with "shared" every map is drawn on one
    scale, each patch's share against uniform (uniform: the middle colour), so a flat head
    looks flat.
    """
    import torch

    if not 0.0 < checks.number(keep, "keep", error=LensError) <= 1.0:
        raise LensError(f"keep must be a share of the attention mass in (0, 1], got {keep}")
    if scale not in SCALES:
        raise LensError(
            f"scale must be one of {', '.join(SCALES)} (each map's own range, or one shared "
            f"scale where uniform attention is the middle colour), got {checks.shown(scale)}"
        )
    shared = scale == "shared"
    index = layer_index(lm, layer)
    crop = center_square(image)
    _, pixels = model_input(crop, lm.image_size, *lm.image_stats)
    with lm.lock, torch.inference_mode():
        attentions = vision_attentions(lm, pixels)
    rows = attentions[index][0, :, 0, :].float()  # (heads, T): the [CLS] query's weights
    grid = lm.image_size // lm.patch_size
    prefix = rows.shape[1] - grid * grid  # [CLS] (+ distillation or register tokens)
    if prefix < 1:
        raise LensError(
            f"{lm.label}: {rows.shape[1]} tokens do not fit a {grid}x{grid} patch "
            "grid with a [CLS] token"
        )
    maps = rows[:, prefix:].reshape(-1, grid, grid).numpy()  # (heads, g, g)
    mean = maps.mean(axis=0)
    total = max(float(mean.sum()), 1e-12)
    keep_mask = keep_share_mask(mean, float(keep))
    shown = render.to_display(crop, grid)
    scores = _jaccard_with_truth(image, maps, keep_mask, float(keep), lm.image_size)
    return {
        "heads": [render.overlay(shown, head, shared=shared) for head in maps],
        "mean": render.overlay(shown, mean, shared=shared),
        "mask": render.keep_mask_picture(shown, keep_mask),
        "image": shown,
        "attention": maps.astype(np.float32),
        "prefix": rows[:, :prefix].sum(dim=1).numpy().astype(np.float32),
        "keep_mask": keep_mask,
        "kept_share": float(mean[keep_mask].sum() / max(mean.sum(), 1e-12)),
        "share_range": (float(mean.min() / total), float(mean.max() / total)),
        "layer": index + 1,
        "num_layers": num_layers(lm),
        "num_heads": int(maps.shape[0]),
        "grid": grid,
        "model": lm.label,
        "scale": scale,
        **scores,
    }


def _jaccard_with_truth(
    image: np.ndarray, maps: np.ndarray, keep_mask: np.ndarray, keep: float, size: int
) -> dict[str, Any]:
    """{"jaccard", "jaccard_heads"} of the mean map's and each head's keep mask against the
    object mask of a builtin example picture, at the model's input size; None otherwise."""
    import torch

    from engine.data.datasets import resize_masks
    from engine.evaluation.attention_masks import jaccard, keep_masks, upsample_masks
    from engine.inference.truth import known_mask

    truth = known_mask(image)
    if truth is None:
        return {"jaccard": None, "jaccard_heads": None}
    square = torch.from_numpy(center_square(truth).astype(np.uint8))[None]  # (1, s, s)
    truth_t = resize_masks(square, size)[0].bool()  # (S, S), as the image was resized
    heads = upsample_masks(keep_masks(torch.from_numpy(maps), keep), size)  # (heads, S, S)
    mean = upsample_masks(torch.from_numpy(keep_mask), size)
    return {
        "jaccard": round(float(jaccard(mean, truth_t)), 4),
        "jaccard_heads": [round(float(j), 4) for j in jaccard(heads, truth_t[None])],
    }
