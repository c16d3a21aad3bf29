"""Linear probe: multinomial logistic regression on standardised frozen features.

The usual frozen-feature protocol (SimCLR, Chen et al. 2020, appendix B.5, trains it with
L-BFGS and an l2 penalty on standardised features; so do CLIP's and many others'). Here: full-batch
L-BFGS with a strong-Wolfe line search; the weight decay is picked from a grid on a stratified
validation split of the training set, then the probe is refit on the whole training set.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.evaluation.sampling import stratified_split

WEIGHT_DECAYS: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def standardise(train_x: Tensor, *others: Tensor) -> tuple[Tensor, ...]:
    """Zero mean, unit variance per feature, with the statistics of `train_x` only."""
    mean = train_x.mean(dim=0)
    std = train_x.std(dim=0).clamp_min(1e-6)
    return tuple((x - mean) / std for x in (train_x, *others))


def fit_logistic(
    x: Tensor,
    y: Tensor,
    num_classes: int,
    weight_decay: float,
    max_iter: int = 100,
    init: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """(weight (C, D), bias (C,)) minimising mean cross-entropy + weight_decay/2 * ||W||^2,
    starting from zeros or from `init` (a neighbouring solution: far fewer iterations)."""
    x, y = x.float(), y.long()
    if init is None:
        weight = torch.zeros(num_classes, x.shape[1], requires_grad=True)
        bias = torch.zeros(num_classes, requires_grad=True)
    else:
        weight = init[0].clone().requires_grad_(True)
        bias = init[1].clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, y) + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


def accuracy(weight: Tensor, bias: Tensor, x: Tensor, y: Tensor) -> float:
    if len(y) == 0:
        return float("nan")
    return ((x.float() @ weight.T + bias).argmax(dim=1) == y.long()).float().mean().item()


def linear_probe(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    num_classes: int,
    weight_decays: Sequence[float] = WEIGHT_DECAYS,
    val_fraction: float = 0.2,
    max_iter: int = 100,
    seed: int = 0,
) -> dict[str, float]:
    """Top-1 test accuracy of the probe, the weight decay chosen and its validation accuracy."""
    generator = torch.Generator().manual_seed(seed)
    fit_idx, val_idx = stratified_split(train_y, val_fraction, generator)
    # Strongest penalty first, each fit warm-started from the previous one (a regularisation
    # path): the weaker penalties then need only a few iterations each.
    grid = sorted((float(w) for w in weight_decays), reverse=True)
    best_wd, best_val, best_init = grid[-1], -1.0, None
    if len(grid) > 1 and len(val_idx) > 0:
        fit_x, val_x = standardise(train_x[fit_idx], train_x[val_idx])
        init = None
        for wd in grid:
            init = fit_logistic(fit_x, train_y[fit_idx], num_classes, wd, max_iter, init)
            val = accuracy(*init, val_x, train_y[val_idx])
            if val > best_val:  # ties go to the stronger penalty, seen first
                best_wd, best_val, best_init = wd, val, init
    train_s, test_s = standardise(train_x, test_x)
    weight, bias = fit_logistic(train_s, train_y, num_classes, best_wd, max_iter, best_init)
    return {
        "top1": accuracy(weight, bias, test_s, test_y),
        "train_top1": accuracy(weight, bias, train_s, train_y),
        "weight_decay": best_wd,
        "val_top1": best_val if best_val >= 0 else None,
    }
