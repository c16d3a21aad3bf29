"""Collapse and health metrics of an embedding, logged by the training loop as curves.

- `embedding_std`: the standard deviation over samples of the l2-normalised embeddings, averaged
  over dimensions (SimSiam, Chen & He 2021, arXiv:2011.10566, section 4.1 and figure 2): about
  1/sqrt(d) for well-spread embeddings, 0 when every input maps to one point. SimSiam measures
  its projector output, which ends in batch norm and so is centred; `embed` gives encoder
  features (after a ReLU and pooling for ResNets, all positive), whose common offset alone
  would keep the std far below 1/sqrt(d) even when healthy. So the batch mean is removed
  before normalising: the 1/sqrt(d) reference then holds for every encoder.
- `effective_rank`: RankMe (Garrido, Balestriero, Najman, LeCun 2023, arXiv:2210.02885): the
  exponential of the entropy of the normalised singular values; 1 for a collapsed embedding,
  up to min(N, d) for an isotropic one. Dimensional collapse shows here before the std moves.
- `alignment` and `uniformity` (Wang & Isola 2020, arXiv:2005.10242): E||f(x) - f(x')||^2 over
  positive pairs (two views of an image; lower is better) and log E exp(-2 ||f(x) - f(y)||^2)
  over all pairs (lower is more uniform on the sphere).

`HealthProbe` computes them every N steps on a fixed batch of training images with the
method's own `embed`, so every image method gets them without code of its own; text methods
(no image `embed`) are skipped.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.data.views import IMAGENET_MEAN, IMAGENET_STD, make_views
from engine.evaluation.knn import knn_scores, topk_accuracy

log = logging.getLogger(__name__)
PROBE_IMAGES = 256  # a fixed sample of the training set; RankMe wants N >= a few hundred
PROBE_PAIRS = 128  # images whose two views measure alignment
PROBE_SEED = 1234
MILD_CROP = (0.6, 1.0)  # milder than training crops: alignment should measure invariance


def embedding_std(z: Tensor) -> float:
    """Mean over dimensions of the per-dimension std of the rows of z (N, d), centred on their
    mean and l2-normalised (a collapsed z centres to zeros, which normalise to zeros)."""
    z = z.double()
    return F.normalize(z - z.mean(dim=0), dim=1).std(dim=0).mean().item()


def effective_rank(z: Tensor, eps: float = 1e-7) -> float:
    """RankMe of z (N, d): exp(entropy of singular values / their sum)."""
    sigma = torch.linalg.svdvals(z.double())
    if sigma.sum() <= 0:
        return 0.0
    p = sigma / sigma.sum() + eps
    return math.exp(-(p * p.log()).sum().item())


def alignment(z_a: Tensor, z_b: Tensor, alpha: float = 2.0) -> float:
    """Mean ||f(x) - f(x')||^alpha over positive pairs, rows l2-normalised."""
    a, b = F.normalize(z_a.double(), dim=1), F.normalize(z_b.double(), dim=1)
    return (a - b).norm(dim=1).pow(alpha).mean().item()


def uniformity(z: Tensor, t: float = 2.0) -> float:
    """log of the mean of exp(-t ||f(x) - f(y)||^2) over all pairs, rows l2-normalised."""
    zn = F.normalize(z.double(), dim=1)
    return torch.pdist(zn, p=2).pow(2).mul(-t).exp().mean().log().item()


def health_metrics(
    clean: Tensor, view_a: Tensor | None = None, view_b: Tensor | None = None
) -> dict[str, float]:
    """All four from embeddings of clean images (N, d) and of two views of some of them."""
    out = {
        "embedding_std": embedding_std(clean),
        "effective_rank": effective_rank(clean),
        "uniformity": uniformity(clean),
    }
    if view_a is not None and view_b is not None:
        out["alignment"] = alignment(view_a, view_b)
    return out


def to_uint8(views: Tensor) -> Tensor:
    """Undo the views' ImageNet normalisation: float (B, 3, S, S) -> uint8, what `embed` takes."""
    mean = torch.tensor(IMAGENET_MEAN, device=views.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, device=views.device)[:, None, None]
    return (views * std + mean).clamp_(0, 1).mul_(255).round_().to(torch.uint8)


def embed_rows(method: torch.nn.Module, images: Tensor, batch_size: int) -> Tensor:
    """`method.embed` of uint8 images (N, 3, H, W), `batch_size` at a time -> (N, d) float32
    on the CPU (the caller sets eval mode and no_grad)."""
    return torch.cat(
        [
            method.embed(images[i : i + batch_size]).float().cpu()
            for i in range(0, images.shape[0], batch_size)
        ]
    )


def has_image_embed(method_cls: type) -> bool:
    """Whether a method class embeds images (an image method that overrides `embed`)."""
    from engine.methods.base import SSLMethod

    return (
        getattr(method_cls, "modality", "image") == "image"
        and getattr(method_cls, "embed", None) is not SSLMethod.embed
    )


class HealthProbe:
    """Health metrics of a method's `embed` on a fixed batch of its training images.

    The batch and the views are fixed (seeded), so the curve moves only because the network
    does; the global RNG is forked so training draws the same views with or without the probe.
    """

    def __init__(
        self,
        images: Tensor,
        image_size: int,
        num_images: int = PROBE_IMAGES,
        num_pairs: int = PROBE_PAIRS,
    ) -> None:
        generator = torch.Generator().manual_seed(PROBE_SEED)
        index = torch.randperm(images.shape[0], generator=generator)[:num_images]
        self.images = images[index.to(images.device)]  # (n, 3, H, W) uint8
        self.num_pairs = min(num_pairs, self.images.shape[0])
        self.views = make_views("simclr", image_size, crop_scale=MILD_CROP)
        self.failed = False

    @classmethod
    def for_method(
        cls, method_cls: type, tensors: dict[str, Tensor], image_size: int
    ) -> HealthProbe | None:
        """A probe when the method embeds images and its data has them, else None."""
        images = tensors.get("images")
        if images is None or images.dtype != torch.uint8 or not has_image_embed(method_cls):
            return None
        return cls(images, image_size)

    @torch.no_grad()
    def __call__(self, method: torch.nn.Module, batch_size: int = 128) -> dict[str, float]:
        """The metrics now ({} if the method's embed failed once: logged, never fatal)."""
        if self.failed:
            return {}
        was_training = method.training
        device = self.images.device
        devices = [device] if device.type == "cuda" else []
        method.eval()
        try:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(PROBE_SEED)
                pairs = self.images[: self.num_pairs]
                view_a, view_b = to_uint8(self.views(pairs)), to_uint8(self.views(pairs))
                clean = embed_rows(method, self.images, batch_size)
                z_a = method.embed(view_a).float().cpu()
                z_b = method.embed(view_b).float().cpu()
            metrics = health_metrics(clean, z_a, z_b)
            return {k: v for k, v in metrics.items() if math.isfinite(v)}
        except Exception:  # a method whose embed cannot run here: no health curves, still trains
            log.exception("health metrics failed; they are turned off for this job")
            self.failed = True
            return {}
        finally:
            method.train(was_training)


KNN_BANK = 1000  # labelled training images the queries vote against
KNN_QUERIES = 250  # other training images, held out from the bank
KNN_SEED = 4321
KNN_BYTES = 64 * 2**20  # at most this much of copied images: ~450 rows at 224 px


class KnnProbe:
    """Online k-NN: the accuracy of a k-NN classifier (k 20, T 0.07, as the `knn` protocol) of
    `KNN_QUERIES` training images against `KNN_BANK` others (fewer where they would take more
    than `KNN_BYTES`, a fifth of them queries), with the method's `embed` as it is at that
    step. solo-learn and lightly's benchmarks monitor the same during training; the
    figure tracks the end-of-job k-NN, not equals it (a smaller bank, no test split).

    The rows are fixed (seeded) and disjoint, so the curve moves only because the network does;
    a failure is logged once and turns the probe off, never the job.
    """

    def __init__(self, images: Tensor, labels: Tensor, num_classes: int) -> None:
        generator = torch.Generator().manual_seed(KNN_SEED)
        count = images.shape[0]
        per_image = math.prod(images.shape[1:])  # bytes of one uint8 image
        rows = min(count, KNN_BANK + KNN_QUERIES, max(20, KNN_BYTES // per_image))
        queries = min(KNN_QUERIES, rows // 5)
        order = torch.randperm(count, generator=generator)
        query_rows, bank_rows = order[:queries], order[queries:rows]
        self.queries = images[query_rows.to(images.device)]  # (q, 3, H, W) uint8
        self.bank = images[bank_rows.to(images.device)]  # (b, 3, H, W) uint8
        self.query_labels = labels[query_rows].long().cpu()
        self.bank_labels = labels[bank_rows].long().cpu()
        self.num_classes = int(num_classes)
        self.failed = False

    @classmethod
    def for_method(
        cls, method_cls: type, tensors: dict[str, Tensor], labels: Tensor | None
    ) -> KnnProbe | None:
        """A probe when the method embeds images and the data has labels of two classes or
        more on enough rows (20), else None."""
        images = tensors.get("images")
        if (
            labels is None
            or images is None
            or images.dtype != torch.uint8
            or not has_image_embed(method_cls)
            or images.shape[0] < 20
            or labels.shape[0] != images.shape[0]
            or labels.unique().numel() < 2
        ):
            return None
        return cls(images, labels, int(labels.max()) + 1)

    @torch.no_grad()
    def __call__(self, method: torch.nn.Module, batch_size: int = 128) -> dict[str, float]:
        """{"online_knn_top1": accuracy} now ({} once the method's embed has failed)."""
        if self.failed:
            return {}
        was_training = method.training
        method.eval()
        try:
            bank = embed_rows(method, self.bank, batch_size)
            queries = embed_rows(method, self.queries, batch_size)
            scores = knn_scores(bank, self.bank_labels, queries, self.num_classes)
            top1 = topk_accuracy(scores, self.query_labels, 1, voted_only=True)
            return {"online_knn_top1": top1} if math.isfinite(top1) else {}
        except Exception:  # as HealthProbe: no curve, the job still trains
            log.exception("the online k-NN failed; it is turned off for this job")
            self.failed = True
            return {}
        finally:
            method.train(was_training)
