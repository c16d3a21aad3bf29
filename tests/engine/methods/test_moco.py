import pytest
import torch
from safetensors.torch import load_model, save_model

from engine.config import build_config
from engine.errors import SpecError
from engine.methods.moco import MoCo, MoCoConfig, enqueue


def _one_by_one(queue, pointer, keys):
    """The queue as the paper describes it: keys enter one at a time, the oldest leaves."""
    queue, pointer = queue.clone(), int(pointer)
    for key in keys:
        queue[pointer] = key
        pointer = (pointer + 1) % len(queue)
    return queue, pointer


@pytest.mark.parametrize("batch", [1, 3, 7, 10, 25])
def test_enqueue_wraps_for_any_batch_size(batch):
    size = 10
    queue = torch.zeros(size, 2)
    pointer = torch.zeros(1, dtype=torch.long)
    expected_queue, expected_pointer = queue.clone(), 0
    for step in range(5):
        keys = torch.arange(batch * 2, dtype=torch.float32).view(batch, 2) + 1000 * step
        expected_queue, expected_pointer = _one_by_one(expected_queue, expected_pointer, keys)
        enqueue(queue, pointer, keys)
        assert int(pointer) == expected_pointer == (step + 1) * batch % size
        assert torch.equal(queue, expected_queue)


def test_enqueue_by_hand():
    queue = torch.zeros(10, 1)
    pointer = torch.zeros(1, dtype=torch.long)
    for step in range(4):  # 12 keys numbered 1..12 into 10 slots, 3 at a time
        enqueue(queue, pointer, torch.arange(3 * step + 1, 3 * step + 4).float()[:, None])
    assert int(pointer) == 2
    assert queue[:, 0].tolist() == [11, 12, 3, 4, 5, 6, 7, 8, 9, 10]


def assert_ema(target, before, online, tau):
    """target == tau * before + (1 - tau) * online, computed in float64, up to the rounding of
    the two fp32 operations that produce it (a couple of units in the last place)."""
    expected = tau * before.double() + (1 - tau) * online.double()
    bound = 2.0**-22 * (before.double().abs() + online.double().abs())
    assert ((target.double() - expected).abs() <= bound).all()


def _tiny(**overrides):
    params = dict(
        image_size=16,
        batch_size=6,
        queue_size=16,
        bn_splits=2,
        projection_hidden_dim=32,
        projection_dim=8,
        precision="fp32",
    )
    params.update(overrides)
    return build_config(MoCoConfig, "quick", params)


def test_training_fills_the_queue_and_ema_is_exact():
    torch.manual_seed(0)
    method = MoCo(_tiny(momentum=0.9))
    images = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    for step in range(1, 4):
        loss, logs = method.training_step({"images": images})
        assert torch.isfinite(loss) and 0 <= logs["contrastive_acc"] <= 1
        loss.backward()
        with torch.no_grad():  # stand-in for an optimizer step on the query encoder
            for p in method.encoder.parameters():
                p.sub_(0.01 * p.grad)
        keys = method._new_keys.clone()
        before = {n: p.clone() for n, p in method.key_encoder.named_parameters()}
        online = dict(method.encoder.named_parameters())
        method.after_step(step, 10)
        start = (step - 1) * 6 % 16
        slots = [(start + i) % 16 for i in range(6)]
        assert torch.equal(method.queue[slots], keys)
        assert int(method.queue_pointer) == step * 6 % 16
        for name, p in method.key_encoder.named_parameters():
            assert_ema(p, before[name], online[name].detach(), 0.9)
            assert not p.requires_grad
        method.zero_grad()


def test_queue_is_saved_with_the_weights(tmp_path):
    method = MoCo(_tiny())
    enqueue(method.queue, method.queue_pointer, torch.ones(5, 8))
    assert {"queue", "queue_pointer"} <= set(method.state_dict())
    save_model(method, str(tmp_path / "m.safetensors"))
    fresh = MoCo(_tiny())
    load_model(fresh, str(tmp_path / "m.safetensors"))
    assert int(fresh.queue_pointer) == 5 and torch.equal(fresh.queue, method.queue)


def test_key_encoder_gets_no_gradient_and_head_has_no_batch_norm():
    method = MoCo(_tiny(projection_batch_norm=False))  # v2's head, as the paper preset
    assert all(not p.requires_grad for p in method.key_encoder.parameters())
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in method.projection.modules())
    assert build_config(MoCoConfig, "paper", {}).projection_batch_norm is False


def test_quick_head_has_batch_norm_in_both_branches():
    method = MoCo(_tiny())
    for head in (method.projection, method.key_projection):
        assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in head.modules()) == 1


def test_batch_must_split_evenly():
    with pytest.raises(SpecError, match="multiple of bn_splits"):
        MoCo.check_config(_tiny(batch_size=6, bn_splits=4))


def test_queue_starts_with_keys_of_real_images():
    torch.manual_seed(0)
    # v2's head: batch norm would centre the keys of an untrained encoder (quick preset)
    method = MoCo(_tiny(queue_size=20, projection_batch_norm=False))  # 20: not a multiple of 6
    random_queue = method.queue.clone()
    images = torch.randint(0, 256, (30, 3, 16, 16), dtype=torch.uint8)
    method.on_train_start({"images": images})
    assert int(method.queue_pointer) == 0
    assert torch.allclose(method.queue.norm(dim=1), torch.ones(20))
    assert not (method.queue == random_queue).all(dim=1).any()  # every slot was written
    # Keys of an untrained encoder are alike; random unit vectors in 8-D are not.
    mean_cosine = (method.queue @ method.queue.T).mean()
    assert mean_cosine > 0.5 > (random_queue @ random_queue.T).mean()
