"""CLIP's symmetric InfoNCE between matched image and text embeddings.

Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision"
(arXiv:2103.00020), figure 3: cosine similarities scaled by a learned temperature, cross-entropy
over texts for each image and over images for each text, averaged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

MAX_LOGIT_SCALE = math.log(100.0)  # the paper clips the temperature so logits stay <= 100x


def clip_logits(image_embeds: Tensor, text_embeds: Tensor, logit_scale: Tensor) -> Tensor:
    """(B, D), (B, D), scalar log-scale -> (B, B) image-to-text logits."""
    image_embeds = F.normalize(image_embeds.float(), dim=-1)
    text_embeds = F.normalize(text_embeds.float(), dim=-1)
    return logit_scale.float().exp() * image_embeds @ text_embeds.T


def clip_loss(image_embeds: Tensor, text_embeds: Tensor, logit_scale: Tensor) -> Tensor:
    """Row i of each input is a matched pair; every other row in the batch is a negative."""
    logits = clip_logits(image_embeds, text_embeds, logit_scale)  # (B_img, B_txt)
    target = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


@torch.no_grad()
def clamp_logit_scale_(logit_scale: Tensor, max_value: float = MAX_LOGIT_SCALE) -> None:
    """In place, after each optimizer step (transformers' CLIPModel does not clamp)."""
    logit_scale.clamp_(0.0, max_value)
