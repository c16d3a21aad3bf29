import pytest
import torch

from engine.config import build_config
from engine.methods.simsiam import SimSiam, SimSiamConfig


def test_no_momentum_encoder_and_a_health_log():
    config = build_config(
        SimSiamConfig, "quick", dict(image_size=16, projection_dim=16, prediction_hidden_dim=4)
    )
    method = SimSiam(config)
    assert all(p.requires_grad for p in method.parameters())  # nothing frozen, no EMA copy
    outputs = {}
    for part in ("projector", "predictor"):
        getattr(method, part).register_forward_hook(
            lambda m, args, out, part=part: outputs.setdefault(part, out.detach())
        )
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    loss, logs = method.training_step({"images": images})
    # Each view's prediction matches the other view's projection: z (8, d) and p (8, d) hold
    # view a's 4 rows, then view b's.
    z, p = outputs["projector"], outputs["predictor"]
    cos = torch.nn.functional.cosine_similarity
    expected = -(cos(p[:4], z[4:]).mean() + cos(p[4:], z[:4]).mean()) / 2
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    assert logs["output_std"] > 0
    # Projector output: batch norm without affine parameters, as in the paper's code.
    last = method.projector.layers[-1]
    assert isinstance(last, torch.nn.BatchNorm1d) and not last.affine
