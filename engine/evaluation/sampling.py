"""Label subsets drawn per class: validation splits, scarce-label fractions, few-shot draws.

All draws come from an explicit `torch.Generator`, so the same seed gives the same indices on
every machine, whatever else has used the global RNG.
"""

from __future__ import annotations

import torch
from torch import Tensor

from engine.errors import SpecError


def _class_indices(labels: Tensor) -> list[Tensor]:
    return [torch.nonzero(labels == c)[:, 0] for c in torch.unique(labels).tolist()]


def stratified_fraction(
    labels: Tensor, fraction: float, generator: torch.Generator, min_per_class: int = 1
) -> Tensor:
    """Indices of about `fraction` of each class (rounded, at least `min_per_class`, at most
    the whole class), sorted."""
    if not 0.0 < fraction <= 1.0:
        raise SpecError(f"fraction must be in (0, 1], got {fraction}")
    chosen = []
    for members in _class_indices(labels):
        take = min(len(members), max(min_per_class, round(fraction * len(members))))
        order = torch.randperm(len(members), generator=generator)
        chosen.append(members[order[:take]])
    return torch.cat(chosen).sort().values


def stratified_split(
    labels: Tensor, val_fraction: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """(fit, val) indices: each class split by `val_fraction`, keeping at least one example
    of each class on the fit side when the class has more than one."""
    fit, val = [], []
    for members in _class_indices(labels):
        order = members[torch.randperm(len(members), generator=generator)]
        take = min(round(val_fraction * len(members)), len(members) - 1)
        val.append(order[:take])
        fit.append(order[take:])
    return torch.cat(fit).sort().values, torch.cat(val).sort().values


def few_shot_indices(labels: Tensor, shots: int, generator: torch.Generator) -> Tensor:
    """`shots` random examples of every class (all of a class that has fewer), sorted."""
    if shots < 1:
        raise SpecError(f"shots must be at least 1, got {shots}")
    chosen = []
    for members in _class_indices(labels):
        order = torch.randperm(len(members), generator=generator)
        chosen.append(members[order[:shots]])
    return torch.cat(chosen).sort().values
