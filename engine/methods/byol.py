"""BYOL: bootstrap your own latent.

Grill, Strub, Altche, Tallec, Richemond, Buchatskaya, Doersch, Pires, Guo, Azar, Piot,
Kavukcuoglu, Munos, Valko 2020, "Bootstrap Your Own Latent: A New Approach to Self-Supervised
Learning" (NeurIPS 2020, arXiv:2006.07733). An online network (encoder, projector, predictor)
predicts the projection that a target network (an exponential moving average of the online
encoder and projector) gives for another view of the same image. No negatives: the predictor
and the slowly moving target keep the representation from collapsing. The loss is symmetrised
over the two views and the target momentum rises from 0.996 to 1 along a cosine (section 3.2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from engine.config import param
from engine.losses.byol import byol_loss
from engine.methods._two_view import TwoViewConfig, TwoViewMethod
from engine.methods.base import TINY_PRESET, MethodCard
from engine.models.ema import make_target, momentum_schedule, update_ema
from engine.models.heads import PredictionHead, ProjectionHead
from engine.registry import register_method


@dataclass
class BYOLConfig(TwoViewConfig):
    base_momentum: float = param(
        0.996,
        "Target momentum at the first step; it rises to 1 "
        "along a cosine. Paper: 0.996 (0.99 for batches of 512 "
        "and below, table 8). Lower follows the online network "
        "faster; too low and the target stops being a stable goal.",
        min=0.0,
        max=1.0,
        main=True,
    )
    projection_dim: int = param(256, "Output size of projector and predictor (paper: 256).", min=2)
    projection_hidden_dim: int = param(4096, "Hidden width of the projector (paper: 4096).", min=2)
    prediction_hidden_dim: int = param(4096, "Hidden width of the predictor (paper: 4096).", min=2)

    PRESETS = {
        # The small convnet at 32 px, batch 128 (on shapes, batch 32 gave k-NN 0.120 / linear
        # 0.123 and 128 gave 0.146 / 0.240 for the same CPU time; bench/RESULTS.md). Short
        # runs want a faster target (0.99). Crops of at least 70% of the image: with the
        # recipe's 20% BYOL learned nothing on `scenes` in 500 steps (k-NN 0.486 against its
        # random twin's 0.527); with 70%, 0.647 / 0.636 / 0.671 over seeds 0-2 (+0.12 mean),
        # with 50% +0.11 (bench/RESULTS.md, tenth session). On `shapes` no crop setting helps.
        "quick": dict(
            grad_clip=1.0,  # as bench/RESULTS.md measured the quick runs
            backbone="convnet",
            crop_min_scale=0.7,
            steps=500,
            batch_size=128,
            lr=1e-3,
            image_size=32,
            warmup_steps=10,
            weight_decay=1e-6,
            base_momentum=0.99,
            checkpoint_every=50,
        ),
        # Paper, section 3.3 and appendix C: ImageNet, ResNet-50, batch 4096, LARS, lr
        # 0.2 x batch/256, weight decay 1.5e-6, 10 warmup epochs of 1000, base momentum 0.996.
        "paper": dict(
            augmentation="natural",
            backbone="resnet50",
            small_stem=False,
            image_size=224,
            steps=312_800,
            batch_size=4096,
            lr=3.2,
            optimizer="lars",
            weight_decay=1.5e-6,
            warmup_steps=3128,
            base_momentum=0.996,
            checkpoint_every=5000,
        ),
        # Seconds on a CPU (the registry walk trains it): a smoke test, not a recipe.
        "tiny": dict(
            TINY_PRESET,
            backbone="convnet",
            lr=1e-3,
            base_momentum=0.99,
            projection_dim=32,
            projection_hidden_dim=128,
            prediction_hidden_dim=128,
        ),
    }


@register_method("byol")
class BYOL(TwoViewMethod):
    description = (
        "No negatives: online network predicts an EMA target's projection (Grill et al. 2020)"
    )
    paper = "arXiv:2006.07733"
    Config = BYOLConfig
    card = MethodCard(
        title="BYOL",
        authors="Grill, Strub, Altche, Tallec, Richemond et al.",
        year=2020,
        paper="arXiv:2006.07733",
        idea="A network learns to predict, from one view of an image, what a slowly averaged "
        "copy of itself outputs for another view. There are no negative pairs: the extra "
        "predictor and the lagging target are what keep it from mapping everything to "
        "one point.",
        good_at="Strong features without large batches or negatives, and less sensitive to "
        "the colour augmentations than SimCLR.",
        hyperparameters="Target momentum (0.996 for long runs; lower, e.g. 0.99, for short "
        "runs and small batches); predictor width; how much of the image each crop "
        "keeps (crop_min_scale): on 32 px scenes the quick run learns with 0.7 and not with "
        "the recipe's 0.2.",
    )

    # The paper's own pair of views (table 6): blur always in the first and with p 0.1 in the
    # second, solarisation in the second only, jitter 0.4/0.4/0.2/0.1 (the natural domain).
    asymmetric_views = True
    # Objects whose colours and shapes follow their class, where two crops of 70% of the image
    # still show the object: the quick preset learns `scenes` (k-NN +0.12 over its random
    # twin, three seeds) and not `shapes` (-0.01 with any crops; bench/RESULTS.md).
    default_dataset = "scenes"

    def __init__(self, config: BYOLConfig, data_info: dict | None = None) -> None:
        super().__init__(config, data_info)
        self.projector = ProjectionHead(
            self.feature_dim, config.projection_hidden_dim, config.projection_dim, num_layers=2
        )
        self.predictor = PredictionHead(config.projection_dim, config.prediction_hidden_dim)
        self.target_encoder = make_target(self.encoder)
        self.target_projector = make_target(self.projector)
        self.momentum = config.base_momentum  # the value the last after_step used

    def training_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        views = self.make_views(batch["images"])  # (B, 3, S, S) each
        pred_a, pred_b = self.forward_views(
            views, self.encoder, self.projector, self.predictor
        )  # (B, d) each
        with torch.no_grad():
            target_a, target_b = self.forward_views(
                views, self.target_encoder, self.target_projector
            )  # (B, d) each
        loss = byol_loss(pred_a, pred_b, target_a, target_b)
        return loss, {"target_momentum": torch.tensor(self.momentum)}

    def after_step(self, step: int, total_steps: int) -> None:
        # tau_k = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2, k = 0 at the first update.
        self.momentum = momentum_schedule(step - 1, total_steps, self.config.base_momentum)
        update_ema(self.target_encoder, self.encoder, self.momentum)
        update_ema(self.target_projector, self.projector, self.momentum)
