"""What the two-view methods share: a conv trunk and two augmented views of each image.

SimCLR, MoCo, BYOL, SimSiam, Barlow Twins and VICReg all encode two augmented views of every
image with a convolutional trunk (`encoder`) and an MLP head, and embed with the trunk alone.
They differ in their head, their loss and what else they keep (a key encoder and queue, an EMA
target, a predictor): those stay in each method's file. This module is only the shared part:
the config fields every one of them has, the view makers, the trunk, and running the two views
through a stack of networks, so a new two-view method is its own file and nothing more.

Not a method (the registry skips modules starting with "_").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from engine.config import TrainConfig, param
from engine.data.presets import augmentation_help
from engine.data.views import AUGMENTATIONS, AUTO, normalize, view_pair
from engine.distributed import gather
from engine.methods.base import SSLMethod
from engine.models.resnet import CNN_BACKBONES, build_resnet


@dataclass
class TwoViewConfig(TrainConfig):
    """Settings of every two-view method; a method adds its own (loss, head, momentum...)."""

    backbone: str = param(
        "resnet18",
        "Encoder trained from scratch: the small VGG-style convnet "
        "(fast on a CPU) or a torchvision ResNet.",
        choices=list(CNN_BACKBONES),
        main=True,
    )
    small_stem: bool = param(
        True,
        "Replace the 7x7 stride-2 stem and max pool by one 3x3 "
        "convolution: right for images under ~96 px.",
    )
    augmentation: str = param(
        AUTO,
        augmentation_help("the SimCLR recipe: crop, flip, colour jitter, grayscale, blur"),
        choices=list(AUGMENTATIONS),
        main=True,
    )
    crop_min_scale: float = param(
        0.0,
        "Smallest share of the image a view's random crop covers (lightly's min_scale, "
        "solo-learn's crop_min_scale); 0 keeps the augmentation preset's own: 0.2 up to 64 px "
        "and 0.08 above for natural and satellite, 0.3 for synthetic, 0.5 for medical. Higher "
        "keeps more of the object in both views.",
        min=0.0,
        max=1.0,
    )


def two_view_param(name: str, default: Any = dataclasses.MISSING, help: str | None = None) -> Any:
    """`TwoViewConfig`'s field `name` with this method's default and/or help text; choices and
    bounds stay the shared ones. E.g. `backbone: str = two_view_param("backbone", "resnet50")`."""
    shared = TwoViewConfig.__dataclass_fields__[name]
    metadata = dict(shared.metadata)
    if help is not None:
        metadata["help"] = help
    return dataclasses.field(
        default=shared.default if default is dataclasses.MISSING else default, metadata=metadata
    )


class TwoViewMethod(SSLMethod):
    """Builds `self.views` (two view makers) and `self.encoder` (a `build_resnet` trunk of
    `self.feature_dim` features); a subclass adds its head and `training_step`.

    `project_views` wants the head at `self.projection`; BYOL and SimSiam, whose checkpoints
    name theirs `projector`, pass it to `forward_views` themselves.
    """

    Config: ClassVar[type[TrainConfig]] = TwoViewConfig
    channels_last = True
    # BYOL's asymmetric pair of view makers (blur in one, solarisation in the other; see
    # `view_pair`), which Barlow Twins and VICReg use; otherwise one recipe for both views.
    asymmetric_views: ClassVar[bool] = False
    # True: both views go through the networks as one batch of 2B, so batch norm normalises
    # them together (SimCLR's code; the studio's MoCo, BYOL and SimSiam too). False: one view at
    # a time, each normalised with its own statistics (Barlow Twins' and VICReg's code, and the
    # SimSiam authors' builder.py; per-view statistics did not help SimSiam or BYOL learn
    # `shapes`, bench/RESULTS.md sixth session).
    views_in_one_batch: ClassVar[bool] = True
    # Residual blocks start as the identity (a ResNet trunk only), as in the Barlow Twins and
    # VICReg code.
    zero_init_residual: ClassVar[bool] = False

    def __init__(self, config: TwoViewConfig, data_info: dict | None = None) -> None:
        super().__init__(config, data_info)
        self.views = view_pair(
            config.augmentation,
            config.image_size,
            asymmetric=self.asymmetric_views,
            crop_scale=(config.crop_min_scale, 1.0) if config.crop_min_scale else None,
        )
        self.encoder, self.feature_dim = build_resnet(
            config.backbone, config.small_stem, zero_init_residual=self.zero_init_residual
        )

    @torch.no_grad()
    def make_view(self, images: Tensor, index: int) -> Tensor:
        """uint8 (B, 3, H, W) -> view `index` (0 or 1): float (B, 3, S, S), no gradient, in the
        network's memory format."""
        return self.match_memory_format(self.views[index](images))

    def make_views(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """uint8 (B, 3, H, W) -> the two views of every image, each (B, 3, S, S)."""
        return self.make_view(images, 0), self.make_view(images, 1)

    def forward_views(
        self, views: tuple[Tensor, Tensor], *networks: nn.Module
    ) -> tuple[Tensor, Tensor]:
        """Two views (B, 3, S, S) through `networks` in turn -> two outputs (B, D), as one batch
        or one view at a time (`views_in_one_batch`)."""
        if self.views_in_one_batch:
            x = torch.cat(views)  # (2B, 3, S, S)
            for network in networks:
                x = network(x)
            out_a, out_b = x.chunk(2)  # (B, D) each
            return out_a, out_b
        outputs = []
        for x in views:
            for network in networks:
                x = network(x)
            outputs.append(x)
        return outputs[0], outputs[1]

    def project_views(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """uint8 (B, 3, H, W) -> (z_a, z_b): both views through `encoder` and `projection`,
        each (B, projection_dim)."""
        return self.forward_views(self.make_views(images), self.encoder, self.projection)

    def project_views_global(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """`project_views` of this rank's rows, gathered (with gradients) over every rank:
        (z_a, z_b) of the global batch, each (global B, projection_dim), rank 0's rows first.
        A loss of the global batch computed from them on every rank gives, after DDP's
        averaging, the one-process gradient (engine.distributed). In one process: as is."""
        z_a, z_b = self.project_views(images)
        return gather(z_a), gather(z_b)

    @torch.no_grad()
    def embed(self, images: Tensor) -> Tensor:
        return self.encoder(normalize(images)).float()
