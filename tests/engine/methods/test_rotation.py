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


def test_preview_shows_the_four_rotations_with_their_labels():
    method = Rotation(build_config(RotationConfig, "quick", dict(image_size=8)))
    method.views = make_views("none", 8)
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    views = method.preview_views(images)
    assert [c for c, _ in views] == [
        "0\N{DEGREE SIGN} ccw, label 0",
        "90\N{DEGREE SIGN} ccw, label 1",
        "180\N{DEGREE SIGN} ccw, label 2",
        "270\N{DEGREE SIGN} ccw, label 3",
    ]
    upright = views[0][1]
    assert upright.dtype == torch.uint8 and upright.shape == (2, 3, 8, 8)
    assert (upright.int() - images.int()).abs().max() <= 1  # no augmentation: the image back
    for k, (_, turned) in enumerate(views):
        assert torch.equal(turned, torch.rot90(upright, k, dims=(2, 3)))
    # Counter-clockwise: the top row of a quarter turn is the right column of the image.
    assert torch.equal(views[1][1][:, :, 0, :], upright[:, :, :, -1])
