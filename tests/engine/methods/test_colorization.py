import torch
from PIL import Image

from engine.config import build_config
from engine.losses.colorization import rebalancing_weights
from engine.methods.colorization import Colorization, ColorizationConfig
from engine.models.resnet import ConvNet


def _tiny():
    return build_config(ColorizationConfig, "quick", dict(image_size=16, decoder_dim=8))


def test_prior_from_the_data_sets_the_weights():
    config = _tiny()
    data = Colorization.load_data("shapes", config)
    prior = torch.tensor(data.info["ab_prior"])
    assert abs(prior.sum().item() - 1) < 1e-5 and (prior >= 0).all()
    method = Colorization(config, data.info)
    weights = method.class_weights
    assert torch.equal(weights, rebalancing_weights(prior, method.bins, 0.5))
    # Frequent colours (the greys) weigh less than rare ones.
    grey = (method.bins == 0).all(dim=1)
    assert weights[grey].item() < weights.max().item()


def test_samples_are_written_and_training_state_is_untouched(tmp_path):
    torch.manual_seed(0)
    method = Colorization(_tiny())
    images = torch.randint(0, 256, (10, 3, 16, 16), dtype=torch.uint8)
    loss, logs = method.training_step({"images": images})
    assert torch.isfinite(loss) and 0 <= logs["bin_acc"] <= 1
    stats = {k: v.clone() for k, v in method.state_dict().items() if "running" in k}
    method.export(tmp_path)
    assert method.training
    for key, value in stats.items():
        assert torch.equal(method.state_dict()[key], value), key
    png = Image.open(tmp_path / "colorized.png")
    assert png.size == (8 * 64, 3 * 64)  # 8 samples, rows grey / predicted / original
    colourised = method.eval().colorize(images[:2])
    assert colourised.shape == (2, 3, 16, 16)
    assert colourised.min() >= 0 and colourised.max() <= 1
    assert method.embed(images[:2]).shape == (2, ConvNet().feature_dim)  # the quick backbone


def test_preview_shows_the_l_input_and_the_ab_target_in_colour():
    from engine.data.lab import rgb_to_lab

    method = Colorization(_tiny())
    red = torch.tensor([220, 40, 40], dtype=torch.uint8)[None, :, None, None]
    images = torch.cat(
        [red.expand(1, 3, 16, 16), torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8)]
    )
    torch.manual_seed(0)
    views = method.preview_views(images)
    assert [c for c, _ in views] == ["crop", "L input", "ab target (bins at L 70)"]
    assert [tuple(v.shape) for _, v in views] == [
        (2, 3, 16, 16),
        (2, 3, 16, 16),
        (2, 3, 4, 4),
    ]  # the loss's 1/4 resolution
    assert all(v.dtype == torch.uint8 for _, v in views)
    crop, lightness, target = (v for _, v in views)
    assert (crop[0].int() - red[0].int()).abs().max() <= 2  # crop and flip keep a flat red
    # L input: grey (R = G = B) with the crop's lightness.
    assert (lightness.int().amax(dim=1) - lightness.int().amin(dim=1)).max() <= 2
    lab_l = rgb_to_lab(lightness.float() / 255)[:, 0]
    assert (lab_l - rgb_to_lab(crop.float() / 255)[:, 0]).abs().max() < 1.5
    # The red image's target is the red bin everywhere: red at the preview's lightness.
    assert (target[0, 0].int() - target[0, 1:].int().amax(dim=0) > 60).all()
    torch.manual_seed(0)
    _, ab = method.lab_views(images)  # the training step's targets, same draw
    nearest = torch.cdist(ab[0].flatten(1).T, method.bins).argmin(dim=1)
    assert (nearest == nearest[0]).all()
