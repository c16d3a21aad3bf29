"""BEiT: BERT-style masked image modeling on discrete visual tokens.

Bao, Dong, Piao, Wei 2021, "BEiT: BERT Pre-Training of Image Transformers" (arXiv:2106.08254).
Each image patch has a discrete visual token; about 40% of the patches, in blocks, are replaced
by a learned [MASK] embedding, and a ViT predicts the tokens of the hidden patches (cross-entropy
over the vocabulary). The paper's tokens come from a pretrained dVAE (DALL-E's); offline there is
none, so this studio fits a k-means codebook over normalised patches of the training set at the
start of the job (engine.models.codebook), saves it in the run folder and with every checkpoint,
and uses the nearest code of each patch as its token. The model is transformers'
`BeitForMaskedImageModeling`, so `pretrained/` loads with `from_pretrained`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from transformers import BeitConfig, BeitForMaskedImageModeling

from engine import distributed
from engine.config import TrainConfig, adam_beta2_param, param
from engine.data.masking import blockwise_mask
from engine.data.views import IMAGENET_MEAN, IMAGENET_STD, make_views, normalize
from engine.errors import SpecError
from engine.losses.masked_token_ce import masked_token_cross_entropy
from engine.methods.base import TINY_PRESET, MethodCard, SSLMethod, TrainData, views_to_uint8
from engine.models.codebook import assign_codes, fit_codebook, normalise_patches, patchify
from engine.models.vit import VIT_SIZES, vit_dims
from engine.registry import register_method

TOKENIZER_FILE = "visual_tokenizer.safetensors"
MAX_TOKENIZER_PATCHES = 65536


@dataclass
class BEiTConfig(TrainConfig):
    backbone: str = param(
        "vit-base",
        "ViT encoder size (hidden size, heads; see depth).",
        choices=sorted(VIT_SIZES),
        main=True,
    )
    depth: int = param(0, "Encoder layers; 0 keeps the size's standard 12.", min=0)
    patch_size: int = param(
        16,
        "Patch side in pixels; the image side must be a multiple. "
        "16 at 224 px in the paper, 4 for 32 px images.",
        min=1,
        main=True,
    )
    mask_ratio: float = param(
        0.383,
        "Share of patches masked, in blocks (rounded to whole patches). The paper masks "
        "75 of 196 patches (0.383; it calls it about 40%).",
        min=0.01,
        max=0.95,
        main=True,
    )
    min_block_patches: int = param(
        0,
        "Smallest masking block in patches (the paper: 16 of a "
        "14x14 grid); 0 scales that to the grid.",
        min=0,
    )
    codebook_size: int = param(
        8192,
        "Visual vocabulary: k-means codes fitted on the dataset's "
        "patches (the paper's dVAE has 8192). Small datasets and "
        "small patches need far fewer; too many and codes become "
        "arbitrary, too few and the task is easy.",
        min=2,
        main=True,
    )
    position_encoding: str = param(
        "shared_relative",
        "Position information: a relative "
        "position bias shared by all layers (the paper's "
        "pretraining) or learned absolute embeddings (as in ViT).",
        choices=["shared_relative", "absolute"],
    )
    layer_scale_init: float = param(
        0.1,
        "LayerScale initial value of each residual branch (the paper: 0.1; 0 turns it off).",
        min=0.0,
    )
    drop_path_rate: float = param(
        0.1, "Stochastic depth rate of the last layer (the paper: 0.1).", min=0.0, max=0.9
    )

    # BEiT, appendix (pre-training hyperparameters): Adam beta1 0.9, beta2 0.999.
    adam_beta2: float = adam_beta2_param(0.999)

    PRESETS = {
        # 32 px images: ViT-Tiny with 6 layers, 4 px patches (8 x 8 grid, 25 masked in
        # blocks of >= 5), 256 codes, absolute positions, batch 64. On `scenes` (the default
        # dataset) k-NN +0.168 over the random twin in 209 s (bench/RESULTS.md).
        "quick": dict(
            grad_clip=1.0,  # as bench/RESULTS.md measured the quick runs
            backbone="vit-tiny",
            depth=6,
            patch_size=4,
            image_size=32,
            batch_size=64,
            codebook_size=256,
            position_encoding="absolute",
            drop_path_rate=0.0,
            lr=1.5e-3,
            weight_decay=0.05,
            steps=300,
            warmup_steps=20,
            checkpoint_every=100,
        ),
        # Paper, section 2.5 / appendix: ViT-B/16 at 224 px, batch 2048, AdamW lr 1.5e-3
        # (betas 0.9, 0.999), wd 0.05, 10 warmup epochs, 500k steps (800 epochs of
        # ImageNet-1k), 75 of 196 patches masked in blocks of >= 16, 8192 tokens, shared
        # relative position bias, LayerScale 0.1, stochastic depth 0.1.
        "paper": dict(
            backbone="vit-base",
            image_size=224,
            patch_size=16,
            batch_size=2048,
            lr=1.5e-3,
            weight_decay=0.05,
            steps=500_000,
            warmup_steps=6250,
            mask_ratio=0.383,  # BEiT's num_masking_patches=75 of 196
            min_block_patches=16,
            codebook_size=8192,
            position_encoding="shared_relative",
            layer_scale_init=0.1,
            drop_path_rate=0.1,
            grad_clip=3.0,  # BEiT's appendix: gradient clipping 3.0 (global norm, timm)
            checkpoint_every=5000,
        ),
        # Seconds on a CPU (the registry walk trains it): a smoke test, not a recipe.
        "tiny": dict(
            TINY_PRESET,
            backbone="vit-tiny",
            depth=1,
            patch_size=4,
            codebook_size=16,
            position_encoding="absolute",
            drop_path_rate=0.0,
            lr=1.5e-3,
        ),
    }


def grid_side(config: BEiTConfig) -> int:
    return config.image_size // config.patch_size


def num_masked(config: BEiTConfig) -> int:
    """mask_ratio of the grid, rounded: 0.383 of 14 x 14 is the paper's 75."""
    return round(config.mask_ratio * grid_side(config) ** 2)


def min_block(config: BEiTConfig) -> int:
    """The paper's 16 patches of 196, scaled to this grid unless set."""
    return config.min_block_patches or max(1, round(16 * grid_side(config) ** 2 / 196))


def init_as_beit_code(model: BeitForMaskedImageModeling) -> None:
    """The BEiT code's init where transformers' differs (its pretraining model,
    modeling_pretrain.py): the [CLS] and mask tokens and the absolute position table drawn from
    a truncated normal of std 0.02 (transformers starts them at zero), and each block's
    attention output and second MLP weights divided by sqrt(2 x its depth), so a deep stack
    starts with small residual updates (`fix_init_weight`)."""
    embeddings = model.beit.embeddings
    with torch.no_grad():
        for tensor in (embeddings.cls_token, embeddings.mask_token, embeddings.position_embeddings):
            if tensor is not None:
                torch.nn.init.trunc_normal_(tensor, std=0.02)
        for depth, layer in enumerate(model.beit.layers, start=1):
            layer.attention.o_proj.weight.div_(math.sqrt(2.0 * depth))
            layer.mlp.fc2.weight.div_(math.sqrt(2.0 * depth))


@register_method("beit")
class BEiT(SSLMethod):
    description = (
        "Masked image modeling: predict the visual tokens of masked patches (Bao et al. 2021)"
    )
    paper = "arXiv:2106.08254"
    Config = BEiTConfig
    # Objects whose colours and shapes follow their class: the quick preset's ViT-tiny learns
    # `scenes` within its budget (even with labels it stays at chance on `shapes` for 300
    # steps). Quick run on `scenes`: k-NN 0.389 against its random twin's 0.217 in 195 s
    # (bench/RESULTS.md, eighth session); on `shapes` 0.134 against 0.103 (sixth).
    default_dataset = "scenes"
    card = MethodCard(
        title="BEiT",
        authors="Bao, Dong, Piao, Wei",
        year=2021,
        paper="arXiv:2106.08254",
        idea="Turn every image patch into a word from a visual vocabulary, hide blocks of "
        "patches and have a ViT name the hidden words, as BERT does with text. Predicting "
        "discrete tokens rather than raw pixels keeps the model from spending itself on "
        "high-frequency detail.",
        good_at="Pretraining ViTs for fine-tuning (classification, segmentation) with no "
        "augmentation engineering; frozen features are weaker than contrastive ones. "
        "Here the vocabulary is a k-means codebook of the dataset's own patches.",
        hyperparameters="Mask ratio (40% in blocks; random masking or much more hurts); "
        "vocabulary size (codebook_size); patch size against image size; "
        "LayerScale and stochastic depth for stability of deep models.",
    )

    @classmethod
    def check_config(cls, config: BEiTConfig) -> None:
        if config.image_size % config.patch_size:
            raise SpecError(
                f"image_size {config.image_size} is not a multiple of patch_size "
                f"{config.patch_size}; pick sizes that divide"
            )
        if grid_side(config) < 2:
            raise SpecError("patch_size leaves fewer than 2x2 patches; use smaller patches")
        if num_masked(config) < 1:
            raise SpecError("mask_ratio masks no patch at this image and patch size; raise it")

    @classmethod
    def load_data(
        cls,
        dataset: str,
        config: BEiTConfig,
        run_dir: Path | None = None,
        cache_dir: Path | None = None,
    ) -> TrainData:
        """The images, and the codebook in `info["codebook"]`: read from the run folder when
        the job resumes, else fitted (seeded by torch's seed, which the trainer sets from the
        job's seed) and saved there."""
        cls.check_config(config)
        data = super().load_data(dataset, config, run_dir, cache_dir)
        path = Path(run_dir) / TOKENIZER_FILE if run_dir is not None else None
        dim = config.patch_size**2 * 3
        if path is not None and path.exists():
            codebook = load_file(path)["codebook"]
            if codebook.shape == (config.codebook_size, dim):
                data.info["codebook"] = codebook
                return data
        seed = torch.initial_seed()
        images = data.tensors["images"]
        per_image = grid_side(config) ** 2
        keep = min(len(images), -(-MAX_TOKENIZER_PATCHES // per_image))
        chosen = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:keep]
        patches = normalise_patches(patchify(images[chosen].float() / 255, config.patch_size))
        try:
            codebook = fit_codebook(patches.reshape(-1, dim), config.codebook_size, seed=seed)
        except ValueError as exc:
            raise SpecError(f"{exc} (codebook_size for dataset {dataset!r})") from None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file(
                {"codebook": codebook.contiguous()},
                str(path),
                metadata={"patch_size": str(config.patch_size), "seed": str(seed)},
            )
        data.info["codebook"] = codebook
        return data

    def __init__(self, config: BEiTConfig, data_info: dict | None = None) -> None:
        super().__init__(config, data_info)
        self.check_config(config)
        self.views = make_views("beit", config.image_size)
        shared = config.position_encoding == "shared_relative"
        self.model = BeitForMaskedImageModeling(
            BeitConfig(
                vocab_size=config.codebook_size,
                image_size=config.image_size,
                patch_size=config.patch_size,
                use_mask_token=True,
                use_absolute_position_embeddings=not shared,
                use_shared_relative_position_bias=shared,
                layer_scale_init_value=config.layer_scale_init,
                drop_path_rate=config.drop_path_rate,
                use_mean_pooling=True,
                **vit_dims(config.backbone, config.depth),
            )
        )
        init_as_beit_code(self.model)
        codebook = self.data_info.get("codebook")
        if codebook is None:  # filled in by a checkpoint
            codebook = torch.zeros(config.codebook_size, config.patch_size**2 * 3)
        self.register_buffer("codebook", codebook.float().clone())
        self.register_buffer(
            "pixel_mean", torch.tensor(IMAGENET_MEAN)[:, None, None], persistent=False
        )
        self.register_buffer(
            "pixel_std", torch.tensor(IMAGENET_STD)[:, None, None], persistent=False
        )

    @torch.no_grad()
    def visual_tokens(self, pixels: Tensor) -> Tensor:
        """Normalised views (B, 3, S, S) -> the code of each patch (B, L)."""
        unit = pixels.float() * self.pixel_std + self.pixel_mean  # back to [0, 1]
        patches = normalise_patches(patchify(unit, self.config.patch_size))  # (B, L, P)
        return assign_codes(patches.flatten(0, 1), self.codebook).view(patches.shape[:2])

    def draw_mask(self, pixels: Tensor) -> Tensor:
        """Blockwise masks for the views (B, 3, S, S): (B, L) bool, True = masked, row-major."""
        side = grid_side(self.config)
        total, rows = distributed.draw_rows(len(pixels))  # the global batch's masks, our rows
        masks = blockwise_mask(
            total, side, side, num_masked(self.config), min_block=min_block(self.config)
        )
        return distributed.local_rows(masks, rows).to(pixels.device)

    def training_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        with torch.no_grad():
            pixels = self.views(batch["images"])  # (B, 3, S, S)
            codes = self.visual_tokens(pixels)  # (B, L)
            mask = self.draw_mask(pixels)  # (B, L)
        logits = self.model(pixel_values=pixels, bool_masked_pos=mask).logits  # (B, L, V)
        loss = masked_token_cross_entropy(logits, codes, mask)
        with torch.no_grad():
            accuracy = (logits[mask].argmax(dim=-1) == codes[mask]).float().mean()
        return loss, {"token_acc": accuracy, "mask_ratio": mask.float().mean()}

    @torch.no_grad()
    def embed(self, images: Tensor) -> Tensor:
        """Mean of the final patch tokens, layer-normalised, nothing masked."""
        hidden = self.model.beit(pixel_values=normalize(images)).last_hidden_state
        return self.model.layernorm(hidden[:, 1:]).mean(dim=1).float()  # (B, hidden_size)

    @torch.no_grad()
    def preview_views(self, images: Tensor) -> list[tuple[str, Tensor]]:
        """The augmented view and the model's input with the masked patches grey (there the
        ViT gets the [MASK] embedding instead of the patch), the blocks drawn by `draw_mask`
        as in `training_step`."""
        pixels = self.views(images)  # (B, 3, S, S)
        mask = self.draw_mask(pixels)  # (B, L)
        patch, side = self.config.patch_size, grid_side(self.config)
        hidden = (
            mask.view(len(pixels), 1, side, side)
            .repeat_interleave(patch, 2)
            .repeat_interleave(patch, 3)
        )  # (B, 1, S, S)
        view = views_to_uint8(pixels)
        return [
            ("view (crop, flip, jitter)", view),
            (
                f"input: {num_masked(self.config)}/{side * side} patches masked in blocks",
                view.masked_fill(hidden, 128),
            ),
        ]

    def export(self, out_dir: Path) -> None:
        self.model.save_pretrained(out_dir / "pretrained")
        save_file(
            {"codebook": self.codebook.contiguous()},
            str(out_dir / TOKENIZER_FILE),
            metadata={"patch_size": str(self.config.patch_size)},
        )
