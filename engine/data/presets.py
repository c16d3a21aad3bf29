"""The augmentation presets a job picks, beyond single view makers: the help text of a method's
`augmentation` setting, "auto" resolved to what the dataset suggests, and multi-crop (DINO).
The recipes themselves and `view_pair` are in `engine.data.views`.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import torch
from torch import Tensor

from engine.data.views import AUTO, BYOL_JITTER, DOMAINS, Views
from engine.errors import DatasetError, SpecError


def augmentation_help(natural: str) -> str:
    """The help text of a method's `augmentation` setting; `natural` says what that preset
    means for the method."""
    return (
        f"Augmentation preset: auto (what the dataset suggests: synthetic for shapes, "
        f"natural otherwise), natural ({natural}), medical (weak crops, little intensity "
        f"change, grayscale), satellite (quarter turns, flips, brightness/contrast), "
        f"synthetic (any hue, grayscale half the time: for images whose colours are "
        f"arbitrary)."
    )


def resolve_augmentation(config: Any, dataset: str) -> Any:
    """`config` with an `augmentation` of "auto" replaced by what `dataset` suggests ("natural"
    for datasets that suggest nothing); any other config is returned as it is."""
    if getattr(config, "augmentation", None) != AUTO:
        return config
    from engine.data.datasets import dataset_info

    try:
        suggested = dataset_info(dataset).get("augmentation") or "natural"
    except DatasetError:  # an unknown dataset is reported where the job is checked
        suggested = "natural"
    return dataclasses.replace(config, augmentation=suggested)


class MultiCrop(torch.nn.Module):
    """Multi-crop (Caron et al. 2020, SwAV, section 3.2; DINO, Caron et al. 2021, section 3.1):
    two global crops and ``num_local`` smaller local crops of every image, per sample random.

    Under the natural preset the crops follow DINO's ``DataAugmentationDINO``: BYOL's colour
    jitter and grayscale in all of them; blur always in the first global crop, with p 0.1 in the
    second (which alone is solarised, p 0.2) and with p 0.5 in the local crops. Other presets use
    their own colour steps with the multi-crop scales. The paper's scales are (0.4, 1) for global
    and (0.05, 0.4) for local crops, at 224 and 96 px.
    """

    def __init__(
        self,
        augmentation: str,
        global_size: int,
        local_size: int,
        num_local: int,
        *,
        global_scale: tuple[float, float] = (0.4, 1.0),
        local_scale: tuple[float, float] = (0.05, 0.4),
    ) -> None:
        super().__init__()
        augmentation = "natural" if augmentation == AUTO else augmentation
        if augmentation not in DOMAINS:
            raise SpecError(
                f"unknown augmentation preset {augmentation!r}; choose one of {', '.join(DOMAINS)}"
            )
        if (
            isinstance(num_local, bool)
            or not isinstance(num_local, numbers.Integral)
            or num_local < 0
        ):
            raise SpecError(f"num_local must be a whole number >= 0, got {num_local!r}")
        natural = augmentation == "natural"

        def crops(size: int, scale: tuple[float, float], blur_p: float, solarize_p: float) -> Views:
            extra = (
                dict(jitter=BYOL_JITTER, blur_p=blur_p, solarize_p=solarize_p) if natural else {}
            )
            return Views(augmentation, size, crop_scale=scale, **extra)

        self.num_local = int(num_local)
        self.local_size = int(local_size)
        self.global_views = torch.nn.ModuleList(
            [crops(global_size, global_scale, 1.0, 0.0), crops(global_size, global_scale, 0.1, 0.2)]
        )
        self.local_views = crops(local_size, local_scale, 0.5, 0.0)

    @torch.no_grad()
    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """uint8 (B, 3, H, W) -> global crops (2B, 3, G, G), every image's first crop then every
        image's second, and local crops (num_local * B, 3, L, L) in the same order."""
        global_crops = torch.cat([views(images) for views in self.global_views])
        if not self.num_local:
            return global_crops, global_crops.new_empty((0, 3, self.local_size, self.local_size))
        # One call over the repeated batch: a single resample for all local crops.
        return global_crops, self.local_views(images.repeat(self.num_local, 1, 1, 1))
