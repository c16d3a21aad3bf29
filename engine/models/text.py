"""Sizes of the small text transformers (and CLIP's towers), built from transformers configs.

The names follow the BERT miniatures of Turc et al. 2019 (arXiv:1908.08962): on two CPU cores
`tiny` and `mini` train in minutes, `small` in tens of minutes, `base` is the papers' size.
"""

from __future__ import annotations

from engine.errors import SpecError

# name -> (hidden size, layers, attention heads)
TEXT_SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (128, 2, 2),
    "mini": (256, 4, 4),
    "small": (512, 4, 8),
    "base": (768, 12, 12),
}


def text_dims(name: str, depth: int = 0) -> tuple[int, int, int]:
    """(hidden, layers, heads) of a size; `depth` > 0 overrides the number of layers."""
    if name not in TEXT_SIZES:
        raise SpecError(f"unknown text model size {name!r}; choose one of {sorted(TEXT_SIZES)}")
    hidden, layers, heads = TEXT_SIZES[name]
    return hidden, depth or layers, heads
