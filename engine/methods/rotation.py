"""RotNet: predict which of four rotations was applied to an image.

Gidaris, Singh, Komodakis 2018, "Unsupervised Representation Learning by Predicting Image
Rotations" (ICLR 2018, arXiv:1803.07728). Every image of the batch is fed in all four rotations
(0, 90, 180, 270 degrees) in the same mini-batch (the paper's section 3.1 finds this better than
one random rotation per image), and the network classifies the rotation with a 4-way softmax.
To tell "up" from "down" it has to recognise and locate the objects in the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.config import TrainConfig, param
from engine.data.views import make_views, normalize
from engine.methods.base import TINY_PRESET, MethodCard, SSLMethod, views_to_uint8
from engine.models.resnet import CNN_BACKBONES, build_resnet
from engine.registry import register_method

NUM_ROTATIONS = 4


def all_rotations(views: Tensor) -> tuple[Tensor, Tensor]:
    """(B, 3, S, S) -> every view turned by k quarter turns counter-clockwise, k = 0..3,
    (4B, 3, S, S) (all of k = 0 first), and the labels k (4B,)."""
    rotated = torch.cat([torch.rot90(views, k, dims=(2, 3)) for k in range(NUM_ROTATIONS)])
    labels = torch.arange(NUM_ROTATIONS, device=views.device)
    return rotated, labels.repeat_interleave(views.shape[0])


@dataclass
class RotationConfig(TrainConfig):
    backbone: str = param(
        "resnet18",
        "Encoder trained from scratch: the small VGG-style convnet "
        "or a torchvision ResNet (the paper used Network-in-Network and "
        "AlexNet).",
        choices=list(CNN_BACKBONES),
        main=True,
    )
    small_stem: bool = param(
        True,
        "Replace the 7x7 stride-2 stem and max pool by one 3x3 "
        "convolution: right for images under ~96 px.",
    )
    crop_scale_min: float = param(
        0.5,
        "Smallest area share of the random crop taken before "
        "rotating. The paper only jittered the crop a little "
        "(pad-and-crop, flips): large crops keep the objects whose "
        "orientation gives the answer.",
        min=0.05,
        max=1.0,
    )

    PRESETS = {
        # Digits at 32 px, batch 32 (128 rotated images a step) costs what SimCLR's batch 64
        # does (bench/train_step.py, same run: 16.6 s against 15.0 s under heavy load, where
        # SimCLR takes 1.2 s alone); bf16 1.26x faster than fp32.
        "quick": dict(
            grad_clip=1.0,  # as bench/RESULTS.md measured the quick runs
            backbone="convnet",
            steps=500,
            batch_size=32,
            lr=1e-3,
            image_size=32,
            warmup_steps=10,
            optimizer="adamw",
            weight_decay=5e-4,
            checkpoint_every=50,
        ),
        # Paper, section 4.1 (CIFAR-10): batch 128 images x 4 rotations, SGD momentum 0.9, lr
        # 0.1, weight decay 5e-4, 100 epochs of 50k images (here a cosine decay instead of the
        # paper's steps at epochs 30, 60, 80).
        "paper": dict(
            steps=39_100,
            batch_size=128,
            lr=0.1,
            optimizer="sgd",
            weight_decay=5e-4,
            warmup_steps=0,
            image_size=32,
            crop_scale_min=0.75,
            checkpoint_every=1000,
        ),
        # Seconds on a CPU (the registry walk trains it): a smoke test, not a recipe.
        "tiny": dict(TINY_PRESET, backbone="convnet", lr=1e-3),
    }


@register_method("rotation")
class Rotation(SSLMethod):
    # Upright objects (shapes are drawn at any angle, so no rotation is canonical there).
    default_dataset = "scenes"
    description = (
        "Pretext task: classify the rotation (0/90/180/270) of each image (Gidaris et al. 2018)"
    )
    paper = "arXiv:1803.07728"
    Config = RotationConfig
    card = MethodCard(
        title="RotNet (rotation prediction)",
        authors="Gidaris, Singh, Komodakis",
        year=2018,
        paper="arXiv:1803.07728",
        idea="Show the network each image turned by 0, 90, 180 and 270 degrees and ask which "
        "turn it was. Nobody can say which way is up without knowing what the object is "
        "and where its parts are, so the classifier has to learn about objects.",
        good_at="The cheapest pretext task to run and explain, with no augmentation recipe to "
        "tune; strong early-layer features. Weak on images with no canonical "
        "orientation (satellite, microscopy, symmetric shapes), where the task is "
        "ambiguous.",
        hyperparameters="Only the usual ones: learning rate, batch size (each image costs four "
        "forward passes), and how hard the crop is (small crops hide the "
        "cues that give the orientation away).",
    )
    channels_last = True

    def __init__(self, config: RotationConfig, data_info: dict | None = None) -> None:
        super().__init__(config, data_info)
        self.views = make_views("mae", config.image_size, crop_scale=(config.crop_scale_min, 1.0))
        self.encoder, feature_dim = build_resnet(config.backbone, config.small_stem)
        self.classifier = nn.Linear(feature_dim, NUM_ROTATIONS)

    def training_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        images = batch["images"]  # (B, 3, H, W) uint8
        with torch.no_grad():
            # Every image in all four rotations: (4B, 3, S, S), labels (4B,).
            rotated, labels = all_rotations(self.views(images))
        rotated = self.match_memory_format(rotated)
        logits = self.classifier(self.encoder(rotated)).float()  # (4B, 4)
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.detach().argmax(dim=1) == labels).float().mean()
        return loss, {"rotation_acc": accuracy}

    @torch.no_grad()
    def embed(self, images: Tensor) -> Tensor:
        return self.encoder(normalize(images)).float()

    @torch.no_grad()
    def preview_views(self, images: Tensor) -> list[tuple[str, Tensor]]:
        """The crop in its four rotations, each captioned with the label the classifier must
        predict, from `all_rotations` as in `training_step`."""
        rotated, labels = all_rotations(self.views(images))  # (4B, 3, S, S), (4B,)
        turns = views_to_uint8(rotated).chunk(NUM_ROTATIONS)  # 4 x (B, 3, S, S)
        batch = len(images)
        return [
            (f"{90 * k}\N{DEGREE SIGN} ccw, label {int(labels[k * batch])}", turned)
            for k, turned in enumerate(turns)
        ]
