"""LARS and the warmup-cosine schedule against values worked out by hand; the parameter groups."""

import math

import pytest
import torch
from torch import nn

from engine.config import build_config
from engine.methods.simclr import SimCLRConfig
from engine.optim import LARS, build_optimizer, clip_gradients, param_groups, warmup_cosine


def test_warmup_cosine_by_hand():
    factor = warmup_cosine(warmup_steps=4, total_steps=12)
    # Warmup: (step + 1) / 4. Then 0.5 (1 + cos(pi (step - 4) / 8)), zero from step 12 on.
    expected = {
        0: 0.25,
        1: 0.5,
        2: 0.75,
        3: 1.0,
        4: 1.0,
        6: 0.5 * (1 + math.sqrt(0.5)),  # a quarter of the way: cos(pi/4)
        8: 0.5,
        10: 0.5 * (1 - math.sqrt(0.5)),
        12: 0.0,
        20: 0.0,
    }
    for step, value in expected.items():
        assert factor(step) == pytest.approx(value, abs=1e-12), step
    no_warmup = warmup_cosine(warmup_steps=0, total_steps=2)
    assert [no_warmup(s) for s in range(3)] == pytest.approx([1.0, 0.5, 0.0], abs=1e-12)


def test_schedule_drives_the_optimizer_as_the_loop_uses_it():
    weight = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=0.2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(2, 6))
    seen = []
    for _ in range(6):  # the lr each step runs with, then scheduler.step() after it
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    # 0.2 x [1/2, 1, then 0.5 (1 + cos(pi k / 4)) for k = 0..3].
    assert seen == pytest.approx(
        [0.1, 0.2, 0.2, 0.1 * (1 + math.sqrt(0.5)), 0.1, 0.1 * (1 - math.sqrt(0.5))], abs=1e-12
    )


def test_lars_two_steps_by_hand():
    weight = nn.Parameter(torch.tensor([3.0, 4.0], dtype=torch.float64))  # norm 5
    bias = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    optimizer = LARS(
        [{"params": [weight]}, {"params": [bias], "weight_decay": 0.0, "lars_exclude": True}],
        lr=0.5,
        momentum=0.9,
        weight_decay=0.1,
        trust_coefficient=0.01,
    )

    # Step 1. g + wd w = (0.6, 0.8) + 0.1 (3, 4) = (0.9, 1.2), norm 1.5; trust ratio
    # 0.01 x 5 / 1.5 = 1/30; update (0.03, 0.04) is the first momentum buffer;
    # w = (3, 4) - 0.5 (0.03, 0.04) = (2.985, 3.98). The bias: plain SGD, 1 - 0.5 x 0.5.
    weight.grad = torch.tensor([0.6, 0.8], dtype=torch.float64)
    bias.grad = torch.tensor([0.5], dtype=torch.float64)
    optimizer.step()
    assert weight.tolist() == pytest.approx([2.985, 3.98], abs=1e-12)
    assert bias.tolist() == pytest.approx([0.75], abs=1e-12)

    # Step 2. w = 0.995 (3, 4) has norm 4.975. A gradient chosen so that g + wd w = (0, 2):
    # (-0.2985, 1.602). Trust 0.01 x 4.975 / 2 = 0.024875, update (0, 0.04975); buffer
    # 0.9 (0.03, 0.04) + (0, 0.04975) = (0.027, 0.08575); w = (2.985 - 0.0135, 3.98 - 0.042875).
    # The bias: buffer 0.9 x 0.5 + 0.5 = 0.95, 0.75 - 0.5 x 0.95 = 0.275.
    weight.grad = torch.tensor([-0.2985, 1.602], dtype=torch.float64)
    optimizer.step()
    assert weight.tolist() == pytest.approx([2.9715, 3.937125], abs=1e-12)
    assert bias.tolist() == pytest.approx([0.275], abs=1e-12)


def test_lars_falls_back_to_sgd_for_a_zero_weight():
    # ||w|| = 0 would make the trust ratio 0 and freeze the weight for ever: it is 1 instead.
    weight = nn.Parameter(torch.zeros(2, dtype=torch.float64))
    optimizer = LARS([weight], lr=0.5, weight_decay=0.1)
    weight.grad = torch.tensor([1.0, -2.0], dtype=torch.float64)
    optimizer.step()
    assert weight.tolist() == pytest.approx([-0.5, 1.0], abs=1e-12)


def test_lars_does_not_touch_parameters_without_gradients():
    used, unused = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    optimizer = LARS([used, unused], lr=0.1)
    used.grad = torch.ones(2)
    optimizer.step()
    assert torch.equal(unused, torch.ones(2)) and not torch.equal(used, torch.ones(2))


def test_weight_decay_and_trust_ratio_skip_biases_and_norm_layers():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    decay, no_decay = param_groups(model, weight_decay=0.05)
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[2].weight)}
    assert len(no_decay["params"]) == 4  # two biases, the batch-norm scale and shift
    assert (decay["weight_decay"], no_decay["weight_decay"], no_decay["lars_exclude"]) == (
        0.05,
        0.0,
        True,
    )
    for name, kind in (("lars", LARS), ("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)):
        config = build_config(
            SimCLRConfig, "quick", {"optimizer": name, "lr": 0.3, "weight_decay": 0.05}
        )
        optimizer = build_optimizer(model, config)
        assert isinstance(optimizer, kind)
        assert [g["weight_decay"] for g in optimizer.param_groups] == [0.05, 0.0]
        assert all(g["lr"] == 0.3 for g in optimizer.param_groups)
        assert [g.get("lars_exclude") for g in optimizer.param_groups] == (
            [False, True] if name == "lars" else [None, None]
        )


def _two_grads():
    weight = nn.Parameter(torch.zeros(2, dtype=torch.float64))
    bias = nn.Parameter(torch.zeros(1, dtype=torch.float64))
    weight.grad = torch.tensor([3.0, 4.0], dtype=torch.float64)  # norm 5
    bias.grad = torch.tensor([1.0], dtype=torch.float64)  # norm 1
    model = nn.Module()
    model.weight, model.bias = weight, bias
    return model, weight, bias


def _clip_config(clip, mode="global"):
    return build_config(SimCLRConfig, "paper", {"grad_clip": clip, "grad_clip_mode": mode})


def test_clip_gradients_per_parameter_as_main_dino():
    # main_dino.py clip_gradients at 3.0: the weight's norm 5 > 3 is scaled by 3 / (5 + 1e-6);
    # the bias (norm 1) is left alone. The returned norm is the global one before clipping.
    model, weight, bias = _two_grads()
    norm = clip_gradients(model, _clip_config(3.0, "per_parameter"))
    assert norm.item() == pytest.approx(math.sqrt(26), abs=1e-12)
    scale = 3.0 / (5.0 + 1e-6)
    assert weight.grad.tolist() == pytest.approx([3.0 * scale, 4.0 * scale], abs=1e-12)
    assert bias.grad.tolist() == [1.0]


def test_clip_gradients_global_and_off():
    # Global at 1.0: all gradients scaled together by 1 / sqrt(26) (up to torch's 1e-6).
    model, weight, bias = _two_grads()
    norm = clip_gradients(model, _clip_config(1.0))
    assert norm.item() == pytest.approx(math.sqrt(26), abs=1e-12)
    total = math.sqrt(sum(g.pow(2).sum().item() for g in (weight.grad, bias.grad)))
    assert total == pytest.approx(1.0, abs=1e-5)
    assert (weight.grad / bias.grad[0]).tolist() == pytest.approx([3.0, 4.0])
    # Off: nothing is touched and there is no norm.
    model, weight, bias = _two_grads()
    assert clip_gradients(model, _clip_config(0.0)) is None
    assert weight.grad.tolist() == [3.0, 4.0] and bias.grad.tolist() == [1.0]


def test_clipping_defaults_follow_the_papers():
    from engine.registry import get_method, list_methods

    clipped_papers = {"dino": (3.0, "per_parameter"), "beit": (3.0, "global")}
    clipped_papers |= {"bert": (1.0, "global"), "gpt": (1.0, "global")}
    # DINOv2's train loop clips at 3.0 (each FSDP module's norm; the global norm here).
    clipped_papers |= {"dinov2": (3.0, "global")}
    # Barlow Twins' quick preset does not clip: its loss is in the hundreds and a clip at 1.0
    # cost it k-NN (bench/RESULTS.md, bt0 against bt4).
    quick_clips = {"dinov2": 3.0, "barlowtwins": 0.0}
    for name in list_methods():
        config_cls = get_method(name).Config
        paper = build_config(config_cls, "paper", {})
        expected = clipped_papers.get(name, (0.0, "global"))
        assert (paper.grad_clip, paper.grad_clip_mode) == expected, name
        quick = build_config(config_cls, "quick", {})
        assert (quick.grad_clip, quick.grad_clip_mode) == (quick_clips.get(name, 1.0), "global")


def test_adamw_betas_are_the_papers():
    from engine.registry import get_method

    model = nn.Linear(2, 2)
    expected = {"dino": 0.999, "bert": 0.999, "beit": 0.999, "mae": 0.95, "gpt": 0.95}
    expected |= {"clip": 0.98, "colorization": 0.99, "simclr": 0.999}
    for name, beta2 in expected.items():
        config = build_config(get_method(name).Config, "quick", {"optimizer": "adamw"})
        optimizer = build_optimizer(model, config)
        assert optimizer.param_groups[0]["betas"] == (0.9, beta2), name
