"""The momentum (EMA) target network and its schedule, shared by MoCo, BYOL and DINO.

target <- tau * target + (1 - tau) * online, with tau raised from its base value to 1 along a
cosine (BYOL, Grill et al. 2020, section 3.2; DINO, Caron et al. 2021, section 3.1).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def momentum_schedule(step: int, total_steps: int, base: float, final: float = 1.0) -> float:
    """tau at `step` (0-based): base at step 0, `final` at the last step (total_steps - 1),
    cosine in between: BYOL's tau = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2 with k counted
    so that the last update is the K-th."""
    progress = min(1.0, step / max(1, total_steps - 1))
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2


def make_target(online: nn.Module) -> nn.Module:
    """A frozen copy of `online` to serve as the EMA target."""
    target = copy.deepcopy(online)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def update_ema(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target = momentum * target + (1 - momentum) * online, parameter by parameter; buffers
    (batch-norm statistics) are copied."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.mul_(momentum).add_(o.detach(), alpha=1 - momentum)
    for t, o in zip(target.buffers(), online.buffers()):
        t.copy_(o)
