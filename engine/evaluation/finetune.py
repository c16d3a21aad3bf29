"""Fine-tuning with scarce labels: the encoder and a linear head trained end to end on a small,
stratified share of the labels, against the same network trained from scratch on the same labels.

This is the semi-supervised protocol of SimCLR (Chen et al. 2020, section 6 and appendix B.5:
1% and 10% of the ImageNet labels) and SimCLR v2; it is where pretraining on unlabelled data
pays off most. The network is the method's own: its `embed` (called without its no_grad
decorator, so gradients flow) followed by `nn.Linear`. Kept cheap for a CPU: a fixed number of
AdamW steps, random translations as the only augmentation (flips would change some classes,
e.g. digits), the job's image size and precision.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine import hardware
from engine.errors import JobError
from engine.evaluation.sampling import stratified_fraction
from engine.methods.base import SSLMethod
from engine.optim import warmup_cosine

Progress = Callable[[float, str], None]


@dataclass
class FinetuneSettings:
    fractions: Sequence[float] = (0.01, 0.1)  # shares of the training labels, per class
    steps: int = 60  # optimizer steps per run (two runs per fraction)
    batch_size: int = 32
    lr: float = 3e-4  # encoder; the fresh head gets head_lr_scale times more
    head_lr_scale: float = 10.0
    weight_decay: float = 1e-4
    warmup_steps: int = 5
    seed: int = 0
    precision: str = "fp32"  # "bf16" autocasts the forward pass; "auto" where it is native


def fraction_key(fraction: float) -> str:
    """0.01 -> "1pct", 0.1 -> "10pct", 0.005 -> "0.5pct"."""
    return f"{fraction * 100:g}pct"


class EmbedClassifier(nn.Module):
    """The method's `embed`, with gradients, then a linear head: uint8 images -> logits."""

    def __init__(self, method: SSLMethod, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.method = method
        self.head = nn.Linear(feature_dim, num_classes)
        embed = type(method).embed
        self._embed = getattr(embed, "__wrapped__", embed)  # past @torch.no_grad()

    def forward(self, images: Tensor) -> Tensor:
        features = self._embed(self.method, images)  # (B, D)
        return self.head(features.float())


def random_translate(images: Tensor, generator: torch.Generator) -> Tensor:
    """Shift each uint8 image (B, 3, S, S) by up to S/8 pixels, edges replicated."""
    size = images.shape[-1]
    pad = max(1, size // 8)
    padded = F.pad(images.float(), (pad, pad, pad, pad), mode="replicate")
    offsets = torch.randint(0, 2 * pad + 1, (images.shape[0], 2), generator=generator)
    out = torch.stack(
        [padded[i, :, y : y + size, x : x + size] for i, (y, x) in enumerate(offsets.tolist())]
    )
    return out.to(torch.uint8)


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def _accuracy(
    model: EmbedClassifier,
    images: Tensor,
    labels: Tensor,
    device: torch.device,
    autocast: bool,
    batch_size: int = 256,
) -> float:
    model.eval()
    correct = 0
    for start in range(0, images.shape[0], batch_size):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(images[start : start + batch_size].to(device))
        correct += (logits.argmax(dim=1).cpu() == labels[start : start + batch_size]).sum().item()
    return correct / max(1, images.shape[0])


def train_classifier(
    method: SSLMethod,
    train_images: Tensor,
    train_labels: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    num_classes: int,
    settings: FinetuneSettings,
    on_progress: Progress | None = None,
) -> float:
    """Train `method`'s encoder + a linear head on the given labels; test top-1."""
    device = _device()
    autocast = hardware.use_bf16(settings.precision, device)
    method.to(device)
    with torch.no_grad():
        method.eval()
        feature_dim = method.embed(train_images[:2].to(device)).shape[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = EmbedClassifier(method, feature_dim, num_classes).to(device)
    with torch.enable_grad():
        probe = model._embed(method, train_images[:2].to(device))
    if not probe.requires_grad:
        raise ValueError(
            f"{type(method).__name__}.embed detaches its output, so its encoder "
            f"cannot be fine-tuned through it"
        )
    encoder_params = [p for p in method.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [
            {"params": encoder_params, "lr": settings.lr},
            {"params": model.head.parameters(), "lr": settings.lr * settings.head_lr_scale},
        ],
        weight_decay=settings.weight_decay,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(settings.warmup_steps, settings.steps)
    )
    generator = torch.Generator().manual_seed(settings.seed)
    batch_size = min(settings.batch_size, train_images.shape[0])
    order = torch.empty(0, dtype=torch.long)
    model.train()
    for step in range(settings.steps):
        if len(order) < batch_size:
            order = torch.cat([order, torch.randperm(train_images.shape[0], generator=generator)])
        index, order = order[:batch_size], order[batch_size:]
        images = random_translate(train_images[index], generator).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(images)
        loss = F.cross_entropy(logits.float(), train_labels[index].to(device))
        if not math.isfinite(loss.item()):
            raise JobError(f"fine-tuning loss became {loss.item()} at step {step + 1}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if on_progress is not None:
            on_progress((step + 1) / (settings.steps + 1), "fine-tuning")
    return _accuracy(model, test_images, test_labels, device, autocast)


def finetune(
    makers: dict[str, Callable[[], SSLMethod]],
    train_images: Tensor,
    train_labels: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    num_classes: int,
    settings: FinetuneSettings,
    on_progress: Progress | None = None,
) -> dict[str, dict[str, float]]:
    """Fine-tune each network of `makers` (name -> a fresh network, e.g. "pretrained" and
    "scratch") on each fraction of the labels; the same labels for every network.

    Returns {"1pct": {"fraction", "num_labels", "pretrained_top1", "scratch_top1"}, ...}.
    """
    out: dict[str, dict[str, float]] = {}
    runs = len(makers) * len(settings.fractions)
    run = 0
    for fraction in settings.fractions:
        generator = torch.Generator().manual_seed(settings.seed)
        index = stratified_fraction(train_labels, float(fraction), generator)
        row: dict[str, float] = {"fraction": float(fraction), "num_labels": len(index)}
        for name, make in makers.items():
            part = (
                None
                if on_progress is None
                else (
                    lambda f, text, run=run, name=name, fraction=fraction: on_progress(
                        (run + f) / runs,
                        f"fine-tuning {name} on {fraction_key(fraction)} of the labels",
                    )
                )
            )
            row[f"{name}_top1"] = train_classifier(
                make(),
                train_images[index],
                train_labels[index],
                test_images,
                test_labels,
                num_classes,
                settings,
                part,
            )
            run += 1
        out[fraction_key(float(fraction))] = row
    return out
