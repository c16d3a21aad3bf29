import pytest
import torch

from engine.data.lab import ab_gamut_bins, annealed_mean, lab_to_rgb, rgb_to_lab, soft_encode

# CIE Lab (D65) of the sRGB primaries, white and black: the values scikit-image's rgb2lab and
# Bruce Lindbloom's calculator give.
REFERENCE = [
    ((1.0, 0.0, 0.0), (53.2408, 80.0925, 67.2032)),
    ((0.0, 1.0, 0.0), (87.7347, -86.1827, 83.1793)),
    ((0.0, 0.0, 1.0), (32.2970, 79.1875, -107.8602)),
    ((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),
    ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
]


def _pixels(values):
    return torch.tensor(values).T[:, :, None]  # (3, n, 1): n pixels in one column


def test_reference_values():
    try:
        from skimage.color import rgb2lab
    except ImportError:
        rgb2lab = None
    rgb = _pixels([c for c, _ in REFERENCE])
    lab = rgb_to_lab(rgb)[:, :, 0].T
    for got, (_, expected) in zip(lab.tolist(), REFERENCE):
        assert got == pytest.approx(expected, abs=0.01)
    if rgb2lab is not None:
        image = torch.rand(8, 8, 3, generator=torch.Generator().manual_seed(0))
        ours = rgb_to_lab(image.permute(2, 0, 1)).permute(1, 2, 0)
        assert torch.allclose(ours, torch.from_numpy(rgb2lab(image.numpy())).float(), atol=0.02)


def test_round_trip():
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(4, 3, 16, 16, generator=g)
    assert (lab_to_rgb(rgb_to_lab(rgb)) - rgb).abs().max() < 1e-4
    lab = rgb_to_lab(rgb)
    assert lab[:, 0].min() >= 0 and lab[:, 0].max() <= 100


def test_gamut_bins():
    bins = ab_gamut_bins(10)
    # Zhang et al. keep 313 bins of ImageNet's gamut; the sRGB cube gives a few less.
    assert 240 <= len(bins) <= 330
    assert (bins % 10 == 0).all() and [0.0, 0.0] in bins.tolist()
    assert len(torch.unique(bins, dim=0)) == len(bins)


def test_soft_encode_and_annealed_mean():
    bins = ab_gamut_bins(10)
    ab = torch.tensor([[0.0, 0.0], [20.0, -30.0], [13.0, 7.0]]).T[None, :, :, None]  # (1,2,3,1)
    target = soft_encode(ab, bins)  # (1, Q, 3, 1)
    assert torch.allclose(target.sum(dim=1), torch.ones(1, 3, 1))
    assert ((target > 0).sum(dim=1) == 5).all()  # five nearest bins share the mass
    assert bins[target[0, :, 0, 0].argmax()].tolist() == [0.0, 0.0]
    assert bins[target[0, :, 1, 0].argmax()].tolist() == [20.0, -30.0]
    # Near-zero temperature decodes the mode; the mean of a soft target stays close to the
    # colour it encodes.
    logits = torch.log(target + 1e-12)
    assert torch.allclose(
        annealed_mean(logits, bins, 0.01)[0, :, 1, 0], torch.tensor([20.0, -30.0]), atol=0.5
    )
    assert torch.allclose(
        annealed_mean(logits, bins, 1.0)[0, :, 2, 0], torch.tensor([13.0, 7.0]), atol=2.5
    )
