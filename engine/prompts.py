"""Zero-shot classifiers from words: each label's prompts embedded, ensembled, optionally
made blind to an attribute. Shared by CLIP's own zero-shot check during training
(`engine.methods.clip`) and the Zero-shot lens (`engine.inference.zero_shot`).

Radford et al. 2021 (CLIP, arXiv:2103.00020), section 3.1.4: each candidate label is put into
one or more prompt templates ("a photo of a {}."), the prompts are embedded by the text tower,
and a label's classifier is the mean of its prompts' normalised embeddings, normalised again
(prompt ensembling).

Words to ignore take an attribute out of the decision: the label classifiers are projected off
the directions along which the prompts "a {word} {label}" differ, after Chuang et al. 2023
("Debiasing Vision-Language Models via Biased Prompts", arXiv:2302.00070, their orthogonal
projection).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def attribute_prompts(
    labels: Sequence[str], templates: Sequence[str], words: Sequence[str]
) -> list[str]:
    """The prompts that give each ignored word's direction: every template with every label
    and the word before it ("a {}" -> "a red star"), word-major then label then template."""
    return [t.format(f"{word} {label}") for word in words for label in labels for t in templates]


def project_out(classes: Tensor, attributes: Tensor) -> Tensor:
    """(C, D) unit label classifiers -> the same with the span of the differences between
    the (A, D) attribute embeddings removed, normalised again (Chuang et al. 2023)."""
    centred = (attributes - attributes.mean(dim=0, keepdim=True)).T.double()  # (D, A)
    basis, strength, _ = torch.linalg.svd(centred, full_matrices=False)
    # Centring leaves A - 1 directions; what float32 rounding adds beyond them is noise.
    basis = basis[:, strength > 1e-4 * strength.max().clamp_min(1e-12)].to(classes.dtype)
    return torch.nn.functional.normalize(classes - (classes @ basis) @ basis.T, dim=-1)


def label_classifiers(
    embed: Callable[[list[str]], Tensor],
    labels: Sequence[str],
    templates: Sequence[str],
    ignore: Sequence[str] = (),
) -> Tensor:
    """(C, D): each label's prompts embedded by `embed` (texts -> (N, D) unit embeddings) and
    averaged over the templates, normalised again (the paper's ensemble); with `ignore`,
    projected off those words' directions. Shared by the lens and a CLIP run's own check."""

    def ensemble(prompts: list[str], groups: int) -> Tensor:  # group-major prompts -> (groups, D)
        per_prompt = embed(prompts)  # (groups * n, D)
        mean = per_prompt.view(groups, -1, per_prompt.shape[-1]).mean(dim=1)
        return torch.nn.functional.normalize(mean, dim=-1)

    classes = ensemble([t.format(label) for label in labels for t in templates], len(labels))
    if not ignore:
        return classes
    return project_out(classes, ensemble(attribute_prompts(labels, templates, ignore), len(ignore)))
