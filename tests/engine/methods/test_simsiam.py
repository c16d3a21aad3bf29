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


def test_fix_predictor_lr_holds_the_predictors_rate_while_the_rest_decays():
    from engine.optim import build_optimizer, make_scheduler

    overrides = dict(image_size=16, projection_dim=16, prediction_hidden_dim=4, lr=0.01)
    fixed = SimSiam(build_config(SimSiamConfig, "quick", dict(overrides, fix_predictor_lr=True)))
    optimizer = build_optimizer(fixed, fixed.config)
    flagged = [g for g in optimizer.param_groups if g.get("fixed_lr")]
    ids = {id(p) for g in flagged for p in g["params"]}
    assert ids == {id(p) for p in fixed.predictor.parameters()}  # the predictor, and only it
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(fixed.parameters()))
    scheduler = make_scheduler(optimizer, warmup_steps=2, total_steps=10)
    for _ in range(9):  # to the last step: the schedule is at its end, near zero
        optimizer.step()
        scheduler.step()
    rates = {bool(g.get("fixed_lr")): g["lr"] for g in optimizer.param_groups}
    assert rates[True] == pytest.approx(0.01) and rates[False] < 0.001
    # Off (the default): the groups are the usual two, as older checkpoints hold them.
    plain = SimSiam(build_config(SimSiamConfig, "quick", overrides))
    assert len(build_optimizer(plain, plain.config).param_groups) == 2


def test_a_run_with_a_fixed_predictor_lr_trains_and_its_checkpoint_restores(tmp_path):
    from engine import checkpoints
    from engine.api import Studio
    from engine.optim import build_optimizer, make_scheduler

    studio = Studio(tmp_path)
    spec = {"method": "simsiam", "dataset": "shapes", "preset": "tiny"}
    params = {"steps": 4, "fix_predictor_lr": True, "checkpoint_every": 2, "lr": 0.01}
    summary = studio.run_foreground(dict(spec, params=params))
    assert summary["status"] == "completed", summary["error"]
    # What a resume rebuilds (same groups, same schedule) takes the saved state back.
    config = build_config(SimSiamConfig, "tiny", params)
    method = SimSiam(config)
    optimizer = build_optimizer(method, config)
    scheduler = make_scheduler(optimizer, config.warmup_steps, config.steps)
    latest = checkpoints.latest(summary["run_dir"])
    step, _ = checkpoints.restore(latest, method, optimizer, scheduler, torch.Generator())
    assert step == 4
    rates = {bool(g.get("fixed_lr")): g["lr"] for g in optimizer.param_groups}
    assert rates[True] == pytest.approx(0.01) and rates[False] < 0.01
