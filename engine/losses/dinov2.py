"""DINOv2's losses beside DINO's: iBOT's masked-patch distillation, KoLeo, Sinkhorn-Knopp.

Oquab et al. 2023, "DINOv2: Learning Robust Visual Features without Supervision"
(arXiv:2304.07193), section 4: the image-level objective is DINO's (engine.losses.dino); the
patch-level objective is iBOT's (Zhou et al. 2022, arXiv:2111.07832): the student sees a global
crop with some patches replaced by a mask token and predicts, through its own head, the
teacher's output for those patches of the same crop unmasked. The KoLeo regulariser (Sablayrolles
et al. 2019) spreads the student's [CLS] features within a batch, and the teacher's outputs are
centred by three Sinkhorn-Knopp iterations (SwAV's, arXiv:2006.09882) instead of DINO's running
mean. Each function is pure: a caller on several processes passes `reduce` (a sum over
processes) so the Sinkhorn normalisation runs over the global batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


@torch.no_grad()
def sinkhorn_knopp(
    teacher_logits: Tensor,
    temperature: float,
    iterations: int = 3,
    reduce: Callable[[Tensor], Tensor] | None = None,
    total_rows: int | None = None,
) -> Tensor:
    """Targets (N, K) whose rows sum to 1 and whose columns have equal mass over the batch.

    DINOv2's `sinkhorn_knopp_teacher`: Q = exp(logits / temperature), scaled so its total is 1,
    then `iterations` rounds of normalising each prototype's mass to 1/K and each row's to 1/N.
    `reduce` sums a tensor over processes and `total_rows` is the global N (both default to this
    process alone). fp32 whatever the input.
    """
    reduce = reduce or (lambda t: t)
    # No max subtracted, as the reference: the head's weight-normalised last layer keeps the
    # logits within [-1, 1] when its norm is fixed, so exp(logits / T) stays finite in fp32.
    q = torch.exp(teacher_logits.float() / temperature).t()  # (K, N)
    rows = total_rows if total_rows is not None else q.shape[1]
    prototypes = q.shape[0]
    q /= reduce(q.sum().reshape(1))
    for _ in range(iterations):
        q /= reduce(q.sum(dim=1, keepdim=True)).clamp(min=1e-30)
        q /= prototypes
        q /= q.sum(dim=0, keepdim=True).clamp(min=1e-30)
        q /= rows
    return (q * rows).t()  # (N, K), each row sums to 1


def centered_softmax(teacher_logits: Tensor, center: Tensor, temperature: float) -> Tensor:
    """DINO's teacher targets: softmax((logits - center) / temperature), fp32."""
    return F.softmax((teacher_logits.float() - center.float().reshape(1, -1)) / temperature, dim=-1)


def ibot_patch_loss(
    student_patch_logits: Tensor,
    teacher_patch_targets: Tensor,
    masks: Tensor,
    student_temperature: float = 0.1,
) -> Tensor:
    """iBOT's masked-image-modelling loss as DINOv2's `iBOTPatchLoss.forward_masked`.

    Args:
        student_patch_logits: (M, K) the student head's outputs on the M masked patches, in the
            order of `masks.nonzero()` (crop by crop, patch by patch).
        teacher_patch_targets: (M, K) the teacher's target distributions for the same patches
            of the unmasked crops (centred and sharpened; no gradient).
        masks: (C, P) bool: which of each crop's P patches were masked (C crops in all).
    Returns:
        Scalar fp32: the cross-entropy of each masked patch, weighted by 1 / (masked patches in
        its crop), summed, divided by the number of crops C (crops with no masked patch count
        in C, as in the reference).
    """
    if student_patch_logits.shape != teacher_patch_targets.shape:
        raise ValueError(
            f"student {tuple(student_patch_logits.shape)} and teacher "
            f"{tuple(teacher_patch_targets.shape)} patch outputs differ"
        )
    if int(masks.sum()) != len(student_patch_logits):
        raise ValueError(
            f"{int(masks.sum())} masked patches but {len(student_patch_logits)} student outputs"
        )
    with torch.autocast(student_patch_logits.device.type, enabled=False):
        log_probs = F.log_softmax(student_patch_logits.float() / student_temperature, dim=-1)
        per_patch = -(teacher_patch_targets.detach().float() * log_probs).sum(dim=-1)  # (M,)
        weights = (1.0 / masks.sum(dim=-1).clamp(min=1).float())[:, None].expand_as(masks)
        return (per_patch * weights[masks]).sum() / masks.shape[0]


def koleo_loss(features: Tensor, eps: float = 1e-8) -> Tensor:
    """KoLeo: -mean(log distance to the nearest other sample) of the l2-normalised features.

    Sablayrolles, Douze, Schmid, Jegou 2019 (arXiv:1806.03198), as DINOv2's `KoLeoLoss`:
    features are normalised, each sample's nearest neighbour (by inner product, itself
    excluded) is found, and the loss is -log(||x_i - x_nn(i)|| + eps) averaged. Low when the
    features spread over the sphere; it grows without bound as two samples coincide.
    """
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"expected (N >= 2, D) features, got {tuple(features.shape)}")
    with torch.autocast(features.device.type, enabled=False):
        x = F.normalize(features.float(), dim=-1, eps=eps)
        with torch.no_grad():
            similarity = x @ x.t()
            similarity.fill_diagonal_(-2.0)  # never the sample itself
            nearest = similarity.argmax(dim=1)
        distances = F.pairwise_distance(x, x[nearest], p=2, eps=eps)
        return -torch.log(distances + eps).mean()
