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

from engine.config import TrainConfig, param
from engine.data.presets import augmentation_help
from engine.data.views import AUGMENTATIONS, AUTO, normalize, view_pair
from engine.losses.byol import simsiam_loss
from engine.methods.base import MethodCard, SSLMethod
from engine.models.heads import PredictionHead, ProjectionHead
from engine.models.resnet import CNN_BACKBONES, build_resnet
from engine.registry import register_method


@dataclass
class SimSiamConfig(TrainConfig):
    backbone: str = param("resnet18", "Encoder trained from scratch: the small VGG-style convnet "
                          "(fast on a CPU) or a torchvision ResNet.",
                          choices=list(CNN_BACKBONES), main=True)
    small_stem: bool = param(True, "Replace the 7x7 stride-2 stem and max pool by one 3x3 "
                             "convolution: right for images under ~96 px.")
    augmentation: str = param(AUTO, augmentation_help("the SimCLR recipe: crop, flip, colour "
                                                      "jitter, grayscale, blur"),
                              choices=list(AUGMENTATIONS), main=True)
    projection_dim: int = param(2048, "Output size of the projector (paper: 2048).", min=2)
    projection_layers: int = param(3, "Layers of the projector, each with batch norm, the "
                                   "output too (paper: 3 for ImageNet, 2 for CIFAR).", min=2,
                                   max=4)
    prediction_hidden_dim: int = param(512, "Bottleneck width of the predictor (paper: 512, "
                                       "a quarter of the projection; table 1 shows the "
                                       "bottleneck helps).", min=2, main=True)

    PRESETS = {
        # Digits at 32 px, batch 64: 1.3x SimCLR's step (bench/train_step.py, same run: 20.2 s
        # against 15.0 s under heavy load; 1.2 s alone); bf16 1.27x faster than fp32. The
        # paper's CIFAR projector (2 layers).
        "quick": dict(backbone="convnet", steps=500, batch_size=64, lr=1e-3, image_size=32,
                      warmup_steps=10, weight_decay=5e-4, projection_layers=2,
                      checkpoint_every=50),
        # Paper, appendix D (CIFAR-10): ResNet-18 variant, batch 512, SGD lr 0.03 x
        # batch/256, weight decay 5e-4, cosine, 800 epochs of 50k images, 2-layer projector.
        "paper": dict(augmentation="natural", steps=78_125, batch_size=512, lr=0.06,
                      optimizer="sgd", weight_decay=5e-4, warmup_steps=0, image_size=32,
                      projection_layers=2, checkpoint_every=1000),
    }


@register_method("simsiam")
class SimSiam(SSLMethod):
    description = "No negatives: stop-gradient and a predictor, no momentum encoder (Chen & He 2021)"
    paper = "arXiv:2011.10566"
    Config = SimSiamConfig
    card = MethodCard(
        title="SimSiam", authors="Chen, He", year=2021, paper="arXiv:2011.10566",
        idea="Two views of an image pass through one network; a small predictor on one side "
             "must match the other side's output, and no gradient flows through the side "
             "being matched. That stop-gradient alone is enough to keep the features from "
             "collapsing to a constant.",
        good_at="The simplest of the siamese methods: no negatives, no momentum copy, "
                "ordinary batch sizes; a good choice for one GPU. Watch the collapse "
                "metrics: without its predictor or stop-gradient it collapses at once.",
        hyperparameters="Predictor bottleneck width; projector depth; learning rate (the "
                        "paper keeps the predictor's learning rate constant, which helps).")
    channels_last = True

    def __init__(self, config: SimSiamConfig, data_info: dict | None = None) -> None:
        super().__init__(config, data_info)
        self.views = view_pair(config.augmentation, config.image_size)[0]
        self.encoder, feature_dim = build_resnet(config.backbone, config.small_stem)
        self.projector = ProjectionHead(feature_dim, config.projection_dim,
                                        config.projection_dim, config.projection_layers,
                                        last_batch_norm=True)
        self.predictor = PredictionHead(config.projection_dim, config.prediction_hidden_dim)

    def training_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        images = batch["images"]  # (B, 3, H, W) uint8
        batch_size = images.shape[0]
        with torch.no_grad():
            views = torch.cat([self.views(images), self.views(images)])  # (2B, 3, S, S)
        if self.channels_last:
            views = views.contiguous(memory_format=torch.channels_last)
        projections = self.projector(self.encoder(views))  # (2B, d)
        predictions = self.predictor(projections)  # (2B, d)
        # simsiam_loss stops the gradient through the projections it is given.
        loss = simsiam_loss(predictions[:batch_size], predictions[batch_size:],
                            projections[:batch_size], projections[batch_size:])
        with torch.no_grad():
            # Paper, figure 2: the per-channel std of the normalised output; about 1/sqrt(d)
            # when healthy, 0 when collapsed. Reported times sqrt(d), so healthy is about 1.
            z = F.normalize(projections[:batch_size].float(), dim=1)
            output_std = z.std(dim=0).mean() * z.shape[1] ** 0.5
        return loss, {"output_std": output_std}

    @torch.no_grad()
    def embed(self, images: Tensor) -> Tensor:
        return self.encoder(normalize(images)).float()
