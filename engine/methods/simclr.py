"""SimCLR: contrastive learning between two augmented views of each image.

Chen, Kornblith, Norouzi, Hinton 2020, "A Simple Framework for Contrastive Learning of Visual
Representations" (arXiv:2002.05709). Two views per image from a strong augmentation recipe, a
ResNet encoder, an MLP projection head, and the NT-Xent loss over the 2N views of a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from engine.config import param
from engine.losses.nt_xent import nt_xent_loss
from engine.methods._two_view import TwoViewConfig, TwoViewMethod, two_view_param
from engine.methods.base import TINY_PRESET, MethodCard
from engine.models.heads import ProjectionHead
from engine.registry import register_method


@dataclass
class SimCLRConfig(TwoViewConfig):
    small_stem: bool = two_view_param(
        "small_stem",
        help="Replace the 7x7 stride-2 stem and max "
        "pool by one 3x3 convolution: the paper's CIFAR setup, "
        "right for images under ~96 px.",
    )
    temperature: float = param(
        0.5,
        "NT-Xent temperature. Lower sharpens the softmax over "
        "negatives; 0.1-0.5 works, 0.5 is the paper's best at small "
        "batch sizes, 0.1 with LARS at batch 4096.",
        min=0.0,
        exclusive_min=True,
        main=True,
    )
    projection_dim: int = param(
        128, "Output size of the projection head (the space the loss compares in).", min=2
    )
    projection_hidden_dim: int = param(512, "Hidden width of the projection head.", min=2)

    PRESETS = {
        # CPU minutes: the small convnet at 32 px, batch 128, ~0.24 s a step on two cores
        # (bench/RESULTS.md); temperature 0.2 (0.5 learnt shapes more slowly in short runs).
        "quick": dict(
            grad_clip=1.0,  # as bench/RESULTS.md measured the quick runs
            backbone="convnet",
            steps=500,
            batch_size=128,
            temperature=0.2,
            lr=1e-3,
            image_size=32,
            warmup_steps=10,
            optimizer="adamw",
            weight_decay=1e-6,
            checkpoint_every=50,
        ),
        # Paper, appendix B.9 (CIFAR-10): ResNet-50, batch 1024, LARS, lr 0.3 x batch/256,
        # 1e-6 weight decay, temperature 0.5, 10 warmup epochs; 500 epochs of 50k images.
        "paper": dict(
            augmentation="natural",
            backbone="resnet50",
            steps=24_000,
            batch_size=1024,
            lr=1.2,
            optimizer="lars",
            weight_decay=1e-6,
            warmup_steps=480,
            image_size=32,
            temperature=0.5,
            projection_hidden_dim=2048,
            checkpoint_every=1000,
        ),
        # Seconds on a CPU (the registry walk trains it): a smoke test, not a recipe.
        "tiny": dict(
            TINY_PRESET,
            backbone="convnet",
            lr=1e-3,
            temperature=0.2,
            projection_dim=32,
            projection_hidden_dim=128,
        ),
    }


@register_method("simclr")
class SimCLR(TwoViewMethod):
    description = "Contrastive: two augmented views, NT-Xent over the batch (Chen et al. 2020)"
    paper = "arXiv:2002.05709"
    Config = SimCLRConfig
    card = MethodCard(
        title="SimCLR",
        authors="Chen, Kornblith, Norouzi, Hinton",
        year=2020,
        paper="arXiv:2002.05709",
        idea="Two random augmentations of the same image should land close together and far "
        "from every other image in the batch. A projection head takes the contrastive "
        "loss so the encoder below it keeps more general features.",
        good_at="A strong, simple baseline whose features depend on the augmentations you "
        "choose; learns invariance to crops and colour, which is what class labels "
        "usually want.",
        hyperparameters="Batch size (more negatives, better, up to thousands); temperature "
        "(lower focuses on hard negatives, too low is unstable); the strength "
        "of colour jitter and crop scale (too weak and the task is trivial).",
    )

    def __init__(self, config: SimCLRConfig, data_info: dict | None = None) -> None:
        super().__init__(config, data_info)
        self.projection = ProjectionHead(
            self.feature_dim, config.projection_hidden_dim, config.projection_dim, num_layers=2
        )

    def training_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        # Negatives from the global batch: every rank's rows, gathered with gradients.
        z_a, z_b = self.project_views_global(batch["images"])  # (B, projection_dim) each
        loss = nt_xent_loss(z_a, z_b, self.config.temperature)
        with torch.no_grad():
            # Share of anchors whose most similar other view is their positive.
            batch_size = z_a.shape[0]
            z = torch.nn.functional.normalize(torch.cat([z_a, z_b]).float(), dim=1)  # (2B, d)
            sim = (z @ z.T).fill_diagonal_(float("-inf"))
            target = torch.cat(
                [torch.arange(batch_size, 2 * batch_size), torch.arange(batch_size)]
            ).to(sim.device)
            accuracy = (sim.argmax(dim=1) == target).float().mean()
        return loss, {"contrastive_acc": accuracy}
