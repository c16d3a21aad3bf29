"""SimSiam: siamese networks with a stop-gradient, and nothing else.

Chen & He 2021, "Exploring Simple Siamese Representation Learning" (CVPR 2021,
arXiv:2011.10566). Two views of an image go through the same encoder and projector; a predictor
on one branch must match the projection of the other, whose gradient is stopped. No negatives,
no momentum encoder, no large batches: the paper shows the stop-gradient alone prevents
collapse (section 4.1), and the predictor is needed (section 4.2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.config import param
from engine.losses.byol import simsiam_loss
from engine.methods._two_view import TwoViewConfig, TwoViewMethod
from engine.methods.base import TINY_PRESET, MethodCard
from engine.models.heads import PredictionHead, ProjectionHead
from engine.registry import register_method


@dataclass
class SimSiamConfig(TwoViewConfig):
    projection_dim: int = param(2048, "Output size of the projector (paper: 2048).", min=2)
    projection_layers: int = param(
        3,
        "Layers of the projector, each with batch norm, the "
        "output too (paper: 3 for ImageNet, 2 for CIFAR).",
        min=2,
        max=4,
    )
    prediction_hidden_dim: int = param(
        512,
        "Bottleneck width of the predictor (paper: 512, "
        "a quarter of the projection; table 1 shows the "
        "bottleneck helps).",
        min=2,
        main=True,
    )
    fix_predictor_lr: bool = param(
        False,
        "Keep the predictor's learning rate at its peak while the rest follows the warmup "
        "and cosine schedule (section 4.2 finds the predictor trains better without the "
        "decay; --fix-pred-lr in the authors' main_simsiam.py).",
    )

    PRESETS = {
        # The small convnet at 32 px, batch 64: 1.3x SimCLR's step (bench/train_step.py, same
        # run: 20.2 s against 15.0 s under heavy load; 1.2 s alone); bf16 1.27x faster than
        # fp32. The paper's CIFAR projector (2 layers). Crops of at least 70% of the image: with the
        # recipe's 20% SimSiam collapsed on `scenes` (k-NN 0.450 against its random twin's
        # 0.527); with 70%, 0.847 / 0.712 / 0.791 over seeds 0-2 (+0.26 mean); with 50% seed 1
        # stayed at the twin's (bench/RESULTS.md, tenth session).
        "quick": dict(
            grad_clip=1.0,  # as bench/RESULTS.md measured the quick runs
            backbone="convnet",
            crop_min_scale=0.7,
            steps=500,
            batch_size=64,
            lr=1e-3,
            image_size=32,
            warmup_steps=10,
            weight_decay=5e-4,
            projection_layers=2,
            checkpoint_every=50,
        ),
        # Paper, appendix D (CIFAR-10): ResNet-18 variant, batch 512, SGD lr 0.03 x
        # batch/256, weight decay 5e-4, cosine, 800 epochs of 50k images, 2-layer projector.
        "paper": dict(
            augmentation="natural",
            steps=78_125,
            batch_size=512,
            lr=0.06,
            optimizer="sgd",
            weight_decay=5e-4,
            warmup_steps=0,
            image_size=32,
            projection_layers=2,
            checkpoint_every=1000,
        ),
        # Seconds on a CPU (the registry walk trains it): a smoke test, not a recipe.
        "tiny": dict(
            TINY_PRESET,
            backbone="convnet",
            lr=1e-3,
            projection_dim=256,
            projection_layers=2,
            prediction_hidden_dim=64,
        ),
    }


@register_method("simsiam")
class SimSiam(TwoViewMethod):
    description = (
        "No negatives: stop-gradient and a predictor, no momentum encoder (Chen & He 2021)"
    )
    paper = "arXiv:2011.10566"
    Config = SimSiamConfig
    # Where two crops of 70% of the image still show the object, and colour and shape follow
    # the class: the quick preset learns `scenes` (k-NN +0.26 over its random twin, three
    # seeds) and not `shapes` (-0.05; bench/RESULTS.md).
    default_dataset = "scenes"
    card = MethodCard(
        title="SimSiam",
        authors="Chen, He",
        year=2021,
        paper="arXiv:2011.10566",
        idea="Two views of an image pass through one network; a small predictor on one side "
        "must match the other side's output, and no gradient flows through the side "
        "being matched. That stop-gradient alone is enough to keep the features from "
        "collapsing to a constant.",
        good_at="The simplest of the siamese methods: no negatives, no momentum copy, "
        "ordinary batch sizes; a good choice for one GPU. Watch the collapse "
        "metrics: without its predictor or stop-gradient it collapses at once.",
        hyperparameters="Predictor bottleneck width; projector depth; learning rate (the "
        "paper keeps the predictor's learning rate constant, which helps: "
        "fix_predictor_lr); how much of the image each crop keeps (crop_min_scale): on "
        "32 px scenes the quick run learns with 0.7 and collapses with the recipe's 0.2.",
    )

    def __init__(self, config: SimSiamConfig, data_info: dict | None = None) -> None:
        super().__init__(config, data_info)
        self.projector = ProjectionHead(
            self.feature_dim,
            config.projection_dim,
            config.projection_dim,
            config.projection_layers,
            last_batch_norm=True,
        )
        self.predictor = PredictionHead(config.projection_dim, config.prediction_hidden_dim)

    def fixed_lr_parameters(self) -> list[torch.nn.Parameter]:
        """The predictor's, with `fix_predictor_lr` (see `engine.optim.make_scheduler`)."""
        return list(self.predictor.parameters()) if self.config.fix_predictor_lr else []

    def training_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        views = self.make_views(batch["images"])  # (B, 3, S, S) each
        proj_a, proj_b = self.forward_views(views, self.encoder, self.projector)  # (B, d) each
        # The predictor sees both views' projections as one batch, as the encoder did.
        pred_a, pred_b = self.predictor(torch.cat([proj_a, proj_b])).chunk(2)  # (B, d) each
        # simsiam_loss stops the gradient through the projections it is given.
        loss = simsiam_loss(pred_a, pred_b, proj_a, proj_b)
        with torch.no_grad():
            # Paper, figure 2: the per-channel std of the normalised output; about 1/sqrt(d)
            # when healthy, 0 when collapsed. Reported times sqrt(d), so healthy is about 1.
            z = F.normalize(proj_a.float(), dim=1)
            output_std = z.std(dim=0).mean() * z.shape[1] ** 0.5
        return loss, {"output_std": output_std}
