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


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weights only: biases and norm parameters (ndim <= 1) get none."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0, "lars_exclude": True},
    ]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, config.weight_decay)
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


def warmup_cosine(warmup_steps: int, total_steps: int) -> callable:
    """Multiplier of the peak lr at a step: linear warmup, then cosine decay to zero."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor
