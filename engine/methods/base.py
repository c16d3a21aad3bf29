"""What every method provides to the shared training loop.

A method is an `nn.Module` built from its config and what its data says about itself
(`TrainData.info`: number of classes, vocabulary size, ...). `load_data` turns a dataset name into
tensors that share their first dimension; each step the loop draws a batch of rows from every
tensor, moves it to the device and calls the method with the dict (`{"images": uint8 (B, 3, H,
W)}` for image methods). The method makes its own views, runs its networks and returns
`(loss, logs)`. `after_step` runs after each optimizer step (EMA targets, queues). `embed` maps
images to the features that evaluation and the embedding explorer use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from engine.config import TrainConfig

# What every method's "tiny" preset starts from (each adds small widths of its own): seconds on
# a CPU, for smoke tests (the registry walk trains every method with it) and for trying the
# pipeline end to end. Nothing useful is learnt in 16 steps; "quick" is the preset that learns.
TINY_PRESET: dict[str, Any] = dict(
    steps=16,
    batch_size=32,
    image_size=16,
    warmup_steps=2,
    checkpoint_every=5,
    precision="fp32",
    grad_clip=1.0,  # as the quick presets
)


@dataclass
class TrainData:
    """Training tensors (same first dimension N; a batch takes the same rows of each) and facts
    the method's constructor needs."""

    tensors: dict[str, Tensor]
    info: dict[str, Any] = field(default_factory=dict)
    # Class labels of the rows (N,) where the dataset has two classes or more: only the online
    # k-NN probe (engine.evaluation.health.KnnProbe) reads them; training never sees them.
    labels: Tensor | None = None

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))


@dataclass(frozen=True)
class MethodCard:
    """What the Train tab shows beside the form: the method in the studio's own words."""

    title: str  # "SimCLR"
    authors: str  # "Chen, Kornblith, Norouzi, Hinton"
    year: int
    paper: str  # arXiv id or venue
    idea: str  # the core idea in two sentences
    good_at: str  # what it is good at, when to pick it
    hyperparameters: str  # the key knobs and what they trade off


class SSLMethod(nn.Module):
    name: ClassVar[str] = ""  # set by @register_method
    description: ClassVar[str] = ""  # one line, shown by `python -m engine methods`
    paper: ClassVar[str] = ""  # the reference
    modality: ClassVar[str] = "image"  # what the datasets must hold
    # The builtin the method's pretext task suits, where its quick preset was measured
    # (bench/RESULTS.md): what the Train tab and the tests start with. `shapes` for the image
    # methods: on `digits` a random convnet already scores k-NN 0.95, so nothing shows.
    default_dataset: ClassVar[str] = "shapes"
    card: ClassVar[MethodCard | None] = None
    Config: ClassVar[type[TrainConfig]] = TrainConfig
    # Conv nets run faster with channels-last activations; the loop converts the module.
    channels_last: ClassVar[bool] = False
    # Whether a job may run this method on N processes (engine.distributed). False for a
    # method whose step would not mean the same split across ranks; validation refuses it.
    multi_process: ClassVar[bool] = True
    # On N processes, batch norm computes its statistics over the global batch (SyncBatchNorm,
    # as the papers' multi-GPU runs did); None: when the method is a conv net (channels_last).
    sync_batch_norm: ClassVar[bool | None] = None
    # Parameters some steps leave out of the loss (DINO's frozen last layer): DDP must look
    # for them each step (an extra walk of the graph), so only methods that say so pay it.
    unused_parameters: ClassVar[bool] = False

    def __init__(self, config: TrainConfig, data_info: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = config
        self.data_info = dict(data_info or {})

    @classmethod
    def check_config(cls, config: TrainConfig) -> None:
        """Raise SpecError for settings that cannot work together (before any job is stored)."""

    @classmethod
    def load_data(
        cls,
        dataset: str,
        config: TrainConfig,
        run_dir: Path | None = None,
        cache_dir: Path | None = None,
    ) -> TrainData:
        """The training split of `dataset` as tensors. Image methods get `{"images": uint8}`;
        text methods override this (tokenise, saving the tokenizer in `run_dir`)."""
        from engine.data.datasets import load_dataset

        data = load_dataset(dataset, "train", config.image_size, cache_dir=cache_dir)
        return TrainData(
            {"images": data.images},
            {"num_classes": len(data.class_names), "image_size": config.image_size},
            labels=data.labels if len(data.class_names) >= 2 else None,
        )

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        # The loop calls the module (not training_step) so a DDP wrapper sees the forward pass.
        return self.training_step(batch)

    def training_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """batch: the rows of `load_data`'s tensors on the training device (images: (B, 3, H, W)
        uint8) -> (scalar loss, detached scalar logs)."""
        raise NotImplementedError

    def on_train_start(self, tensors: dict[str, Tensor]) -> None:
        """Called once, without gradients, before the first step of a new run (not on resume)
        with all of `load_data`'s tensors on the device; e.g. MoCo fills its queue with keys of
        real images."""

    def after_step(self, step: int, total_steps: int) -> None:
        """Called after every optimizer step; `step` counts from 1."""

    def match_memory_format(self, images: Tensor) -> Tensor:
        """An input batch (B, C, H, W) in the memory format of the network: channels-last when
        `channels_last` is set (the loop converts the weights; an input in the same format
        spares a conversion at every layer), else unchanged."""
        if not self.channels_last:
            return images
        return images.contiguous(memory_format=torch.channels_last)

    @torch.no_grad()
    def embed(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) uint8 -> (B, D) float features of the trained encoder."""
        raise NotImplementedError

    def export(self, out_dir: Path) -> None:
        """Write artifacts other tools load as they are (e.g. `save_pretrained`); optional."""

    @torch.no_grad()
    def preview_views(self, images: Tensor) -> list[tuple[str, Tensor]]:
        """What the model sees, for the `/views` lens: each kind of input this method builds
        from `images` (uint8 (B, 3, H, W)) in training, as `(caption, uint8 (B, 3, h, w))`, made
        by the same code `training_step` calls (the lens seeds torch's generator first).

        The default fits methods whose `self.views` is one view maker (called twice, as for
        two-view methods) or a pair of them (one call each); methods whose inputs are more than
        augmented crops (multi-crop, masks, tiles, rotations, L channel) override it. Use
        `views_to_uint8` for views normalised the studio's way (`make_views`, `normalize`).
        """
        views = getattr(self, "views", None)
        if isinstance(views, (tuple, list)) and views and all(callable(v) for v in views):
            return [(f"view {i + 1}", views_to_uint8(make(images))) for i, make in enumerate(views)]
        if callable(views):
            return [(f"view {i + 1}", views_to_uint8(views(images))) for i in range(2)]
        raise NotImplementedError(
            f"{self.name or type(self).__name__} does not show its "
            "views yet (it has no preview_views)"
        )


def views_to_uint8(views: Tensor) -> Tensor:
    """Views normalised with the ImageNet mean and std (B, 3, h, w) -> uint8 pictures."""
    from engine.data.views import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(IMAGENET_MEAN, device=views.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, device=views.device)[:, None, None]
    return (views.float() * std + mean).clamp(0, 1).mul(255).round().to(torch.uint8)
