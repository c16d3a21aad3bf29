"""MoCo v2: momentum contrast with a queue of negatives.

He, Fan, Wu, Xie, Girshick 2020, "Momentum Contrast for Unsupervised Visual Representation
Learning" (CVPR 2020, arXiv:1911.05722), with the v2 changes of Chen, Fan, Girshick, He 2020,
"Improved Baselines with Momentum Contrastive Learning" (arXiv:2003.04297): an MLP projection
head, temperature 0.2, blur in the augmentation and a cosine learning-rate schedule.

A query encoder (trained) and a key encoder (its momentum average, never trained by gradient)
encode two views of each image; each query must pick its own key among the keys of the last
`queue_size` images, held in a queue. The queue decouples the number of negatives from the batch
size; the slowly moving key encoder keeps the keys in the queue consistent with each other.
Shuffling BN (section 3.3) is simulated on one device by running batch norm on `bn_splits`
separate chunks of the batch, with the keys shuffled across chunks. One departure from the
paper's code: the queue starts full of keys of random training images (`on_train_start`), not
random vectors, so the loss curve means something from the first step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine import distributed
from engine.config import param
from engine.errors import SpecError
from engine.losses.infonce import info_nce_loss
from engine.methods._two_view import TwoViewConfig, TwoViewMethod
from engine.methods.base import TINY_PRESET, MethodCard
from engine.models.ema import make_target, update_ema
from engine.models.heads import ProjectionHead
from engine.registry import register_method


@torch.no_grad()
def enqueue(queue: Tensor, pointer: Tensor, keys: Tensor) -> None:
    """Write `keys` (N, D) into the ring buffer `queue` (K, D) at `pointer` (a 1-element long
    tensor), wrapping around the end, and advance the pointer by N modulo K. Any N works: when
    N > K only the newest K keys survive, as if written one by one."""
    size, count = queue.shape[0], keys.shape[0]
    start = int(pointer)
    if count > size:
        start, keys = (start + count - size) % size, keys[-size:]
    slots = (start + torch.arange(keys.shape[0], device=queue.device)) % size
    queue[slots] = keys.to(queue.dtype)
    pointer.fill_((int(pointer) + count) % size)


@dataclass
class MoCoConfig(TwoViewConfig):
    queue_size: int = param(
        65536,
        "Negatives kept in the queue (K). More negatives help, as "
        "long as the queue stays smaller than the dataset: older keys of "
        "the same image would otherwise act as negatives. Paper: 65536 "
        "for ImageNet; 4096 is usual for CIFAR.",
        min=1,
        main=True,
    )
    temperature: float = param(
        0.2,
        "InfoNCE temperature: 0.07 in MoCo v1, 0.2 in v2 (with "
        "the MLP head). Lower sharpens the softmax over negatives.",
        min=0.0,
        exclusive_min=True,
        main=True,
    )
    momentum: float = param(
        0.999,
        "Key-encoder momentum m: key = m * key + (1 - m) * query "
        "after every step. The paper finds 0.99-0.9999 fine and 0.9 or "
        "0 (no momentum) unstable; for short runs 0.99 lets the keys "
        "keep up.",
        min=0.0,
        max=1.0,
    )
    projection_dim: int = param(
        128, "Output size of the MLP head (the space the loss compares in).", min=2
    )
    projection_hidden_dim: int = param(
        2048, "Hidden width of the MLP head (fc, ReLU, fc; no batch norm in MoCo v2).", min=2
    )
    projection_batch_norm: bool = param(
        False,
        "Batch norm after the head's hidden layer (fc, BN, ReLU, fc), as SimCLR's head and "
        "MoCo v3's (Chen, Xie, He 2021) have; MoCo v2's has none.",
    )
    bn_splits: int = param(
        8,
        "Batch norm runs on this many separate chunks of the batch "
        "(the 8 GPUs of the paper), keys shuffled across chunks: the "
        "one-device form of shuffling BN, which stops the model from "
        "recognising its positive key by batch statistics. 1 turns it "
        "off; batch_size must be a multiple.",
        min=1,
    )

    PRESETS = {
        # Tuned on `shapes` (bench/RESULTS.md, 2026-12-06; k-NN top-1, random twin 0.170):
        # v2's head as the paper has it, 500 steps: 0.161; 1400 steps (what 3 CPU minutes
        # buy): 0.211; + queue 256 and temperature 0.1: 0.222; + batch norm in the head (as
        # SimCLR's and MoCo v3's): 0.287 (+0.117), 152 s. The queue holds 4 batches: fewer,
        # fresher keys of a fast-moving encoder.
        "quick": dict(
            grad_clip=1.0,  # as bench/RESULTS.md measured the quick runs
            backbone="convnet",
            steps=1400,
            batch_size=64,
            lr=1e-3,
            image_size=32,
            warmup_steps=10,
            weight_decay=1e-4,
            queue_size=256,
            temperature=0.1,
            momentum=0.99,
            projection_hidden_dim=512,
            projection_batch_norm=True,
            bn_splits=2,
            checkpoint_every=200,
        ),
        # MoCo v2 (arXiv:2003.04297): ImageNet, ResNet-50, batch 256 on 8 GPUs, SGD lr 0.03,
        # weight decay 1e-4, cosine schedule, 200 epochs (800 for the best result), K 65536,
        # m 0.999, t 0.2, MLP 2048 -> 128.
        "paper": dict(
            augmentation="natural",
            backbone="resnet50",
            small_stem=False,
            image_size=224,
            steps=1_001_000,
            batch_size=256,
            lr=0.03,
            optimizer="sgd",
            weight_decay=1e-4,
            warmup_steps=0,
            queue_size=65536,
            momentum=0.999,
            temperature=0.2,
            projection_hidden_dim=2048,
            bn_splits=8,
            checkpoint_every=5000,
        ),
        # Seconds on a CPU (the registry walk trains it): a smoke test, not a recipe.
        "tiny": dict(
            TINY_PRESET,
            backbone="convnet",
            lr=1e-3,
            queue_size=128,
            momentum=0.99,
            projection_dim=32,
            projection_hidden_dim=128,
            bn_splits=2,
        ),
    }


@register_method("moco")
class MoCo(TwoViewMethod):
    description = (
        "Contrastive: momentum key encoder and a queue of negatives, MoCo v2 (He et al. 2020)"
    )
    paper = "arXiv:2003.04297"
    Config = MoCoConfig
    # Shuffling BN: batch norm per process (per chunk), never over the global batch.
    sync_batch_norm = False
    card = MethodCard(
        title="MoCo v2",
        authors="He, Fan, Wu, Xie, Girshick; Chen, Fan, Girshick, He",
        year=2020,
        paper="arXiv:1911.05722, arXiv:2003.04297",
        idea="Contrast each image's query against a long queue of keys from earlier batches "
        "instead of only the current batch. The keys come from a slow momentum copy of "
        "the encoder, so old and new keys in the queue stay comparable.",
        good_at="Many negatives at a small batch size: contrastive learning on one modest "
        "GPU (or a CPU) where SimCLR would need thousands of images per step.",
        hyperparameters="Queue size (more negatives, but keep it below the dataset size); "
        "key momentum (higher is more consistent but slower to follow); "
        "temperature (0.2 with the MLP head); batch-norm splits against "
        "the cheat through batch statistics.",
    )

    @classmethod
    def check_config(cls, config: MoCoConfig) -> None:
        if config.batch_size % config.bn_splits:
            raise SpecError(
                f"batch_size {config.batch_size} is not a multiple of bn_splits "
                f"{config.bn_splits}; change one of them"
            )
        processes = getattr(config, "processes", 1)
        if processes > 1 and config.bn_splits % processes:
            # Each rank runs bn_splits / N of the chunks: with a remainder the batch-norm
            # groups would differ from one process's and so would the loss.
            raise SpecError(
                f"bn_splits {config.bn_splits} does not divide over {processes} processes; "
                f"pick a multiple of {processes} (e.g. {processes * max(1, config.bn_splits // processes)})"
            )

    def __init__(self, config: MoCoConfig, data_info: dict | None = None) -> None:
        super().__init__(config, data_info)
        self.check_config(config)
        self.projection = ProjectionHead(
            self.feature_dim,
            config.projection_hidden_dim,
            config.projection_dim,
            num_layers=2,
            batch_norm=config.projection_batch_norm,
        )
        self.key_encoder = make_target(self.encoder)
        self.key_projection = make_target(self.projection)
        queue = F.normalize(torch.randn(config.queue_size, config.projection_dim), dim=1)
        self.register_buffer("queue", queue)  # (K, projection_dim) unit keys, oldest at pointer
        self.register_buffer("queue_pointer", torch.zeros(1, dtype=torch.long))
        self._new_keys: Tensor | None = None  # enqueued by after_step
        self._global_keys: Tensor | None = None  # the last encode_keys' keys of every rank

    def _split_bn_forward(self, encoder: nn.Module, views: Tensor) -> Tensor:
        """Encode in `bn_splits` chunks so each chunk gets its own batch-norm statistics. On
        N processes a rank holds 1/N of the global batch and so bn_splits / N of its chunks
        (batch norm stays per process, as in the paper's code: it is the point of the split)."""
        chunks = self.config.bn_splits
        if distributed.share_rows() is not None:
            chunks = max(1, chunks // distributed.world_size())
        return torch.cat([encoder(chunk) for chunk in views.chunk(chunks)])

    @torch.no_grad()
    def encode_keys(self, images: Tensor) -> Tensor:
        """uint8 (B, 3, H, W) -> (B, projection_dim) unit keys of one augmented view each,
        through the key encoder with batch norm split and shuffled as in training.

        During a step on N processes `images` are this rank's rows: the views of the global
        batch are gathered and shuffled with one permutation drawn as one process would, each
        rank encodes its share of the shuffled views (the paper's shuffling BN across GPUs),
        and the keys are gathered back; `self._global_keys` keeps them for the queue."""
        views = self.make_view(images, 1)
        share = distributed.share_rows()
        if share is None:
            shuffle = torch.randperm(images.shape[0], device=images.device)
            keys = self._split_bn_forward(self.key_encoder, views[shuffle])
            keys = self.key_projection(keys)[torch.argsort(shuffle)]
            self._global_keys = F.normalize(keys.float(), dim=1)
            return self._global_keys
        size, start, stop = share
        every = distributed.gather_detached(views)  # (global B, 3, S, S), rank order
        shuffle = torch.randperm(size, device=images.device)
        keys = self._split_bn_forward(self.key_encoder, every[shuffle][start:stop])
        keys = distributed.gather_detached(self.key_projection(keys))[torch.argsort(shuffle)]
        self._global_keys = F.normalize(keys.float(), dim=1)
        return self._global_keys[start:stop]

    @torch.no_grad()
    def on_train_start(self, tensors: dict[str, Tensor]) -> None:
        """Fill the queue with keys of random training images before the first step.

        The paper's code starts from random unit vectors; those are far easier negatives than
        real keys, so the loss first climbs for queue_size / batch_size steps as real keys
        replace them, which hides learning in short runs. From here on it is unchanged.
        """
        images = tensors["images"]
        size, count = self.config.queue_size, images.shape[0]
        picks = torch.randperm(count)[:size] if size <= count else torch.randint(0, count, (size,))
        batch = self.config.batch_size
        for start in range(0, size, batch):
            chunk = images[picks[start : start + batch].to(images.device)]
            if len(chunk) % self.config.bn_splits:  # the last chunk may not split evenly
                chunk = torch.cat([chunk, images[picks[: batch - len(chunk)].to(images.device)]])
            self.queue[start : start + batch] = self.encode_keys(chunk)[: size - start]

    def training_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        images = batch["images"]  # (B, 3, H, W) uint8
        query_views = self.make_view(images, 0)  # (B, 3, S, S)
        queries = self.projection(self._split_bn_forward(self.encoder, query_views))  # (B, d)
        # Keys are shuffled across the batch-norm chunks: the images a key is normalised with
        # are not the ones its query was normalised with.
        keys = self.encode_keys(images)  # (B, d)
        # A local mean: DDP's averaging of the ranks' gradients gives the global batch's.
        loss = info_nce_loss(queries, keys, self.queue, self.config.temperature)
        self._new_keys = self._global_keys  # every rank's keys, in global order
        with torch.no_grad():
            q = F.normalize(queries.detach().float(), dim=1)
            positive = (q * keys).sum(dim=1)  # (B,)
            hardest_negative = (q @ self.queue.T).max(dim=1).values  # (B,)
            accuracy = (positive > hardest_negative).float().mean()
        return loss, {"contrastive_acc": accuracy}

    def after_step(self, step: int, total_steps: int) -> None:
        update_ema(self.key_encoder, self.encoder, self.config.momentum)
        update_ema(self.key_projection, self.projection, self.config.momentum)
        if self._new_keys is not None:
            enqueue(self.queue, self.queue_pointer, self._new_keys)
            self._new_keys = None
