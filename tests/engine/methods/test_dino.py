"""DINO: crops through student and teacher, EMA, centre buffer, schedules, the ViT export."""

import pytest
import torch

from engine.config import build_config
from engine.methods.dino import DINO, DINOConfig, DINOHead, local_size, teacher_temperature
from engine.models.ema import momentum_schedule
from tests.conftest import TINY

IMAGES = torch.randint(0, 255, (4, 3, 16, 16), dtype=torch.uint8)


def _method(**params) -> DINO:
    torch.manual_seed(0)
    config = build_config(
        DINOConfig,
        "quick",
        dict(TINY, depth=1, out_dim=64, head_hidden_dim=32, bottleneck_dim=16, **params),
    )
    return DINO(config)


def test_teacher_sees_global_crops_and_student_all_once_per_resolution():
    method = _method(num_local_crops=3)
    seen = {"student": [], "teacher": []}
    for role in seen:
        getattr(method, role).backbone.register_forward_hook(
            lambda module, args, kwargs, out, role=role: seen[role].append(
                tuple(kwargs["pixel_values"].shape)
            ),
            with_kwargs=True,
        )
    loss, logs = method.training_step({"images": IMAGES})
    local = local_size(method.config)
    assert seen["teacher"] == [(8, 3, 16, 16)]  # 2 global crops x 4 images, in one pass
    assert seen["student"] == [(8, 3, 16, 16), (12, 3, local, local)]  # one pass per resolution
    assert torch.isfinite(loss) and logs["teacher_temperature"] == pytest.approx(0.04)
    loss.backward()
    assert all(p.grad is None for p in method.teacher.parameters())


def test_centre_is_a_buffer_started_at_zero_then_updated_with_momentum():
    method = _method(center_momentum=0.9)
    assert "center" in dict(method.named_buffers()) and "center" in method.state_dict()
    assert method.center.abs().sum() == 0  # main_dino.py: torch.zeros(1, out_dim)
    captured = []
    method.teacher.head.register_forward_hook(lambda m, a, out: captured.append(out.detach()))
    _, logs = method.training_step({"images": IMAGES})
    first = captured[0].float()
    # Step 0's targets are the teacher's outputs sharpened with no centre subtracted.
    probs = torch.softmax(first / 0.04, dim=-1)
    entropy = -(probs * probs.clamp(min=1e-12).log()).sum(dim=-1).mean()
    assert logs["teacher_entropy"].item() == pytest.approx(entropy.item(), rel=1e-5)
    first_mean = first.mean(dim=0, keepdim=True)
    assert torch.allclose(method.center, 0.1 * first_mean, atol=1e-6)
    method.after_step(1, 10)
    method.training_step({"images": IMAGES})
    expected = 0.9 * 0.1 * first_mean + 0.1 * captured[1].float().mean(dim=0, keepdim=True)
    assert torch.allclose(method.center, expected, atol=1e-6)


def test_after_step_moves_the_teacher_by_the_cosine_schedule():
    method = _method(teacher_momentum=0.9)
    teacher_before = [p.clone() for p in method.teacher.parameters()]
    loss, _ = method.training_step({"images": IMAGES})
    loss.backward()
    with torch.no_grad():
        for p in method.student.parameters():
            if p.grad is not None:
                p.sub_(0.1 * p.grad.sign())
    method.after_step(3, 10)
    momentum = momentum_schedule(2, 10, 0.9)
    for before, t, s in zip(
        teacher_before, method.teacher.parameters(), method.student.parameters()
    ):
        assert torch.allclose(t, momentum * before + (1 - momentum) * s, atol=1e-6)
    assert int(method.steps_done) == 3


def test_teacher_temperature_warms_up_linearly():
    config = build_config(
        DINOConfig,
        "quick",
        {
            "warmup_teacher_temperature": 0.04,
            "teacher_temperature": 0.07,
            "warmup_teacher_temperature_steps": 31,
        },
    )
    assert teacher_temperature(config, 0) == pytest.approx(0.04)
    assert teacher_temperature(config, 15) == pytest.approx(0.055)
    assert teacher_temperature(config, 30) == pytest.approx(0.07)
    assert teacher_temperature(config, 200) == pytest.approx(0.07)


def test_last_layer_frozen_at_first():
    method = _method(freeze_last_layer_steps=1)
    loss, _ = method.training_step({"images": IMAGES})
    loss.backward()
    assert method.student.head.last_direction.grad is None
    assert method.student.head.mlp[0].weight.grad is not None
    method.after_step(1, 10)  # one step done (the method mirrors steps_done, no host sync)
    method.zero_grad()
    method.training_step({"images": IMAGES})[0].backward()
    assert method.student.head.last_direction.grad is not None


def test_last_layer_rows_have_unit_norm():
    head = _method().student.head
    head.last_direction.data.mul_(torch.rand(head.last_direction.shape[0], 1) * 5)
    features = torch.randn(3, head.mlp[0].in_features)
    x = torch.nn.functional.normalize(head.mlp(features), dim=-1)
    weight = head.last_direction / head.last_direction.norm(dim=1, keepdim=True)
    assert torch.allclose(head(features), x @ weight.T, atol=1e-6)


def test_resnet_backbone_trains_a_step():
    method = _method(backbone="resnet18", num_local_crops=2, local_crop_size=8)
    assert method.channels_last
    loss, _ = method.training_step({"images": IMAGES})
    loss.backward()
    assert torch.isfinite(loss)
    assert method.embed(IMAGES).shape == (4, 512)


def test_vit_export_loads_with_eager_attention(tmp_path):
    from transformers import ViTModel

    method = _method()
    method.export(tmp_path)
    model = ViTModel.from_pretrained(
        tmp_path / "pretrained", attn_implementation="eager", use_safetensors=True
    ).eval()
    pixels = torch.randn(2, 3, 16, 16)
    out = model(pixel_values=pixels, output_attentions=True)
    tokens = (16 // method.config.patch_size) ** 2 + 1
    assert len(out.attentions) == method.config.depth
    assert out.attentions[-1].shape == (2, 3, tokens, tokens)  # vit-tiny: 3 heads
    assert torch.allclose(out.attentions[-1].sum(dim=-1), torch.ones(2, 3, tokens), atol=1e-5)
    # The exported network is the teacher, the one `embed` uses.
    with torch.no_grad():
        expected = method.teacher.backbone(pixel_values=pixels).last_hidden_state
    assert torch.allclose(out.last_hidden_state, expected, atol=1e-5)


def test_sizes_that_do_not_fit_the_patch_grid_are_refused():
    from engine.errors import SpecError

    with pytest.raises(SpecError, match="local_crop_size"):
        DINO.check_config(build_config(DINOConfig, "quick", {"local_crop_size": 10}))
    with pytest.raises(SpecError, match="image_size"):
        DINO.check_config(build_config(DINOConfig, "quick", {"image_size": 30}))


def test_preview_views_are_the_global_and_local_crops_of_training():
    from engine.methods.base import views_to_uint8

    method = _method(num_local_crops=3)
    torch.manual_seed(3)
    views = method.preview_views(IMAGES)
    torch.manual_seed(3)
    global_crops, local_crops = method.crops(IMAGES)  # the call training_step makes
    assert [c for c, _ in views] == [
        "global crop 1 (teacher, student)",
        "global crop 2 (teacher, student)",
        "local crop 1 (student)",
        "local crop 2 (student)",
        "local crop 3 (student)",
    ]
    local = local_size(method.config)
    assert local < 16
    assert [tuple(v.shape) for _, v in views] == [(4, 3, 16, 16)] * 2 + [(4, 3, local, local)] * 3
    assert all(v.dtype == torch.uint8 for _, v in views)
    # Crop i of every image, in the order MultiCrop stacks them (all first crops, then ...).
    assert torch.equal(views[1][1], views_to_uint8(global_crops[4:8]))
    assert torch.equal(views[3][1], views_to_uint8(local_crops[4:8]))
    assert not torch.equal(views[2][1], views[3][1])


def test_momentum_schedule_reaches_its_final_value_at_the_last_step():
    # BYOL: tau = 1 - (1 - base)(cos(pi k / K) + 1) / 2, k = 0 .. K over the K updates; the
    # loop's 0-based step runs 0 .. total - 1, so the last update uses tau = 1.
    assert momentum_schedule(0, 10, 0.9) == pytest.approx(0.9)
    assert momentum_schedule(9, 10, 0.9) == pytest.approx(1.0)
    assert momentum_schedule(3, 7, 0.9) == pytest.approx(0.95)  # halfway: cos(pi/2) = 0
    assert momentum_schedule(0, 1, 0.9) == pytest.approx(0.9)  # a one-step run


def test_head_batch_norm_spreads_features_the_backbone_barely_tells_apart():
    # A random ViT gives nearly the same [CLS] vector for every image; without batch norm the
    # head's outputs barely differ and centring leaves a uniform teacher (bench/RESULTS.md).
    torch.manual_seed(0)
    features = torch.randn(1, 192) + 1e-3 * torch.randn(16, 192)  # cosine ~1 between rows
    spread = {}
    for batch_norm in (False, True):
        torch.manual_seed(0)
        head = DINOHead(192, 64, 32, 16, batch_norm=batch_norm)
        logits = head(features)  # (16, 64), each in [-1, 1]
        spread[batch_norm] = logits.std(dim=0).mean().item()
    assert spread[False] < 1e-3 and spread[True] > 0.05
    method = _method(head_batch_norm=True)
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in method.teacher.head.modules())
    assert method.sync_batch_norm is True  # statistics over the global batch on N processes
    loss, _ = method.training_step({"images": IMAGES})
    loss.backward()
    assert torch.isfinite(loss)


def test_head_without_batch_norm_keeps_its_checkpoint_keys():
    # Checkpoints saved before the option existed load into the default head.
    keys = set(DINOHead(8, 16, 4, 4).state_dict())
    assert keys == {
        "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias", "mlp.4.weight",
        "mlp.4.bias", "last_direction", "last_scale",
    }  # fmt: skip
