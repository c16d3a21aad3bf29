import torch
from PIL import Image

from engine.config import build_config
from engine.losses.colorization import rebalancing_weights
from engine.methods.colorization import Colorization, ColorizationConfig


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
    assert method.embed(images[:2]).shape == (2, 512)
