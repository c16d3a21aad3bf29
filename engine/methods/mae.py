"""MAE: masked autoencoders.

He, Chen, Xie, Li, Dollar, Girshick 2021, "Masked Autoencoders Are Scalable Vision Learners"
(arXiv:2111.06377). A random 75% of the patches is dropped; the ViT encoder sees only the
visible ones, a light decoder fills the mask tokens back in and predicts the pixels of the
hidden patches, normalised per patch. The model is transformers' `ViTMAEForPreTraining`, so a
run's `pretrained/` folder loads with `from_pretrained` like facebook/vit-mae-base.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from transformers import ViTMAEConfig, ViTMAEForPreTraining

from engine import distributed
from engine.config import TrainConfig, adam_beta2_param, param
from engine.data.views import make_views, normalize
from engine.errors import SpecError
from engine.losses.masked_mse import masked_patch_mse
from engine.methods.base import TINY_PRESET, MethodCard, SSLMethod, views_to_uint8
from engine.models.vit import VIT_SIZES, vit_dims
from engine.registry import register_method


@dataclass
class MAEConfig(TrainConfig):
    backbone: str = param(
        "vit-tiny",
        "ViT encoder size (hidden size, heads; see depth).",
        choices=sorted(VIT_SIZES),
        main=True,
    )
    depth: int = param(0, "Encoder layers; 0 keeps the size's standard 12.", min=0)
    patch_size: int = param(
        4,
        "Patch side in pixels; the image side must be a multiple. "
        "16 at 224 px in the paper, 2-4 for 32 px images.",
        min=1,
        main=True,
    )
    mask_ratio: float = param(
        0.75,
        "Share of patches hidden from the encoder. The paper "
        "finds 75% best for images; lower makes the task too easy.",
        min=0.0,
        max=0.95,
        main=True,
    )
    norm_pix_loss: bool = param(
        True,
        "Predict each patch normalised by its own mean and "
        "variance (better representations, paper table 1d).",
    )
    decoder_hidden_size: int = param(
        128,
        "Decoder width; the decoder is thrown away after pretraining, so it can be small.",
        min=8,
    )
    decoder_layers: int = param(2, "Decoder depth (the paper uses 8; 1 already works).", min=1)
    decoder_heads: int = param(4, "Decoder attention heads.", min=1)

    # MAE, appendix A.1 (table 8): AdamW beta1, beta2 = 0.9, 0.95.
    adam_beta2: float = adam_beta2_param(0.95)

    PRESETS = {
        # 32 px, 4 px patches (64 tokens, 16 visible), a 6-layer ViT-Tiny: 0.44 s a step on
        # two CPU cores; bf16 autocast is only 1.06x faster than fp32 here, but not slower.
        "quick": dict(
            grad_clip=1.0,  # as bench/RESULTS.md measured the quick runs
            # 450 steps (about 290 s): the reconstruction beats the better fill by 2.4-2.5 dB
            # (two seeds; 300 steps: 1.8-2.1), bench/RESULTS.md eighth session.
            steps=450,
            batch_size=128,
            lr=1.5e-3,
            image_size=32,
            depth=6,
            weight_decay=0.05,
            warmup_steps=20,
            checkpoint_every=100,
        ),
        # Paper, appendix A.1: ViT-B/16 at 224 px, batch 4096, AdamW(0.9, 0.95), base lr
        # 1.5e-4 x batch/256, weight decay 0.05, 40 warmup epochs of 1600 on ImageNet.
        "paper": dict(
            backbone="vit-base",
            image_size=224,
            patch_size=16,
            batch_size=4096,
            lr=2.4e-3,
            weight_decay=0.05,
            steps=500_000,
            warmup_steps=12_500,
            decoder_hidden_size=512,
            decoder_layers=8,
            decoder_heads=16,
            checkpoint_every=5000,
        ),
        # Seconds on a CPU (the registry walk trains it): a smoke test, not a recipe.
        "tiny": dict(
            TINY_PRESET,
            depth=1,
            patch_size=4,
            lr=1.5e-3,
            decoder_hidden_size=32,
            decoder_layers=1,
            decoder_heads=2,
        ),
    }


def init_position_tables(model: ViTMAEForPreTraining) -> None:
    """Give a freshly built ViTMAE the paper's init: the encoder's and the decoder's frozen
    2-D sin-cos position tables, the [CLS] and mask tokens drawn from N(0, 0.02), the patch
    projection Xavier-uniform (the MAE code's `initialize_weights`).

    transformers 5's `post_init` leaves both tables at zero: the encoder's sin-cos init returns
    early once the patch projection is marked initialised, and the decoder's `_init_weights`
    zeroes its table after the decoder filled it. The tables are frozen, so they stay zero, and
    the MAE sees its patches as an unordered bag: it cannot tell where a hidden patch is, and
    its reconstructions stop at a blur (bench/RESULTS.md, eighth session). A checkpoint keeps
    the tables it was trained with: a run started before this fix loads its zeros."""
    embeddings = model.vit.embeddings
    projection = embeddings.patch_embeddings.projection
    saved = getattr(projection, "_is_hf_initialized", False)
    projection._is_hf_initialized = False  # or initialize_weights() returns at once
    try:
        with torch.no_grad():
            embeddings.initialize_weights()
            model.decoder.initialize_weights(embeddings.patch_embeddings.num_patches)
    finally:
        projection._is_hf_initialized = saved


@register_method("mae")
class MAE(SSLMethod):
    description = (
        "Masked image modeling: reconstruct the pixels of 75% hidden patches (He et al. 2021)"
    )
    paper = "arXiv:2111.06377"
    Config = MAEConfig
    # Objects whose colours and shapes follow their class: the quick preset's ViT learns them
    # within its budget (even with labels it stays at chance on `shapes` for 300 steps). Quick
    # run on `scenes` (bench/RESULTS.md, eighth session): reconstruction 23.61 dB against the
    # fills' 21.09 and 20.89; k-NN 0.297 against its random twin's 0.254.
    default_dataset = "scenes"
    card = MethodCard(
        title="MAE",
        authors="He, Chen, Xie, Li, Dollar, Girshick",
        year=2021,
        paper="arXiv:2111.06377",
        idea="Hide most of an image's patches and ask a ViT to paint them back. The encoder "
        "only ever sees the visible quarter, so pretraining is cheap, and a throwaway "
        "decoder does the painting.",
        good_at="Scales to large ViTs with no augmentation engineering; its features shine "
        "after fine-tuning, less so frozen (k-NN and linear probes lag contrastive "
        "methods).",
        hyperparameters="Mask ratio (75% is the sweet spot for images: lower is too easy); "
        "patch size against image size; normalised-pixel targets; decoder "
        "depth and width (small is enough).",
    )

    @classmethod
    def check_config(cls, config: MAEConfig) -> None:
        if config.image_size % config.patch_size:
            raise SpecError(
                f"image_size {config.image_size} is not a multiple of patch_size "
                f"{config.patch_size}; pick sizes that divide"
            )
        if config.decoder_hidden_size % config.decoder_heads:
            raise SpecError(
                f"decoder_hidden_size {config.decoder_hidden_size} must be a "
                f"multiple of decoder_heads {config.decoder_heads}"
            )
        if int(config.mask_ratio * (config.image_size // config.patch_size) ** 2) < 1:
            raise SpecError("mask_ratio hides no patch at this image and patch size; raise it")

    def __init__(self, config: MAEConfig, data_info: dict | None = None) -> None:
        super().__init__(config, data_info)
        self.check_config(config)
        self.views = make_views("mae", config.image_size)
        self.model = ViTMAEForPreTraining(
            ViTMAEConfig(
                image_size=config.image_size,
                patch_size=config.patch_size,
                mask_ratio=config.mask_ratio,
                norm_pix_loss=config.norm_pix_loss,
                decoder_hidden_size=config.decoder_hidden_size,
                decoder_num_hidden_layers=config.decoder_layers,
                decoder_num_attention_heads=config.decoder_heads,
                decoder_intermediate_size=4 * config.decoder_hidden_size,
                **vit_dims(config.backbone, config.depth),
            )
        )
        init_position_tables(self.model)

    def training_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        with torch.no_grad():
            pixels = self.views(batch["images"])  # (B, 3, S, S)
        # The masking noise is drawn for the global batch (each rank keeps its rows), so a row's
        # mask does not depend on how many processes train; in one process this is the very
        # torch.rand call ViTMAE's random_masking would make.
        total, rows = distributed.draw_rows(len(pixels))
        grid = self.config.image_size // self.config.patch_size
        noise = distributed.local_rows(torch.rand(total, grid * grid), rows).to(pixels.device)
        out = self.model(pixel_values=pixels, noise=noise)
        # logits: (B, L, patch_size**2 * 3); mask: (B, L) with 1 on hidden patches.
        target = self.model.patchify(pixels)
        loss = masked_patch_mse(out.logits, target, out.mask, self.config.norm_pix_loss)
        return loss, {}

    @torch.no_grad()
    def embed(self, images: Tensor) -> Tensor:
        """Mean of the encoder's patch tokens with nothing masked and patches in order."""
        pixels = normalize(images)
        num_patches = (self.config.image_size // self.config.patch_size) ** 2
        noise = torch.arange(num_patches, device=pixels.device)
        noise = noise.float().expand(pixels.shape[0], -1)  # sorted noise keeps patch order
        encoder_config = self.model.vit.config
        saved, encoder_config.mask_ratio = encoder_config.mask_ratio, 0.0
        try:
            hidden = self.model.vit(pixel_values=pixels, noise=noise).last_hidden_state
        finally:
            encoder_config.mask_ratio = saved
        return hidden[:, 1:].mean(dim=1).float()  # (B, hidden_size), [CLS] dropped

    def export(self, out_dir: Path) -> None:
        self.model.save_pretrained(out_dir / "pretrained")

    @torch.no_grad()
    def preview_views(self, images: Tensor) -> list[tuple[str, Tensor]]:
        """The cropped view and the masked input the encoder sees (hidden patches grey), the
        mask drawn by the model's own `random_masking`, as in `training_step`."""
        pixels = self.views(images)  # (B, 3, S, S)
        batch, patch = len(pixels), self.config.patch_size
        grid = self.config.image_size // patch
        tokens = pixels.new_zeros(batch, grid * grid, 1)  # only the count and order matter
        _, mask, _ = self.model.vit.embeddings.random_masking(tokens)  # (B, L), 1 = hidden
        hidden = (
            mask.view(batch, 1, grid, grid)
            .repeat_interleave(patch, 2)
            .repeat_interleave(patch, 3)
            .bool()
        )  # (B, 1, S, S)
        view = views_to_uint8(pixels)
        visible = grid * grid - int(mask[0].sum())
        return [
            ("view (crop, flip)", view),
            (f"encoder input: {visible}/{grid * grid} patches", view.masked_fill(hidden, 128)),
        ]
