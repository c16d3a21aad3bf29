"""The `segmentation` protocol: does a ViT's [CLS] attention outline the object?

Caron et al. 2021 (DINO, arXiv:2104.14294), section 4.2.1, table 7 and `visualize_attention.py`:
for each test image, the last layer's attention of the [CLS] query over the patch tokens, one
map per head; the mask keeping the fewest highest patches that carry 60% of that head's mass;
upsampled to the image (nearest, a patch per patch); the Jaccard similarity (intersection over
union) with the ground-truth object mask. Per head, the mean over the images; reported: the
best head's mean and the mean over heads, and the mask of the heads' mean map (what the
Attention lens draws).

Any transformers ViT with a [CLS] token works (`engine.inference.attention.vision_attentions`):
a DINO run's teacher, an MAE run's encoder (every patch kept, in order), a CLIP run's vision
tower, or a Hub ViT/DINO/DINOv2 model; tokens between [CLS] and the patches (DINOv2's
registers, DeiT's distillation token) are skipped.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from engine.errors import SpecError
from engine.evaluation.attention_masks import KEEP, jaccard, keep_masks, upsample_masks

Progress = Callable[[float, str], None]


def segmentation_scores(attention: Tensor, truth: Tensor, keep: float = KEEP) -> dict[str, Any]:
    """Scores of [CLS] attention maps (N, heads, g, g) against object masks (N, S, S).

    Returns {"jaccard_best_head", "best_head" (1-based), "jaccard_mean_heads", "jaccard_mean_map"
    (the mask of the heads' mean map), "jaccard_heads" (per head, mean over images), "keep",
    "num_images"}.
    """
    if attention.ndim != 4 or truth.ndim != 3 or attention.shape[0] != truth.shape[0]:
        raise ValueError(
            f"expected (N, heads, g, g) attention and (N, S, S) masks, got "
            f"{tuple(attention.shape)} and {tuple(truth.shape)}"
        )
    size = truth.shape[-1]
    truth = truth.bool()
    per_head = jaccard(upsample_masks(keep_masks(attention, keep), size), truth[:, None])  # (N, h)
    heads = per_head.mean(dim=0)  # (heads,)
    mean_map = keep_masks(attention.float().mean(dim=1), keep)  # (N, g, g)
    best = int(heads.argmax())
    return {
        "jaccard_best_head": float(heads[best]),
        "best_head": best + 1,
        "jaccard_mean_heads": float(heads.mean()),
        "jaccard_mean_map": float(jaccard(upsample_masks(mean_map, size), truth).mean()),
        "jaccard_heads": [round(float(j), 4) for j in heads],
        "keep": float(keep),
        "num_images": int(truth.shape[0]),
    }


def cls_attention(lm: Any, pixels: Tensor) -> Tensor:
    """Normalised pixels (B, 3, S, S) -> the last layer's [CLS]-to-patch attention
    (B, heads, g, g), for a LensModel-like `lm` (model, model_type, image_size, patch_size)."""
    from engine.inference.attention import vision_attentions

    rows = vision_attentions(lm, pixels)[-1][:, :, 0, :].float()  # (B, heads, T)
    grid = lm.image_size // lm.patch_size
    prefix = rows.shape[-1] - grid * grid  # [CLS] and any register/distillation tokens
    if prefix < 1:
        raise SpecError(
            f"{lm.label}: {rows.shape[-1]} tokens do not fit a {grid}x{grid} patch grid with "
            "a [CLS] token; segmentation needs a ViT with a [CLS] token"
        )
    return rows[:, :, prefix:].reshape(rows.shape[0], rows.shape[1], grid, grid)


@torch.no_grad()
def evaluate_segmentation(
    lm: Any,
    images: Tensor,
    masks: Tensor,
    keep: float = KEEP,
    batch_size: int = 64,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """The protocol on uint8 images (N, 3, S, S) and their object masks (N, S, S), S the
    model's image size, normalised with the model's statistics (`lm.image_stats`)."""
    mean, std = lm.image_stats
    mean_t = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    std_t = torch.tensor(std, dtype=torch.float32)[:, None, None]
    maps = []
    with lm.lock:
        for start in range(0, images.shape[0], batch_size):
            chunk = images[start : start + batch_size].float() / 255.0
            maps.append(cls_attention(lm, (chunk - mean_t) / std_t))
            if on_progress is not None:
                on_progress(min(1.0, (start + batch_size) / images.shape[0]), "attention maps")
    return segmentation_scores(torch.cat(maps), masks, keep)


def vision_model(method: Any, label: str) -> Any:
    """A trained (or freshly built) method's exported transformers ViT as a LensModel, the way
    the Attention lens opens a run: `method.export` writes it, `engine.hub.load` reads it."""
    from engine import hub
    from engine.inference.attention import ATTENTION
    from engine.inference.models import LensModel, folder_model_type

    with tempfile.TemporaryDirectory(prefix="pretext-seg-") as tmp:
        method.export(Path(tmp))
        folder = Path(tmp) / "pretrained"
        model_type = folder_model_type(folder) if (folder / "config.json").exists() else None
        if model_type not in ATTENTION.model_types:
            raise SpecError(
                f"segmentation reads a ViT's [CLS] attention, and {label} has no ViT "
                f"({model_type or 'no transformers model'}); evaluate a DINO run with a ViT "
                "backbone, an MAE run or a CLIP run"
            )
        model, processor = hub.load(str(folder))
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")  # attention weights need the eager path
    return LensModel(
        model=model,
        processor=processor,
        model_type=model_type,
        source=label,
        label=label,
        folder=None,
        weight_names=None,
        nbytes=0,
    )
