"""DINO's self-distillation loss and its centre update.

Caron, Touvron, Misra, Jegou, Mairal, Bojanowski, Joulin 2021, "Emerging Properties in
Self-Supervised Vision Transformers" (arXiv:2104.14294), Algorithm 1 and section 3.1: the
teacher's output on each global crop, centred and sharpened by a low temperature, is the target
distribution for the student's output on every other crop (cross-entropy, averaged over the
pairs); the centre is an exponential moving average of the teacher's batch mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def dino_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    center: Tensor,
    student_temperature: float = 0.1,
    teacher_temperature: float = 0.04,
) -> Tensor:
    """Mean over (teacher crop, other student crop) pairs of the cross-entropy H(teacher, student).

    Args:
        student_logits: (V, B, K) head outputs of the student on V crops of B images; the first
            G crops are the global crops the teacher saw.
        teacher_logits: (G, B, K) head outputs of the teacher on the G global crops.
        center: (1, K) or (K,) running centre subtracted from the teacher's outputs.
    Returns:
        Scalar fp32 loss; no gradient reaches the teacher.
    """
    if (
        student_logits.ndim != 3
        or teacher_logits.ndim != 3
        or student_logits.shape[1:] != teacher_logits.shape[1:]
        or len(student_logits) < len(teacher_logits)
        or len(student_logits) < 2
    ):
        raise ValueError(
            f"expected student (V, B, K) and teacher (G, B, K) logits with V >= G "
            f"and V >= 2, got {tuple(student_logits.shape)} and "
            f"{tuple(teacher_logits.shape)}"
        )
    with torch.autocast(student_logits.device.type, enabled=False):
        teacher = F.softmax(
            (teacher_logits.detach().float() - center.float().reshape(1, 1, -1))
            / teacher_temperature,
            dim=-1,
        )  # (G, B, K)
        student = F.log_softmax(student_logits.float() / student_temperature, dim=-1)  # (V, B, K)
        # cross[t, v] = mean over images of H(teacher crop t, student crop v)
        cross = -torch.einsum("tbk,vbk->tv", teacher, student) / student.shape[1]  # (G, V)
        # A crop is not its own target: drop the pairs t == v.
        keep = ~torch.eye(*cross.shape, dtype=torch.bool, device=cross.device)
        return cross[keep].mean()


@torch.no_grad()
def updated_center(center: Tensor, teacher_logits: Tensor, momentum: float = 0.9) -> Tensor:
    """center * momentum + (1 - momentum) * the teacher's batch mean, shaped (1, K), fp32.

    Pass the batch mean already averaged across processes when training on several devices.
    """
    batch_mean = teacher_logits.float().mean(dim=0, keepdim=True)
    return center.float().reshape(1, -1) * momentum + batch_mean * (1 - momentum)
