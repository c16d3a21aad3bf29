"""Barlow Twins: redundancy reduction between two views.

Zbontar, Jing, Misra, LeCun, Deny 2021, "Barlow Twins: Self-Supervised Learning via Redundancy
Reduction" (arXiv:2103.03230). Two views per image (BYOL's augmentations), a ResNet encoder and a
wide 3-layer projector; the cross-correlation matrix between the two views' standardised
embeddings is pushed to the identity. No negatives, no momentum encoder, no predictor: the
off-diagonal term alone prevents collapse by decorrelating the embedding dimensions.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from engine.config import param
from engine.data.presets import augmentation_help
from engine.losses.barlow_twins import barlow_twins_loss
from engine.methods._two_view import TwoViewConfig, TwoViewMethod, two_view_param
from engine.methods.base import TINY_PRESET, MethodCard
from engine.models.heads import ProjectionHead
from engine.registry import register_method


@dataclass
class BarlowTwinsConfig(TwoViewConfig):
    backbone: str = two_view_param("backbone", "resnet50")
    small_stem: bool = two_view_param(
        "small_stem",
        help="Replace the 7x7 stride-2 stem and max "
        "pool by one 3x3 convolution, right for images under "
        "~96 px.",
    )
    augmentation: str = two_view_param(
        "augmentation",
        help=augmentation_help(
            "BYOL's asymmetric pair: blur in one view, solarisation in the other"
        ),
    )
    projection_dim: int = param(
        8192,
        "Output width of the projector. The paper finds wider is better, still improving at 16384.",
        min=2,
    )
    projection_hidden_dim: int = param(8192, "Hidden width of the 3-layer projector.", min=2)
    lambda_offdiag: float = param(
        0.0051,
        "Weight lambda of the off-diagonal (redundancy) "
        "term against the diagonal (invariance) term. The paper's "
        "0.0051 is about 1/D for D = 8192 outputs; scale it with "
        "1/projection_dim.",
        min=0.0,
        exclusive_min=True,
        main=True,
    )

    PRESETS = {
        # The small convnet at 32 px, a 3 x 1024 projector, AdamW, unclipped as the paper
        # trains (the loss is in the hundreds, so a clip at 1.0 rescaled every step by
        # 200-3700x). Batch 256: the 1024 x 1024 cross-correlation wants many samples. On
        # `shapes` (twin 0.170; bench/RESULTS.md): batch 64, 0.125; batch 128 x 650 steps,
        # 0.227; batch 256 x 360 steps, 0.332 (+0.162) in 166 s. Lambda 0.001 (0.145) or 0.02
        # (0.139), lr 3e-3 (0.145) and a 256-wide projector (0.195) did worse.
        "quick": dict(
            grad_clip=0.0,
            backbone="convnet",
            steps=360,
            batch_size=256,
            lr=1e-3,
            image_size=32,
            projection_dim=1024,
            projection_hidden_dim=1024,
            warmup_steps=10,
            optimizer="adamw",
            weight_decay=1e-4,
            checkpoint_every=50,
        ),
        # Paper, section 4 and the official main.py: ResNet-50, 3 x 8192 projector, batch 2048,
        # LARS with lr 0.2 x batch/256 for the weights (biases and BN: 0.0048 x batch/256 in
        # the paper; here the same lr, without LARS adaptation), wd 1.5e-6, 10 warmup epochs of
        # 1000 on ImageNet (625 steps an epoch), lambda 0.0051.
        "paper": dict(
            augmentation="natural",
            backbone="resnet50",
            small_stem=False,
            image_size=224,
            batch_size=2048,
            optimizer="lars",
            lr=1.6,
            weight_decay=1.5e-6,
            steps=625_000,
            warmup_steps=6250,
            projection_dim=8192,
            projection_hidden_dim=8192,
            lambda_offdiag=0.0051,
            checkpoint_every=5000,
        ),
        # Seconds on a CPU (the registry walk trains it): a smoke test, not a recipe.
        "tiny": dict(
            TINY_PRESET, backbone="convnet", lr=1e-3, projection_dim=128, projection_hidden_dim=128
        ),
    }


@register_method("barlowtwins")
class BarlowTwins(TwoViewMethod):
    description = "Redundancy reduction: views' cross-correlation to identity (Zbontar et al. 2021)"
    paper = "arXiv:2103.03230"
    Config = BarlowTwinsConfig
    card = MethodCard(
        title="Barlow Twins",
        authors="Zbontar, Jing, Misra, LeCun, Deny",
        year=2021,
        paper="arXiv:2103.03230",
        idea="Embed two views of each image and make the matrix of correlations between the "
        "two embeddings, dimension by dimension, equal the identity. Equal diagonals make "
        "the features invariant; zero off-diagonals make each feature carry different "
        "information, which rules out collapse.",
        good_at="Simple and symmetric: no negatives, no momentum encoder, no stop-gradient, "
        "and robust to small batches; benefits from very wide projectors.",
        hyperparameters="lambda (balance of invariance and decorrelation, about 1/D); "
        "projector width (wider is better, and costlier); augmentation "
        "strength.",
    )
    asymmetric_views = True
    # Each view through the network on its own, as in the authors' code: batch norm then
    # normalises each view with its own statistics.
    views_in_one_batch = False
    zero_init_residual = True  # as in the authors' code

    def __init__(self, config: BarlowTwinsConfig, data_info: dict | None = None) -> None:
        super().__init__(config, data_info)
        self.projection = ProjectionHead(
            self.feature_dim, config.projection_hidden_dim, config.projection_dim, num_layers=3
        )

    def training_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        # Batch statistics (cross-correlation) over the global batch: every rank's rows.
        z_a, z_b = self.project_views_global(batch["images"])  # (B, projection_dim) each
        out = barlow_twins_loss(z_a, z_b, self.config.lambda_offdiag)  # z: (B, projection_dim)
        return out.loss, {
            "on_diagonal": out.on_diagonal.detach(),
            "off_diagonal": out.off_diagonal.detach(),
        }
