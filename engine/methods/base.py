"""What every method provides to the shared training loop.

A method is an `nn.Module` built from its config. The loop calls it with a uint8 batch already
on the training device; the method makes its own views, runs its networks and returns
`(loss, logs)`. `after_step` runs after each optimizer step (EMA targets, queues). `embed` maps
images to the features that evaluation and the embedding explorer use.
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn

from engine.config import TrainConfig


class SSLMethod(nn.Module):
    name: ClassVar[str] = ""           # set by @register_method
    description: ClassVar[str] = ""    # one line, shown by `python -m engine methods`
    paper: ClassVar[str] = ""          # the reference
    modality: ClassVar[str] = "image"  # what the datasets must hold
    Config: ClassVar[type[TrainConfig]] = TrainConfig
    # Conv nets run faster with channels-last activations; the loop converts the module.
    channels_last: ClassVar[bool] = False

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        self.config = config

    @classmethod
    def check_config(cls, config: TrainConfig) -> None:
        """Raise SpecError for settings that cannot work together (before any job is stored)."""

    def forward(self, images: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        # The loop calls the module (not training_step) so a DDP wrapper sees the forward pass.
        return self.training_step(images)

    def training_step(self, images: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """images: (B, 3, H, W) uint8 on the training device -> (scalar loss, detached logs)."""
        raise NotImplementedError

    def after_step(self, step: int, total_steps: int) -> None:
        """Called after every optimizer step; `step` counts from 1."""

    @torch.no_grad()
    def embed(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) uint8 -> (B, D) float features of the trained encoder."""
        raise NotImplementedError

    def export(self, out_dir: Path) -> None:
        """Write artifacts other tools load as they are (e.g. `save_pretrained`); optional."""
