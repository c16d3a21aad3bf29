"""The reconstruction protocol: PSNR and the two baseline fills on cases worked out by hand,
and on a tiny random ViTMAE."""

import math

import pytest
import torch

from engine.evaluation.reconstruction import (
    PSNR_CAP,
    evaluate_reconstruction,
    hidden_patch_psnr,
    nearest_visible,
    psnr,
)

UNIT = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # pixels used as they are: [0, 1]


def _mae(norm_pix_loss=False, size=8, patch=4):
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    config = ViTMAEConfig(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=size,
        patch_size=patch,
        decoder_hidden_size=16,
        decoder_num_hidden_layers=1,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
        norm_pix_loss=norm_pix_loss,
        mask_ratio=0.5,
    )
    return ViTMAEForPreTraining(config).eval()


def test_psnr_by_hand():
    truth = torch.zeros(1, 2, 4)
    hidden = torch.tensor([[True, False]])
    off = truth.clone()
    off[0, 0] = 0.1  # MSE 0.01 on the hidden patch: 20 dB
    off[0, 1] = 0.9  # a visible patch: not scored
    assert psnr(off, truth, hidden).item() == pytest.approx(20.0)
    assert psnr(truth, truth, hidden).item() == PSNR_CAP  # exact: capped, not infinite


def test_nearest_visible_by_hand():
    # 2 x 2 grid, patches 0 and 3 hidden: each is one step from both 1 and 2; ties go to 1.
    hidden = torch.tensor([[True, False, False, True]])
    assert nearest_visible(hidden, 2).tolist() == [[1, 1, 2, 1]]
    # 3 x 3, only the centre visible: every patch copies it.
    only_centre = torch.ones(1, 9, dtype=torch.bool)
    only_centre[0, 4] = False
    assert nearest_visible(only_centre, 3).tolist() == [[4] * 9]


def test_fills_on_a_two_colour_image():
    # 8 x 8, patches of 4: the left two patches black, the right two white; hide patches 0
    # (top left) and 3 (bottom right). Nearest visible: 0 <- 1 (white, ties to the lower
    # index), 3 <- 1 (white): patch 0 wrong by 1 everywhere, patch 3 right -> MSE 0.5, 3.01 dB.
    # Mean colour 0.5 everywhere: MSE 0.25, 6.02 dB. A perfect prediction: the cap.
    model = _mae()
    image = torch.zeros(1, 3, 8, 8)
    image[..., 4:] = 1.0
    hidden = torch.tensor([[True, False, False, True]])
    exact = model.patchify(image)
    out = hidden_patch_psnr(model, image, hidden, exact, *UNIT)
    assert out["psnr"].item() == PSNR_CAP
    assert out["psnr_mean_colour"].item() == pytest.approx(10 * math.log10(4), abs=1e-4)
    assert out["psnr_nearest_visible"].item() == pytest.approx(10 * math.log10(2), abs=1e-4)


def test_norm_pix_predictions_and_fills_get_the_patch_statistics():
    # A normalised-pixel model predicts (x - mean) / std of each patch; given the patch's
    # statistics back, the exact normalised target reconstructs the image exactly.
    model = _mae(norm_pix_loss=True)
    torch.manual_seed(0)
    image = torch.rand(2, 3, 8, 8)
    target = model.patchify(image)
    normalised = (target - target.mean(-1, keepdim=True)) / (
        target.var(-1, keepdim=True) + 1e-6
    ) ** 0.5
    hidden = torch.tensor([[True, False, True, False], [False, True, True, True]])
    out = hidden_patch_psnr(model, image, hidden, normalised, *UNIT)
    assert out["psnr"].tolist() == [PSNR_CAP, PSNR_CAP]
    # A flat (one-colour) image: every fill rescaled to the patch's statistics is exact.
    flat = torch.full((1, 3, 8, 8), 0.25)
    flat_out = hidden_patch_psnr(model, flat, hidden[:1], model.patchify(flat) * 0, *UNIT)
    assert flat_out["psnr_mean_colour"].item() == PSNR_CAP
    assert flat_out["psnr_nearest_visible"].item() == PSNR_CAP


def test_evaluate_reconstruction_on_a_tiny_random_mae():
    torch.manual_seed(0)
    model = _mae()
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    result = evaluate_reconstruction(model, images, *UNIT, mask_ratio=0.5, seed=3, batch_size=2)
    assert result["num_images"] == 5 and result["mask_ratio"] == 0.5
    best_baseline = max(result["psnr_mean_colour"], result["psnr_nearest_visible"])
    assert result["margin_db"] == pytest.approx(result["psnr"] - best_baseline)
    assert model.config.mask_ratio == 0.5  # restored after the call
    again = evaluate_reconstruction(model, images, *UNIT, mask_ratio=0.5, seed=3, batch_size=5)
    assert again["psnr"] == pytest.approx(result["psnr"])  # same masks whatever the batching
    # A one-colour image set: the mean-colour fill is exact.
    flat = torch.full((3, 3, 8, 8), 77, dtype=torch.uint8)
    assert evaluate_reconstruction(model, flat, *UNIT)["psnr_mean_colour"] == PSNR_CAP


def test_a_norm_pix_prediction_is_not_restandardised():
    # A model that predicts 0 for every normalised pixel of a hidden patch says "the patch's
    # own mean": that scores exactly as the mean-of-the-patch fill does, and a small wrong
    # structure (0.01) must not be blown up to unit variance before scoring.
    model = _mae(norm_pix_loss=True)
    torch.manual_seed(1)
    image = torch.rand(1, 3, 8, 8)
    hidden = torch.tensor([[True, True, False, False]])
    target = model.patchify(image)
    zero = hidden_patch_psnr(model, image, hidden, torch.zeros_like(target), *UNIT)
    patch_means = target.mean(-1, keepdim=True).expand_as(target)
    squared = ((patch_means - target) ** 2).mean(-1)[0, :2].mean()
    assert zero["psnr"].item() == pytest.approx(float(-10 * torch.log10(squared)), abs=1e-3)
    noise = 0.01 * torch.randn_like(target)
    small = hidden_patch_psnr(model, image, hidden, noise, *UNIT)
    assert abs(small["psnr"].item() - zero["psnr"].item()) < 0.1
