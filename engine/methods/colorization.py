"""Colourisation: predict the colours of an image from its lightness.

Zhang, Isola, Efros 2016, "Colorful Image Colorization" (ECCV 2016, arXiv:1603.08511). Images are
converted to CIE Lab; the network sees L and predicts, at a quarter of the input resolution, a
distribution over quantised ab colour bins at every pixel. The target is a soft encoding of the
true colour over its 5 nearest bins, the loss a cross-entropy weighted to boost rare (saturated)
colours, and a colour is read back from the distribution by its annealed mean (T = 0.38).
Section 3.2 of the paper evaluates the trained trunk as a self-supervised representation; here
the trunk is a ResNet whose pooled features on L are the embedding.

Every checkpoint folder gets `colorized.png`: rows of (grey input, prediction, original) for a
few fixed training images, which the UI can show.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.config import TrainConfig, adam_beta2_param, param
from engine.data.lab import ab_gamut_bins, annealed_mean, lab_to_rgb, rgb_to_lab, soft_encode
from engine.data.views import IMAGENET_MEAN, IMAGENET_STD, make_views
from engine.losses.colorization import rebalanced_cross_entropy, rebalancing_weights
from engine.methods.base import TINY_PRESET, MethodCard, SSLMethod, TrainData
from engine.models.resnet import CNN_BACKBONES, build_resnet, feature_map
from engine.registry import register_method

NUM_SAMPLES = 8  # images in colorized.png
PREVIEW_LIGHTNESS = 70.0  # the lightness the views lens draws the ab target at


@dataclass
class ColorizationConfig(TrainConfig):
    backbone: str = param(
        "resnet18",
        "Encoder trained from scratch on the L channel: the small "
        "VGG-style convnet (the paper used a VGG-style net) or a ResNet.",
        choices=list(CNN_BACKBONES),
        main=True,
    )
    small_stem: bool = param(
        True,
        "Replace the 7x7 stride-2 stem and max pool by one 3x3 "
        "convolution: right for images under ~96 px.",
    )
    bin_size: int = param(
        10,
        "Side of the ab bins the colours are quantised into (paper: 10, "
        "which leaves ~260 bins in the sRGB gamut). Larger is coarser and "
        "easier.",
        min=2,
        max=50,
    )
    rebalance_mix: float = param(
        0.5,
        "Lambda of the class rebalancing: the share of a uniform "
        "distribution mixed into the colour prior before inverting "
        "it. Lower boosts rare saturated colours more; 1 turns "
        "rebalancing off (the paper's 'classification' ablation). "
        "Paper: 0.5.",
        min=0.0,
        max=1.0,
        main=True,
    )
    decode_temperature: float = param(
        0.38,
        "Temperature of the annealed mean that turns the "
        "predicted distribution into one colour (samples only): "
        "towards 0 the mode (vivid, patchy), 1 the mean "
        "(smooth, sepia). Paper: 0.38.",
        min=0.01,
        max=1.0,
    )
    decoder_dim: int = param(
        256,
        "Width of the small convolutional head that predicts the "
        "bins; it is thrown away after training.",
        min=8,
    )

    # Zhang et al. 2016, section 2.4 / their solver: Adam beta1 0.9, beta2 0.99.
    adam_beta2: float = adam_beta2_param(0.99)

    PRESETS = {
        # 32 px, batch 64: as fast as SimCLR's step (bench/train_step.py, same run: 14.4 s
        # against 15.0 s under heavy load; 1.2 s alone); bf16 1.33x faster than fp32.
        # On `scenes` (bench/RESULTS.md, 2026-12-06; k-NN top-1, random twin 0.677): 500
        # steps 0.751 (+0.074, 75 s); 1200 steps, what 3 CPU minutes buy: 0.826 (+0.149,
        # 158 s).
        "quick": dict(
            grad_clip=1.0,  # as bench/RESULTS.md measured the quick runs
            backbone="convnet",
            steps=1200,
            batch_size=64,
            lr=1e-3,
            image_size=32,
            warmup_steps=10,
            weight_decay=1e-4,
            checkpoint_every=200,
        ),
        # Paper, section 2.4: Adam lr 3e-5 (dropped twice on plateaus; a cosine here), weight
        # decay 1e-3, batch 40, ~450k iterations on ImageNet at 256 px (224 here).
        "paper": dict(
            steps=450_000,
            batch_size=40,
            lr=3e-5,
            weight_decay=1e-3,
            warmup_steps=0,
            image_size=224,
            small_stem=False,
            checkpoint_every=5000,
        ),
        # Seconds on a CPU (the registry walk trains it): a smoke test, not a recipe.
        "tiny": dict(TINY_PRESET, backbone="convnet", lr=1e-3, decoder_dim=32),
    }


@register_method("colorization")
class Colorization(SSLMethod):
    description = "Pretext task: predict ab colour bins from lightness L (Zhang et al. 2016)"
    paper = "arXiv:1603.08511"
    Config = ColorizationConfig
    # Colours that follow the content (digits have none, shapes' are drawn at random).
    default_dataset = "scenes"
    card = MethodCard(
        title="Colorization",
        authors="Zhang, Isola, Efros",
        year=2016,
        paper="arXiv:1603.08511",
        idea="Give the network only the lightness of a photo and ask for its colours, as a "
        "probability over a few hundred colour bins per pixel. Knowing that grass is "
        "green and sky blue means knowing what grass and sky are, so the encoder learns "
        "semantics; rare vivid colours are weighted up so it does not settle for grey.",
        good_at="Natural colour images where colour follows from content; no augmentation "
        "recipe and a result you can look at (the colourised samples). Useless on "
        "greyscale data (digits, X-rays) and weak where colour is arbitrary (the "
        "colour of a painted toy).",
        hyperparameters="Rebalancing lambda (lower pushes rarer, more saturated colours); bin "
        "size (finer bins, harder task); decoding temperature only changes how "
        "the samples look.",
    )
    channels_last = True

    def __init__(self, config: ColorizationConfig, data_info: dict | None = None) -> None:
        super().__init__(config, data_info)
        self.views = make_views("mae", config.image_size, crop_scale=(0.5, 1.0))
        trunk, feature_dim = build_resnet(config.backbone, config.small_stem)
        stem = trunk.conv1  # the same stem, one input channel (L)
        trunk.conv1 = nn.Conv2d(
            1, stem.out_channels, stem.kernel_size, stem.stride, stem.padding, bias=False
        )
        self.encoder = trunk
        bins = ab_gamut_bins(config.bin_size)
        self.register_buffer("bins", bins)  # (Q, 2) ab centres
        # The colour prior of the training set (load_data counts it, as the paper counts
        # ImageNet's) fixes the rebalancing weights; kept in checkpoints with the weights.
        prior = torch.tensor(self.data_info.get("ab_prior") or [1.0] * len(bins))
        if prior.shape != (len(bins),):
            raise ValueError(f"ab_prior has {prior.numel()} bins, expected {len(bins)}")
        self.register_buffer(
            "class_weights", rebalancing_weights(prior, bins, config.rebalance_mix)
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(feature_dim, config.decoder_dim, 3, padding=1, bias=False),
            nn.BatchNorm2d(config.decoder_dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(config.decoder_dim, len(bins), 1),
        )
        self._samples: Tensor | None = None  # uint8 images for colorized.png

    @classmethod
    def load_data(
        cls,
        dataset: str,
        config: ColorizationConfig,
        run_dir: Path | None = None,
        cache_dir: Path | None = None,
    ) -> TrainData:
        """The images, and in `info["ab_prior"]` how often each ab bin occurs in them (at the
        loss's quarter resolution), for the rebalancing weights."""
        data = super().load_data(dataset, config, run_dir, cache_dir)
        bins = ab_gamut_bins(config.bin_size)
        counts = torch.zeros(len(bins))
        for chunk in data.tensors["images"].split(512):
            lab = rgb_to_lab(chunk.float() / 255)
            size = max(1, lab.shape[-1] // 4)
            ab = F.interpolate(lab[:, 1:], size=(size, size), mode="area")
            points = ab.permute(0, 2, 3, 1).reshape(-1, 2)  # (pixels, 2)
            nearest = torch.cdist(points, bins).argmin(dim=1)
            counts += torch.bincount(nearest, minlength=len(bins)).float()
        data.info["ab_prior"] = (counts / counts.sum()).tolist()
        return data

    @staticmethod
    def lightness_input(lab: Tensor) -> Tensor:
        """(B, 3, H, W) Lab -> (B, 1, H, W) L centred and scaled to about [-1, 1]."""
        return (lab[:, :1] - 50) / 50

    def _feature_map(self, lightness: Tensor) -> Tensor:
        """(B, 1, H, W) -> (B, D, h, w): the trunk before its pooling."""
        return feature_map(self.encoder, lightness)

    def predict_logits(self, lightness: Tensor) -> Tensor:
        """(B, 1, H, W) -> (B, Q, H/4, W/4) bin scores, the paper's output resolution."""
        size = max(1, lightness.shape[-1] // 4)
        features = self._feature_map(lightness)
        features = F.interpolate(features, size=(size, size), mode="bilinear", align_corners=False)
        return self.decoder(features)

    def lab_views(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """uint8 (B, 3, H, W) -> the augmented crop in Lab (B, 3, S, S) and its ab channels
        at the loss's quarter resolution (B, 2, S/4, S/4), area-averaged."""
        mean = torch.tensor(IMAGENET_MEAN, device=images.device)[:, None, None]
        std = torch.tensor(IMAGENET_STD, device=images.device)[:, None, None]
        lab = rgb_to_lab(self.views(images) * std + mean)  # (B, 3, S, S)
        size = max(1, lab.shape[-1] // 4)
        return lab, F.interpolate(lab[:, 1:], size=(size, size), mode="area")

    def training_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        images = batch["images"]  # (B, 3, H, W) uint8
        if self._samples is None:
            self._samples = images[:NUM_SAMPLES].detach().cpu().clone()
        with torch.no_grad():
            lab, ab = self.lab_views(images)  # (B, 3, S, S), (B, 2, S/4, S/4)
            targets = soft_encode(ab, self.bins)  # (B, Q, S/4, S/4)
            lightness = self.lightness_input(lab)
        lightness = self.match_memory_format(lightness)
        logits = self.predict_logits(lightness).float()  # (B, Q, S/4, S/4)
        loss = rebalanced_cross_entropy(logits, targets, self.class_weights)
        with torch.no_grad():
            accuracy = (logits.argmax(dim=1) == targets.argmax(dim=1)).float().mean()
        return loss, {"bin_acc": accuracy}

    @torch.no_grad()
    def colorize(self, images: Tensor) -> Tensor:
        """uint8 (B, 3, H, W) -> float (B, 3, H, W) RGB in [0, 1]: the input's L with the
        predicted ab (annealed mean, upsampled to full resolution)."""
        lab = rgb_to_lab(images.float() / 255)
        logits = self.predict_logits(self.lightness_input(lab))
        ab = annealed_mean(logits, self.bins, self.config.decode_temperature)
        ab = F.interpolate(ab, size=lab.shape[-2:], mode="bilinear", align_corners=False)
        return lab_to_rgb(torch.cat([lab[:, :1], ab], dim=1))

    @torch.no_grad()
    def embed(self, images: Tensor) -> Tensor:
        """Pooled trunk features of the images' L channel."""
        return self.encoder(self.lightness_input(rgb_to_lab(images.float() / 255))).float()

    @torch.no_grad()
    def preview_views(self, images: Tensor) -> list[tuple[str, Tensor]]:
        """The crop, its L channel (all the encoder gets), and the ab target the loss scores
        at a quarter of the resolution, each pixel drawn in the colour of its most likely bin
        at a fixed lightness. Made by `lab_views` and `soft_encode`, as in `training_step`."""
        lab, ab = self.lab_views(images)  # (B, 3, S, S), (B, 2, S/4, S/4)
        target_bins = soft_encode(ab, self.bins).argmax(dim=1)  # (B, S/4, S/4)
        target_ab = self.bins[target_bins].permute(0, 3, 1, 2)  # (B, 2, S/4, S/4)
        grey = torch.cat([lab[:, :1], torch.zeros_like(lab[:, 1:])], dim=1)
        shown = torch.cat([torch.full_like(target_ab[:, :1], PREVIEW_LIGHTNESS), target_ab], dim=1)
        return [
            ("crop", _to_uint8(lab_to_rgb(lab))),
            ("L input", _to_uint8(lab_to_rgb(grey))),
            (f"ab target (bins at L {PREVIEW_LIGHTNESS:g})", _to_uint8(lab_to_rgb(shown))),
        ]

    def export(self, out_dir: Path) -> None:
        """colorized.png: one column per sample, rows grey input / prediction / original."""
        if self._samples is None:
            return
        from PIL import Image

        was_training = self.training
        self.eval()  # batch statistics of 8 images would disturb the running ones
        try:
            device = self.bins.device
            originals = self._samples.to(device)
            predicted = self.colorize(originals)
        finally:
            self.train(was_training)
        unit = originals.float() / 255
        lab = rgb_to_lab(unit)
        grey = lab_to_rgb(torch.cat([lab[:, :1], torch.zeros_like(lab[:, 1:])], dim=1))
        rows = torch.stack([grey, predicted, unit])  # (3, n, 3, H, W)
        scale = max(1, 64 // unit.shape[-1])  # small images are enlarged to be seen
        rows = F.interpolate(rows.flatten(0, 1), scale_factor=scale, mode="nearest")
        n, side = unit.shape[0], rows.shape[-1]
        grid = rows.view(3, n, 3, side, side).permute(0, 3, 1, 4, 2)  # (3, side, n, side, 3)
        pixels = (grid.reshape(3 * side, n * side, 3) * 255).round().byte().cpu().numpy()
        Image.fromarray(pixels).save(out_dir / "colorized.png")


def _to_uint8(rgb: Tensor) -> Tensor:
    return rgb.clamp(0, 1).mul(255).round().to(torch.uint8)
