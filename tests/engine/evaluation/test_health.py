"""Collapse metrics on collapsed and isotropic embeddings; the probe on a real method; the
online k-NN probe."""

import math

import torch

from engine.evaluation.health import (
    HealthProbe,
    KnnProbe,
    alignment,
    effective_rank,
    embedding_std,
    has_image_embed,
    health_metrics,
    uniformity,
)


def test_collapsed_embedding():
    z = torch.randn(1, 64).expand(500, 64)  # every row the same
    assert embedding_std(z) < 1e-6
    assert abs(effective_rank(z) - 1.0) < 1e-2
    assert alignment(z, z) == 0.0
    assert abs(uniformity(z)) < 1e-9  # every pair at distance 0: log(mean(exp(0))) = 0


def test_isotropic_gaussian():
    d = 64
    z = torch.randn(4000, d, generator=torch.Generator().manual_seed(0))
    assert abs(embedding_std(z) - 1 / math.sqrt(d)) < 0.01
    assert d * 0.9 < effective_rank(z) <= d
    # Uniform on the sphere: E||x - y||^2 = 2, so uniformity is near log(exp(-4)) = -4 or
    # above (Jensen); far below the collapsed 0.
    assert -4.0 < uniformity(z[:1000]) < -3.0
    metrics = health_metrics(z[:500], z[:500], z[:500] + 0.01)
    assert set(metrics) == {"embedding_std", "effective_rank", "uniformity", "alignment"}
    assert metrics["alignment"] < 1e-3


def test_dimensional_collapse_shows_in_the_rank():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1000, 4, generator=g) @ torch.randn(4, 64, generator=g)  # rank 4 in 64 dims
    assert effective_rank(z) < 4.5


class TextLike(torch.nn.Module):
    modality = "text"


def test_probe_runs_on_a_real_method_and_restores_its_mode():
    from engine.config import build_config
    from engine.registry import get_method

    cls = get_method("simclr")
    config = build_config(cls.Config, "quick", {"image_size": 16, "backbone": "resnet18"})
    method = cls(config, {})
    images = torch.randint(0, 256, (40, 3, 16, 16), dtype=torch.uint8)
    probe = HealthProbe.for_method(cls, {"images": images}, 16)
    assert probe is not None and probe.images.shape[0] == 40
    rng = torch.get_rng_state()
    method.train()
    first = probe(method)
    assert method.training
    assert torch.equal(rng, torch.get_rng_state())  # training's random stream untouched
    assert set(first) == {"embedding_std", "effective_rank", "uniformity", "alignment"}
    assert first == probe(method)  # a fixed batch and fixed views
    assert HealthProbe.for_method(TextLike, {"images": images}, 16) is None
    assert not has_image_embed(TextLike) and has_image_embed(cls)


class Embedder(torch.nn.Module):
    """An image method whose `embed` is a function of the images (a class code in pixel 0)."""

    modality = "image"

    def __init__(self, embed) -> None:
        super().__init__()
        self._embed = embed

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self._embed(images)


def labelled_images(count: int = 400, classes: int = 4):
    labels = torch.arange(count) % classes
    images = torch.randint(0, 256, (count, 3, 8, 8), dtype=torch.uint8)
    images[:, 0, 0, 0] = (labels * 60).to(torch.uint8)  # the class, readable from one pixel
    return images, labels


def one_hot_of_pixel(images: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot(images[:, 0, 0, 0].long() // 60, 4).float()


def test_online_knn_reads_the_encoder_as_it_is_and_restores_its_mode():
    images, labels = labelled_images()
    probe = KnnProbe.for_method(Embedder, {"images": images}, labels)
    assert probe is not None
    # 80 queries (a fifth of 400) against the other 320, disjoint.
    assert probe.queries.shape[0] == 80 and probe.bank.shape[0] == 320
    method = Embedder(one_hot_of_pixel).train()
    rng = torch.get_rng_state()
    assert probe(method) == {"online_knn_top1": 1.0}  # features that are the class
    assert method.training and torch.equal(rng, torch.get_rng_state())
    # Features that ignore the class: every query gets the same votes and the same answer,
    # right exactly for the queries of that one class.
    method._embed = lambda x: torch.ones(x.shape[0], 4)
    top1 = probe(method)["online_knn_top1"]
    shares = [(probe.query_labels == c).float().mean().item() for c in range(4)]
    assert top1 in shares and top1 < 0.5


def test_online_knn_copies_fewer_rows_of_large_images(monkeypatch):
    import engine.evaluation.health as health

    images, labels = labelled_images()
    monkeypatch.setattr(health, "KNN_BYTES", 100 * images[0].numel())
    probe = KnnProbe.for_method(Embedder, {"images": images}, labels)
    assert probe.queries.shape[0] == 20 and probe.bank.shape[0] == 80


def test_online_knn_needs_labels_images_and_an_image_embed():
    images, labels = labelled_images()
    assert KnnProbe.for_method(Embedder, {"images": images}, None) is None
    assert KnnProbe.for_method(Embedder, {"images": images}, torch.zeros(400)) is None
    assert KnnProbe.for_method(TextLike, {"images": images}, labels) is None
    assert KnnProbe.for_method(Embedder, {"input_ids": labels}, labels) is None
    assert KnnProbe.for_method(Embedder, {"images": images[:10]}, labels[:10]) is None


def test_online_knn_failure_turns_it_off_not_the_job(caplog):
    images, labels = labelled_images()
    probe = KnnProbe.for_method(Embedder, {"images": images}, labels)

    def broken(x):
        raise RuntimeError("embed cannot run")

    method = Embedder(broken).train()
    assert probe(method) == {} and probe.failed and method.training
    assert "online k-NN failed" in caplog.text
    method._embed = one_hot_of_pixel
    assert probe(method) == {}  # off for the rest of the job
