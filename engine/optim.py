"""Optimizers, gradient clipping and the learning-rate schedule every method shares."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from engine.config import TrainConfig
from engine.errors import SpecError


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling.

    You, Gitman, Ginsburg 2017 (arXiv:1708.03888), as used by SimCLR and BYOL: each parameter's
    update is scaled by trust_coefficient * ||w|| / ||g + wd w||. Groups with `lars_exclude`
    (biases and norm layers) get neither weight decay nor the trust ratio.
    """

    def __init__(
        self,
        params,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
    ) -> None:
        super().__init__(
            params,
            dict(
                lr=lr,
                momentum=momentum,
                weight_decay=weight_decay,
                trust_coefficient=trust_coefficient,
                lars_exclude=False,
            ),
        )

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if not group["lars_exclude"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                    param_norm, grad_norm = torch.norm(p), torch.norm(grad)
                    trust = torch.where(
                        (param_norm > 0) & (grad_norm > 0),
                        group["trust_coefficient"] * param_norm / grad_norm,
                        torch.ones_like(param_norm),
                    )
                    grad = grad.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(grad).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(grad)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def param_groups(
    model: nn.Module, weight_decay: float, fixed_lr: list[nn.Parameter] | tuple = ()
) -> list[dict]:
    """Weight decay on weights only: biases and norm parameters (ndim <= 1) get none. The
    parameters in `fixed_lr` (SimSiam's predictor) go in groups of their own, marked
    `fixed_lr`, whose learning rate `make_scheduler` holds at its peak."""
    fixed = {id(p) for p in fixed_lr}
    decay, no_decay, fixed_decay, fixed_no_decay = [], [], [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            if id(p) in fixed:
                (fixed_no_decay if p.ndim <= 1 else fixed_decay).append(p)
            else:
                (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0, "lars_exclude": True},
    ]
    if fixed_decay:
        groups.append({"params": fixed_decay, "weight_decay": weight_decay, "fixed_lr": True})
    if fixed_no_decay:
        groups.append(
            {"params": fixed_no_decay, "weight_decay": 0.0, "lars_exclude": True, "fixed_lr": True}
        )
    return groups


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The config's optimizer over `model`'s parameters; a method's `fixed_lr_parameters()`
    (if it has one) get groups whose learning rate does not follow the schedule."""
    fixed = getattr(model, "fixed_lr_parameters", None)
    groups = param_groups(model, config.weight_decay, fixed() if callable(fixed) else ())
    if config.optimizer == "adamw":
        for g in groups:
            g.pop("lars_exclude", None)
        # beta2 is the method's paper's (its config's `adam_beta2` default names the source).
        # Fused on CUDA: one kernel for the whole update instead of a loop over tensors.
        fused = all(p.is_cuda for g in groups for p in g["params"]) or None
        return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, config.adam_beta2), fused=fused)
    if config.optimizer == "sgd":
        for g in groups:
            g.pop("lars_exclude", None)
        return torch.optim.SGD(groups, lr=config.lr, momentum=0.9)
    if config.optimizer == "lars":
        return LARS(groups, lr=config.lr, weight_decay=config.weight_decay)
    raise SpecError(f"unknown optimizer {config.optimizer!r}")


def clip_gradients(model: nn.Module, config: TrainConfig, accelerator=None) -> Tensor | None:
    """Clip the gradients as `config` says; the norm of all gradients before clipping, or
    None when clipping is off (grad_clip 0).

    `global` scales every gradient by min(1, grad_clip / total norm) (through the
    accelerator when given: it unscales and knows sharded models). `per_parameter` is
    main_dino.py's clip_gradients: each parameter tensor whose gradient norm exceeds
    grad_clip is scaled by grad_clip / (norm + 1e-6), the others are left alone.
    """
    if config.grad_clip <= 0:
        return None
    params = [p for p in model.parameters() if p.grad is not None]
    if config.grad_clip_mode == "global":
        if accelerator is not None:
            return accelerator.clip_grad_norm_(params, config.grad_clip)
        return torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
    if config.grad_clip_mode != "per_parameter":
        raise SpecError(f"unknown grad_clip_mode {config.grad_clip_mode!r}")
    if accelerator is not None:
        accelerator.unscale_gradients()
    if not params:
        return torch.zeros(())
    grads = [p.grad for p in params]
    norms = torch._foreach_norm(grads)  # one (,) tensor per parameter
    for grad, norm in zip(grads, norms, strict=True):
        # main_dino.py: clip_coef = clip / (norm + 1e-6); multiply only if below 1.
        grad.mul_(torch.clamp(config.grad_clip / (norm + 1e-6), max=1.0))
    return torch.linalg.vector_norm(torch.stack(norms))


def make_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup then cosine decay (`warmup_cosine`) for every group, except the groups
    marked `fixed_lr`, which keep the peak learning rate throughout (SimSiam's fixed predictor
    learning rate, `--fix-pred-lr` in the authors' main_simsiam.py)."""
    schedule = warmup_cosine(warmup_steps, total_steps)
    factors = [_constant if g.get("fixed_lr") else schedule for g in optimizer.param_groups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factors)


def _constant(step: int) -> float:
    return 1.0


def warmup_cosine(warmup_steps: int, total_steps: int) -> callable:
    """Multiplier of the peak lr at a step: linear warmup, then cosine decay to zero."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor
