"""DINO: self-distillation with no labels.

Caron, Touvron, Misra, Jegou, Mairal, Bojanowski, Joulin 2021, "Emerging Properties in
Self-Supervised Vision Transformers" (arXiv:2104.14294). A student network sees two global and
several small local crops of each image; a teacher, the exponential moving average of the
student, sees only the global crops. The teacher's outputs, centred (a running mean subtracted)
and sharpened (a low temperature), are the targets of the student's outputs on the other crops.
Centering alone would flatten the targets and sharpening alone would collapse them to one
dimension; together they train without negatives, labels or a predictor. With a ViT the
teacher's [CLS] attention comes to outline objects; the run's `pretrained/` folder is the
teacher's `ViTModel`, loadable with `attn_implementation="eager"` to read those maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import ViTConfig, ViTModel

from engine.config import TrainConfig, adam_beta2_param, param
from engine.data.presets import MultiCrop, augmentation_help
from engine.data.views import AUGMENTATIONS, AUTO, normalize
from engine.distributed import mean_across
from engine.errors import SpecError
from engine.losses.dino import dino_loss, updated_center
from engine.methods.base import TINY_PRESET, MethodCard, SSLMethod, views_to_uint8
from engine.models.ema import make_target, momentum_schedule, update_ema
from engine.models.resnet import CNN_BACKBONES, build_resnet
from engine.models.vit import VIT_SIZES, vit_dims
from engine.registry import register_method


@dataclass
class DINOConfig(TrainConfig):
    backbone: str = param(
        "vit-small",
        "Student and teacher architecture. ViTs give the "
        "attention maps DINO is known for; ResNets work too (the paper's "
        "ResNet-50 recipe uses SGD, lr 0.03 and wd 1e-4).",
        choices=sorted(VIT_SIZES) + list(CNN_BACKBONES),
        main=True,
    )
    depth: int = param(0, "ViT layers; 0 keeps the size's standard 12.", min=0)
    patch_size: int = param(
        16,
        "ViT patch side in pixels; image and local-crop sides must be "
        "multiples. Smaller patches give finer attention maps and cost "
        "more (the paper's /8 models beat /16).",
        min=1,
        main=True,
    )
    small_stem: bool = param(
        True,
        "ResNet only: one 3x3 stride-1 stem instead of the 7x7 "
        "stride-2 stem and max pool, for images under ~96 px.",
    )
    augmentation: str = param(
        AUTO,
        augmentation_help("DINO's colour jitter, grayscale, blur and solarisation"),
        choices=list(AUGMENTATIONS),
        main=True,
    )
    num_local_crops: int = param(
        8,
        "Small local crops per image besides the 2 global ones. "
        "More crops, better features (the paper's best: 10) at a "
        "proportional cost; 0 turns multi-crop off.",
        min=0,
        main=True,
    )
    local_crop_size: int = param(
        96,
        "Side of the local crops in pixels (96 for 224 px images "
        "in the paper); 0 picks 3/7 of image_size, rounded to the "
        "patch size.",
        min=0,
    )
    global_crop_min_scale: float = param(
        0.4,
        "Smallest share of the image a global crop "
        "covers; local crops cover up to this share. The "
        "paper's (0.4, 1) / (0.05, 0.4) split.",
        min=0.01,
        max=1.0,
    )
    local_crop_min_scale: float = param(
        0.05, "Smallest share of the image a local crop covers.", min=0.01, max=1.0
    )
    out_dim: int = param(
        65536,
        "Size K of the output distribution (prototypes). Large K "
        "helps on ImageNet; a few thousand is plenty for small datasets.",
        min=16,
    )
    head_hidden_dim: int = param(2048, "Hidden width of the 3-layer head MLP.", min=8)
    head_batch_norm: bool = param(
        False,
        "Batch norm after the head's two hidden layers (main_dino.py --use_bn_in_head; off in "
        "the paper's ViT runs). It standardises each feature over the batch, so images the "
        "backbone barely tells apart still get different outputs.",
    )
    bottleneck_dim: int = param(
        256, "Width of the l2-normalised bottleneck before the weight-normalised last layer.", min=8
    )
    norm_last_layer: bool = param(
        True,
        "Keep the last layer's weight norm fixed at 1. "
        "Stabler; turning it off gives better ViT-S features but "
        "can make training unstable.",
    )
    student_temperature: float = param(
        0.1, "Student softmax temperature tau_s.", min=0.0, exclusive_min=True
    )
    teacher_temperature: float = param(
        0.04,
        "Teacher temperature tau_t after its warm-up. "
        "Lower sharpens the targets (guards against uniform "
        "collapse); 0.04-0.07. If the loss does not fall, "
        "lower it.",
        min=0.0,
        exclusive_min=True,
        main=True,
    )
    warmup_teacher_temperature: float = param(
        0.04,
        "Teacher temperature at step 0; rises linearly to teacher_temperature.",
        min=0.0,
        exclusive_min=True,
    )
    warmup_teacher_temperature_steps: int = param(
        0, "Steps of the teacher-temperature warm-up (the paper: 30 epochs).", min=0
    )
    center_momentum: float = param(
        0.9,
        "Momentum of the centre (running mean of teacher "
        "outputs). Near 1 reacts slowly to the batch.",
        min=0.0,
        max=1.0,
    )
    teacher_momentum: float = param(
        0.996,
        "EMA momentum of the teacher at step 0, raised "
        "to 1 along a cosine. Closer to 1: slower, steadier "
        "teacher; short runs want less (0.99).",
        min=0.0,
        max=1.0,
        main=True,
    )
    freeze_last_layer_steps: int = param(
        0,
        "Keep the head's last layer fixed for the first "
        "steps (the paper: one epoch); helps stability.",
        min=0,
    )

    # DINO's main_dino.py builds torch.optim.AdamW with its default betas (0.9, 0.999).
    adam_beta2: float = adam_beta2_param(0.999)

    PRESETS = {
        # Digits at 32 px: ViT-Tiny with 4 layers, 4 px patches, 2 global crops of 32 px and
        # 4 local crops of 12 px; batch 64.
        "quick": dict(
            grad_clip=1.0,  # as bench/RESULTS.md measured the quick runs
            backbone="vit-tiny",
            depth=4,
            patch_size=4,
            image_size=32,
            batch_size=64,
            num_local_crops=4,
            local_crop_size=0,
            out_dim=4096,
            head_hidden_dim=512,
            lr=5e-4,
            weight_decay=0.04,
            warmup_steps=20,
            steps=300,
            teacher_momentum=0.99,
            checkpoint_every=100,
        ),
        # Paper, section 3/appendix and main_dino.py: ViT-S/16 at 224 px, 2 global + 8 local
        # crops of 96 px, batch 1024, AdamW lr 0.0005 x batch/256 with a 10-epoch warmup, wd
        # 0.04 (the paper raises it to 0.4 along a cosine; fixed here), tau_t 0.04 -> 0.07
        # over 30 epochs, momentum 0.996 -> 1, last layer frozen for 1 epoch; 100 epochs of
        # ImageNet (1251 steps each).
        "paper": dict(
            augmentation="natural",
            backbone="vit-small",
            patch_size=16,
            image_size=224,
            batch_size=1024,
            num_local_crops=8,
            local_crop_size=96,
            out_dim=65536,
            lr=2e-3,
            weight_decay=0.04,
            optimizer="adamw",
            steps=125_100,
            warmup_steps=12_510,
            warmup_teacher_temperature=0.04,
            teacher_temperature=0.07,
            warmup_teacher_temperature_steps=37_530,
            freeze_last_layer_steps=1251,
            grad_clip=3.0,  # main_dino.py --clip_grad 3.0: each parameter's gradient norm
            grad_clip_mode="per_parameter",
            checkpoint_every=5000,
        ),
        # Seconds on a CPU (the registry walk trains it): a smoke test, not a recipe.
        "tiny": dict(
            TINY_PRESET,
            backbone="vit-tiny",
            depth=1,
            patch_size=4,
            lr=5e-4,
            num_local_crops=2,
            local_crop_size=0,
            out_dim=256,
            head_hidden_dim=64,
            bottleneck_dim=32,
            teacher_momentum=0.99,
        ),
    }


def local_size(config: DINOConfig) -> int:
    """The local-crop side: as configured, or 3/7 of image_size (96/224) on the patch grid."""
    if config.local_crop_size:
        return config.local_crop_size
    step = config.patch_size if config.backbone in VIT_SIZES else 1
    return max(8, step, round(config.image_size * 3 / 7 / step) * step)


class DINOHead(nn.Module):
    """MLP, l2-normalised bottleneck, weight-normalised linear layer to K logits (DINO's
    `DINOHead`; batch norm after each hidden layer with `batch_norm`, its `use_bn`). The last
    layer's weight is g * v / |v| per output row, with g fixed at 1 when `norm_last_layer`."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int,
        bottleneck_dim: int,
        norm_last_layer: bool = True,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for dim in (in_dim, hidden_dim):
            layers.append(nn.Linear(dim, hidden_dim))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers, nn.Linear(hidden_dim, bottleneck_dim))
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        direction = nn.Linear(bottleneck_dim, out_dim, bias=False).weight.detach()
        self.last_direction = nn.Parameter(direction)  # v: (K, bottleneck)
        self.last_scale = nn.Parameter(torch.ones(out_dim, 1), requires_grad=not norm_last_layer)

    def forward(self, features: Tensor, freeze_last_layer: bool = False) -> Tensor:
        x = F.normalize(self.mlp(features), dim=-1)  # (N, bottleneck)
        direction = self.last_direction.detach() if freeze_last_layer else self.last_direction
        scale = self.last_scale.detach() if freeze_last_layer else self.last_scale
        weight = scale * direction / direction.norm(dim=1, keepdim=True)  # (K, bottleneck)
        return F.linear(x, weight)  # (N, K)


class DINONetwork(nn.Module):
    """Backbone + head; the backbone runs once per crop resolution (DINO's MultiCropWrapper)."""

    def __init__(self, backbone: nn.Module, head: DINOHead, is_vit: bool) -> None:
        super().__init__()
        self.backbone, self.head, self.is_vit = backbone, head, is_vit

    def features(self, pixels: Tensor) -> Tensor:
        """(N, 3, S, S) -> (N, D): the ViT's final [CLS] token or the ResNet's pooled map."""
        if self.is_vit:
            # Local crops have fewer patches than the position table: interpolate it.
            out = self.backbone(pixel_values=pixels, interpolate_pos_encoding=True)
            return out.last_hidden_state[:, 0]
        return self.backbone(pixels)

    def forward(self, crops: list[Tensor], freeze_last_layer: bool = False) -> Tensor:
        features = torch.cat([self.features(c) for c in crops if len(c)])  # (sum N, D)
        return self.head(features, freeze_last_layer)


def teacher_temperature(config: DINOConfig, step: int) -> float:
    """tau_t at 0-based `step`: linear warm-up, then constant."""
    warmup = config.warmup_teacher_temperature_steps
    if step >= warmup:
        return config.teacher_temperature
    start, end = config.warmup_teacher_temperature, config.teacher_temperature
    return start + (end - start) * step / max(1, warmup - 1)


@register_method("dino")
class DINO(SSLMethod):
    description = "Self-distillation: multi-crop student matches an EMA teacher (Caron et al. 2021)"
    paper = "arXiv:2104.14294"
    Config = DINOConfig
    unused_parameters = True  # the last layer is frozen for freeze_last_layer_steps
    card = MethodCard(
        title="DINO",
        authors="Caron, Touvron, Misra, Jegou, Mairal, Bojanowski, Joulin",
        year=2021,
        paper="arXiv:2104.14294",
        idea="A student network learns to predict, from any crop of an image, the output "
        "distribution a slowly averaged copy of itself gives on the large crops. "
        "Centering and sharpening the teacher's outputs keep this from collapsing without "
        "any negatives.",
        good_at="Strong frozen features (k-NN works well) and, with ViTs, [CLS] attention maps "
        "that segment objects with no labels; the small local crops teach "
        "local-to-global correspondence.",
        hyperparameters="Teacher temperature (lower sharpens; too high and the loss stalls); "
        "teacher momentum (higher is steadier but slower to improve); number "
        "and size of local crops (more is better and costs more); output size "
        "K; patch size for ViTs.",
    )

    @classmethod
    def check_config(cls, config: DINOConfig) -> None:
        if config.backbone in VIT_SIZES:
            for name, side in (
                ("image_size", config.image_size),
                ("local_crop_size", local_size(config)),
            ):
                if side % config.patch_size:
                    raise SpecError(
                        f"{name} {side} is not a multiple of patch_size "
                        f"{config.patch_size}; pick sizes that divide"
                    )
        if config.local_crop_min_scale > config.global_crop_min_scale:
            raise SpecError(
                "local_crop_min_scale must not exceed global_crop_min_scale "
                "(local crops cover between the two)"
            )
        if config.warmup_teacher_temperature_steps > config.steps:
            raise SpecError("warmup_teacher_temperature_steps is longer than the run")

    def __init__(self, config: DINOConfig, data_info: dict | None = None) -> None:
        super().__init__(config, data_info)
        self.check_config(config)
        self.crops = MultiCrop(
            config.augmentation,
            config.image_size,
            local_size(config),
            config.num_local_crops,
            global_scale=(config.global_crop_min_scale, 1.0),
            local_scale=(config.local_crop_min_scale, config.global_crop_min_scale),
        )
        is_vit = config.backbone in VIT_SIZES
        if is_vit:
            backbone = ViTModel(
                ViTConfig(
                    image_size=config.image_size,
                    patch_size=config.patch_size,
                    qkv_bias=True,
                    layer_norm_eps=1e-6,
                    **vit_dims(config.backbone, config.depth),
                ),
                add_pooling_layer=False,
            )
            feature_dim = backbone.config.hidden_size
        else:
            backbone, feature_dim = build_resnet(config.backbone, config.small_stem)
            self.channels_last = True  # the trainer converts conv nets to channels-last
        head = DINOHead(
            feature_dim,
            config.out_dim,
            config.head_hidden_dim,
            config.bottleneck_dim,
            config.norm_last_layer,
            config.head_batch_norm,
        )
        if config.head_batch_norm:
            self.sync_batch_norm = True  # over the global batch on N processes, as main_dino.py
        self.student = DINONetwork(backbone, head, is_vit)
        self.teacher = make_target(self.student)
        # Buffers, so a resumed job continues with the same centre and schedules. The centre
        # starts at zero, as main_dino.py's does. Started at the first batch's mean instead
        # (the studio's choice until issue #17's ninth session), it cancels the little a
        # random ViT's [CLS] tokens differ by, so the teacher was uniform from step 1 and the
        # run collapsed at once (effective rank 1.07). From zero, the first steps' sharp
        # targets break that symmetry: teacher entropy 7.1-7.5 of ln K 8.32 and rank 8-10
        # through the quick run (k-NN unchanged; bench/RESULTS.md).
        self.register_buffer("center", torch.zeros(1, config.out_dim))
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self._steps_done: int | None = None  # read from the buffer at the first step

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._steps_done = None  # a loaded `steps_done` is read again at the next step

    def training_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        # A Python mirror of the `steps_done` buffer: reading the buffer is a host sync per step.
        if self._steps_done is None:
            self._steps_done = int(self.steps_done)
        config, step = self.config, self._steps_done
        global_crops, local_crops = self.crops(batch["images"])  # (2B, 3, G, G), (nB, 3, L, L)
        global_crops = self.match_memory_format(global_crops)
        local_crops = self.match_memory_format(local_crops)
        batch_size = batch["images"].shape[0]
        with torch.no_grad():
            teacher_logits = self.teacher([global_crops])  # (2B, K)
        student_logits = self.student(
            [global_crops, local_crops], freeze_last_layer=step < config.freeze_last_layer_steps
        )
        temperature = teacher_temperature(config, step)
        with torch.no_grad():
            # The centre follows the global batch: the mean over every rank's rows.
            batch_mean = mean_across(teacher_logits.float().mean(dim=0, keepdim=True))  # (1, K)
        # A local mean over this rank's images: DDP's averaging of the gradients gives the
        # global batch's, and the loop logs the mean over the ranks.
        loss = dino_loss(
            student_logits.view(-1, batch_size, config.out_dim),
            teacher_logits.view(2, batch_size, config.out_dim),
            self.center,
            config.student_temperature,
            temperature,
        )
        with torch.no_grad():
            # Health: low teacher_entropy with high marginal entropy is the working regime;
            # both near log(out_dim) is collapse to uniform, both low collapse to one output.
            probs = F.softmax((teacher_logits.float() - self.center) / temperature, dim=-1)
            entropy = -(probs * probs.clamp(min=1e-12).log()).sum(dim=-1).mean()
            marginal = mean_across(probs.mean(dim=0))  # over the global batch
            marginal_entropy = -(marginal * marginal.clamp(min=1e-12).log()).sum()
            self.center.copy_(updated_center(self.center, batch_mean, config.center_momentum))
        return loss, {
            "teacher_entropy": entropy,
            "teacher_marginal_entropy": marginal_entropy,
            "teacher_temperature": torch.tensor(temperature),
        }

    def after_step(self, step: int, total_steps: int) -> None:
        momentum = momentum_schedule(step - 1, total_steps, self.config.teacher_momentum)
        update_ema(self.teacher, self.student, momentum)
        self.steps_done.fill_(step)
        self._steps_done = step

    @torch.no_grad()
    def preview_views(self, images: Tensor) -> list[tuple[str, Tensor]]:
        """The two global crops (teacher and student) and each local crop (student only), drawn
        by the same `MultiCrop` call as in `training_step`."""
        global_crops, local_crops = self.crops(images)  # (2B, 3, G, G), (nB, 3, L, L)
        batch = len(images)
        views = [
            (f"global crop {i + 1} (teacher, student)", global_crops[i * batch : (i + 1) * batch])
            for i in range(2)
        ]
        views += [
            (f"local crop {i + 1} (student)", local_crops[i * batch : (i + 1) * batch])
            for i in range(len(local_crops) // batch)
        ]
        return [(caption, views_to_uint8(crops)) for caption, crops in views]

    @torch.no_grad()
    def embed(self, images: Tensor) -> Tensor:
        """The teacher's features (the paper evaluates the teacher: it is the better network)."""
        return self.teacher.features(normalize(images)).float()

    def export(self, out_dir: Path) -> None:
        """The teacher ViT as a `ViTModel` in `pretrained/`. DINO's feature is the final [CLS]
        token (`last_hidden_state[:, 0]`); DINO trains no pooler, so it is saved as zeros,
        which lets the folder load with no missing weights."""
        if not self.teacher.is_vit:
            return
        backbone = self.teacher.backbone
        model = ViTModel(backbone.config, add_pooling_layer=True)
        missing, unexpected = model.load_state_dict(backbone.state_dict(), strict=False)
        if unexpected or not all(k.startswith("pooler.") for k in missing):
            raise RuntimeError(
                f"teacher and exported ViT differ: missing {missing}, unexpected {unexpected}"
            )
        nn.init.zeros_(model.pooler.dense.weight)
        nn.init.zeros_(model.pooler.dense.bias)
        model.save_pretrained(out_dir / "pretrained")
