"""ViT sizes shared by the transformer image methods (built from transformers configs)."""

from __future__ import annotations

from engine.errors import SpecError

# name -> (hidden size, layers, attention heads), as in the ViT and DeiT papers.
VIT_SIZES: dict[str, tuple[int, int, int]] = {
    "vit-tiny": (192, 12, 3),
    "vit-small": (384, 12, 6),
    "vit-base": (768, 12, 12),
}


def vit_dims(name: str, depth: int = 0) -> dict[str, int]:
    """Keyword arguments for a transformers ViT-family config; `depth` > 0 overrides layers."""
    if name not in VIT_SIZES:
        raise SpecError(f"unknown ViT size {name!r}; choose one of {sorted(VIT_SIZES)}")
    hidden, layers, heads = VIT_SIZES[name]
    return {
        "hidden_size": hidden,
        "num_hidden_layers": depth or layers,
        "num_attention_heads": heads,
        "intermediate_size": 4 * hidden,
    }
