import pytest
import torch
from transformers import ViTMAEConfig, ViTMAEForPreTraining

from engine.losses.masked_mse import masked_patch_mse


def test_only_masked_patches_count_by_hand():
    pred = torch.zeros(1, 2, 2)
    target = torch.tensor([[[1.0, 3.0], [10.0, 10.0]]])
    mask = torch.tensor([[1.0, 0.0]])
    # Patch 0 only: mean((0-1)^2, (0-3)^2) = 5; patch 1 is visible and ignored.
    assert masked_patch_mse(pred, target, mask, norm_pix=False).item() == pytest.approx(5.0)
    # Normalised: patch 0 becomes (-1, 1)/sqrt(var=2 + eps), squared mean = 1/2.
    assert masked_patch_mse(pred, target, mask, norm_pix=True).item() == pytest.approx(
        0.5, rel=1e-5
    )


@pytest.mark.parametrize("norm_pix", [True, False])
def test_matches_transformers_vit_mae(norm_pix):
    torch.manual_seed(0)
    config = ViTMAEConfig(
        image_size=16,
        patch_size=4,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        decoder_hidden_size=16,
        decoder_num_hidden_layers=1,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
        norm_pix_loss=norm_pix,
    )
    model = ViTMAEForPreTraining(config).eval()
    pixels = torch.randn(3, 3, 16, 16)
    out = model(pixel_values=pixels)
    ours = masked_patch_mse(out.logits, model.patchify(pixels), out.mask, norm_pix)
    assert ours.item() == pytest.approx(out.loss.item(), rel=1e-5)
