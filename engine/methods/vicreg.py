"""VICReg: variance-invariance-covariance regularisation.

Bardes, Ponce, LeCun 2022, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning" (arXiv:2105.04906). Two views per image (BYOL's augmentations), a
ResNet encoder and a wide 3-layer expander; the loss pulls the two embeddings together
(invariance) while keeping every embedding dimension's standard deviation above 1 (variance) and
the dimensions decorrelated (covariance). Each regulariser acts on one branch alone, so the two
branches need not share weights or even architecture.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from engine.config import param
from engine.data.presets import augmentation_help
from engine.losses.vicreg import vicreg_loss
from engine.methods._two_view import TwoViewConfig, TwoViewMethod, two_view_param
from engine.methods.base import TINY_PRESET, MethodCard
from engine.models.heads import ProjectionHead
from engine.registry import register_method


@dataclass
class VICRegConfig(TwoViewConfig):
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
        8192, "Output width of the expander (the paper: 8192; wider keeps improving).", min=2
    )
    projection_hidden_dim: int = param(8192, "Hidden width of the 3-layer expander.", min=2)
    invariance_weight: float = param(
        25.0, "lambda: weight of the mean squared distance between the views.", min=0.0, main=True
    )
    variance_weight: float = param(
        25.0,
        "mu: weight of the hinge keeping each dimension's "
        "std above 1. The paper keeps mu = lambda; with mu much "
        "lower the embeddings can collapse.",
        min=0.0,
        main=True,
    )
    covariance_weight: float = param(
        1.0,
        "nu: weight of the squared off-diagonal covariances (decorrelation).",
        min=0.0,
        main=True,
    )

    PRESETS = {
        # Digits at 32 px: ResNet-18 (small stem), a 3 x 1024 expander, batch 64, AdamW.
        "quick": dict(
            grad_clip=1.0,  # as bench/RESULTS.md measured the quick runs
            backbone="convnet",
            steps=500,
            batch_size=64,
            lr=1e-3,
            image_size=32,
            projection_dim=1024,
            projection_hidden_dim=1024,
            warmup_steps=10,
            optimizer="adamw",
            weight_decay=1e-4,
            checkpoint_every=50,
        ),
        # Paper, section 4.1 / appendix C: ResNet-50, 3 x 8192 expander, batch 2048, LARS with
        # base lr 0.2 x batch/256, wd 1e-6, 10 warmup epochs of 1000 on ImageNet (625 steps an
        # epoch), coefficients 25 / 25 / 1.
        "paper": dict(
            augmentation="natural",
            backbone="resnet50",
            small_stem=False,
            image_size=224,
            batch_size=2048,
            optimizer="lars",
            lr=1.6,
            weight_decay=1e-6,
            steps=625_000,
            warmup_steps=6250,
            projection_dim=8192,
            projection_hidden_dim=8192,
            checkpoint_every=5000,
        ),
        # Seconds on a CPU (the registry walk trains it): a smoke test, not a recipe.
        "tiny": dict(
            TINY_PRESET, backbone="convnet", lr=1e-3, projection_dim=128, projection_hidden_dim=128
        ),
    }


@register_method("vicreg")
class VICReg(TwoViewMethod):
    description = "Redundancy reduction: variance, invariance, covariance (Bardes et al. 2022)"
    paper = "arXiv:2105.04906"
    Config = VICRegConfig
    card = MethodCard(
        title="VICReg",
        authors="Bardes, Ponce, LeCun",
        year=2022,
        paper="arXiv:2105.04906",
        idea="Pull the embeddings of two views together, and stop the trivial solution with "
        "two explicit terms on each branch: every dimension must vary across the batch "
        "(standard deviation at least 1), and different dimensions must not covary.",
        good_at="Collapse is prevented by terms you can read on the curves (variance, "
        "covariance), with no negatives, momentum encoder or weight sharing; works "
        "with small batches and even different encoders per branch.",
        hyperparameters="The three weights (the paper's 25 / 25 / 1; lowering the variance "
        "weight risks collapse); expander width (wider is better); "
        "augmentation strength.",
    )
    asymmetric_views = True
    # Each view through the network on its own, as in the authors' code: batch norm then
    # normalises each view with its own statistics.
    views_in_one_batch = False
    zero_init_residual = True  # as in the authors' code

    def __init__(self, config: VICRegConfig, data_info: dict | None = None) -> None:
        super().__init__(config, data_info)
        self.projection = ProjectionHead(
            self.feature_dim, config.projection_hidden_dim, config.projection_dim, num_layers=3
        )

    def training_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        # Variance and covariance over the global batch: every rank's rows.
        z_a, z_b = self.project_views_global(batch["images"])  # (B, projection_dim) each
        config = self.config
        out = vicreg_loss(
            z_a, z_b, config.invariance_weight, config.variance_weight, config.covariance_weight
        )  # z: (B, projection_dim)
        return out.loss, {
            "invariance": out.invariance.detach(),
            "variance": out.variance.detach(),
            "covariance": out.covariance.detach(),
        }
