"""Collapse metrics on collapsed and isotropic embeddings; the probe on a real method."""

import math

import torch

from engine.evaluation.health import (
    HealthProbe,
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
