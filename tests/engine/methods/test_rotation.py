import torch

from engine.config import build_config
from engine.data.views import make_views
from engine.methods.rotation import Rotation, RotationConfig


def test_every_image_in_all_four_rotations_with_its_label():
    method = Rotation(build_config(RotationConfig, "quick", dict(image_size=8)))
    method.views = make_views("none", 8)  # no randomness, so the inputs can be checked
    seen = []
    method.encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    images = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    loss, logs = method.training_step({"images": images})
    batch = seen[0]
    assert batch.shape == (12, 3, 8, 8)
    plain = make_views("none", 8)(images)
    for k in range(4):
        for i in range(3):
            assert torch.equal(batch[k * 3 + i], torch.rot90(plain[i], k, dims=(1, 2)))
    assert torch.isfinite(loss) and 0 <= logs["rotation_acc"] <= 1
