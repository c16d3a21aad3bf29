"""DINOv2: one forward per crop size, iBOT on masked patches, KoLeo, Sinkhorn, the export."""

import pytest
import torch

from engine.config import build_config
from engine.errors import SpecError
from engine.methods.dinov2 import DINOv2, DINOv2Config, patch_masks
from tests.conftest import TINY

IMAGES = torch.randint(0, 255, (8, 3, 16, 16), dtype=torch.uint8)


def _method(**params) -> DINOv2:
    torch.manual_seed(0)
    config = build_config(
        DINOv2Config,
        "quick",
        {
            **TINY,
            "depth": 1,
            "patch_size": 4,
            "out_dim": 64,
            "head_hidden_dim": 32,
            "bottleneck_dim": 16,
            "num_local_crops": 2,
            **params,
        },
    )
    return DINOv2(config)


def test_masks_cover_half_the_crops_within_the_ratio_range():
    config = _method(mask_probability=0.5, mask_ratio_min=0.25, mask_ratio_max=0.5).config
    torch.manual_seed(3)
    masks = patch_masks(config, 16, 4)  # 16 crops of a 4x4 grid
    counts = masks.sum(dim=1)
    assert (counts > 0).sum() == 8  # mask_probability 0.5 of 16 crops
    assert counts.max() <= 8 and counts[counts > 0].min() >= 4


def test_step_gives_every_loss_and_the_student_masked_patches_only():
    method = _method()
    seen = []
    method.student.backbone.register_forward_hook(
        lambda module, args, kwargs, out: seen.append(kwargs.get("bool_masked_pos")),
        with_kwargs=True,
    )
    loss, logs = method.training_step({"images": IMAGES})
    assert torch.isfinite(loss)
    assert {"dino_loss", "ibot_loss", "koleo_loss", "masked_share"} <= set(logs)
    assert seen[0] is not None and seen[0].shape == (16, 16)  # 2 global crops x 8 images
    assert seen[0].any()  # some global crops are masked
    expected = logs["dino_loss"] + logs["ibot_loss"] + 0.1 * logs["koleo_loss"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert all(p.grad is None for p in method.teacher.parameters())
    assert method.student.patch_head.mlp[0].weight.grad is not None  # iBOT trains its head
    assert method.student.backbone.embeddings.mask_token.grad is not None


def test_sinkhorn_targets_spread_over_prototypes_and_centering_option_uses_a_buffer():
    method = _method(centering="centering")
    method.training_step({"images": IMAGES})
    assert method.center.abs().sum() > 0 and method.patch_center.abs().sum() > 0
    sink = _method(centering="sinkhorn")
    sink.training_step({"images": IMAGES})
    assert sink.center.abs().sum() == 0  # Sinkhorn keeps no running centre


def test_turning_ibot_and_koleo_off_leaves_dino():
    method = _method(ibot_loss_weight=0.0, koleo_loss_weight=0.0)
    loss, logs = method.training_step({"images": IMAGES})
    assert "ibot_loss" not in logs and "koleo_loss" not in logs
    assert loss.item() == pytest.approx(logs["dino_loss"].item(), rel=1e-6)


def test_bad_mask_ratios_and_sizes_are_refused():
    with pytest.raises(SpecError, match="mask_ratio_min"):
        _method(mask_ratio_min=0.6, mask_ratio_max=0.5)
    with pytest.raises(SpecError, match="multiple of patch_size"):
        _method(patch_size=5)


def test_a_few_steps_lower_the_loss():
    method = _method(ibot_loss_weight=1.0, centering="sinkhorn")
    optimizer = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=1e-3)
    images = IMAGES[:4].repeat(2, 1, 1, 1)
    losses = []
    for step in range(1, 13):
        torch.manual_seed(step)  # the same crops and masks every other step
        loss, _ = method.training_step({"images": images})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        method.after_step(step, 12)
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3


def test_export_loads_as_dinov2model_with_the_teachers_features(tmp_path):
    from transformers import Dinov2Model

    method = _method().eval()
    method.export(tmp_path)
    loaded = Dinov2Model.from_pretrained(tmp_path / "pretrained").eval()
    images = IMAGES[:2]
    from engine.data.views import normalize

    with torch.no_grad():
        ours = method.embed(images)
        theirs = loaded(pixel_values=normalize(images)).pooler_output
    assert torch.allclose(ours, theirs, atol=1e-5)
