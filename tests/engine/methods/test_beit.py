"""BEiT: the k-means visual tokenizer, blockwise masks in training, save and export."""

import pytest
import torch

from engine.config import build_config
from engine.methods.beit import (
    TOKENIZER_FILE,
    BEiT,
    BEiTConfig,
    grid_side,
    min_block,
    num_masked,
)
from engine.models.codebook import assign_codes, fit_codebook, normalise_patches, patchify
from tests.conftest import TINY


def test_patchify_follows_the_vit_patch_order():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    patches = patchify(images, 4)  # (2, 4, 48)
    assert patches.shape == (2, 4, 48)
    # Patch 1 is the top-right 4x4 block (row-major, as a ViT's patch embedding flattens it).
    expected = images[0, :, 0:4, 4:8].permute(1, 2, 0).reshape(-1)
    assert torch.equal(patches[0, 1], expected)


def test_normalised_patches_ignore_brightness_and_contrast():
    gen = torch.Generator().manual_seed(0)
    patch = torch.rand(1, 48, generator=gen)
    a, b = normalise_patches(patch), normalise_patches(0.2 + 0.5 * patch)
    assert a.mean().abs() < 1e-5
    assert torch.allclose(a / a.norm(), b / b.norm(), atol=1e-5)  # same direction
    assert normalise_patches(torch.full((1, 48), 0.7)).abs().max() < 1e-6  # flat -> 0


def test_codebook_is_deterministic_by_seed_and_finds_clear_clusters():
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 6, generator=gen) * 10
    points = (centres[:, None] + 0.1 * torch.randn(4, 50, 6, generator=gen)).reshape(-1, 6)
    first = fit_codebook(points, 4, seed=1)
    assert torch.equal(first, fit_codebook(points, 4, seed=1))
    noisy = torch.randn(500, 6, generator=gen)
    assert not torch.equal(fit_codebook(noisy, 8, seed=1), fit_codebook(noisy, 8, seed=2))
    # Every true centre has a code next to it, and each cluster gets a single code.
    assert torch.cdist(centres, first).min(dim=1).values.max() < 0.2
    codes = assign_codes(points, first).view(4, 50)
    assert all(len(set(row.tolist())) == 1 for row in codes)
    assert len(set(codes[:, 0].tolist())) == 4


def test_codebook_too_large_for_the_data_is_a_clear_error():
    with pytest.raises(ValueError, match="codebook size"):
        fit_codebook(torch.randn(10, 3), 16)


def _config(**params) -> BEiTConfig:
    return build_config(BEiTConfig, "quick", dict(TINY, depth=1, codebook_size=16, **params))


def test_tokenizer_is_fitted_once_saved_and_reused(tmp_path):
    config = _config()
    torch.manual_seed(5)
    first = BEiT.load_data("digits", config, tmp_path).info["codebook"]
    assert first.shape == (16, 4 * 4 * 3) and (tmp_path / TOKENIZER_FILE).exists()
    torch.manual_seed(5)
    assert torch.equal(BEiT.load_data("digits", config).info["codebook"], first)  # same seed
    torch.manual_seed(6)
    assert torch.equal(BEiT.load_data("digits", config, tmp_path).info["codebook"], first)  # resume
    torch.manual_seed(6)
    assert not torch.equal(BEiT.load_data("digits", config).info["codebook"], first)


def test_training_step_masks_about_forty_percent_and_predicts_codes():
    config = _config(image_size=32)  # 8 x 8 patches
    assert num_masked(config) == 25 and min_block(config) == 5
    torch.manual_seed(0)
    data = BEiT.load_data("digits", config)
    method = BEiT(config, data.info)
    assert torch.equal(method.codebook, data.info["codebook"])
    masks = []
    method.model.beit.embeddings.register_forward_hook(
        lambda module, args, kwargs, out: masks.append(kwargs["bool_masked_pos"]), with_kwargs=True
    )
    loss, logs = method.training_step({"images": data.tensors["images"][:32]})
    assert masks[0].shape == (32, 64) and masks[0].dtype == torch.bool
    assert (masks[0].sum(dim=1) <= 25).all() and masks[0].sum(dim=1).float().mean() > 20
    assert logs["mask_ratio"] == pytest.approx(masks[0].float().mean().item())
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(torch.log(torch.tensor(16.0)).item(), rel=0.3)
    # Codes of a view are the nearest code of each of its normalised patches.
    pixels = method.views(data.tensors["images"][:2])
    codes = method.visual_tokens(pixels)
    assert codes.shape == (2, 64) and codes.max() < 16


def test_export_loads_with_from_pretrained_and_keeps_the_codebook(tmp_path):
    from safetensors.torch import load_file
    from transformers import BeitForMaskedImageModeling

    config = _config()
    method = BEiT(config, {"codebook": torch.randn(16, 48)})
    method.export(tmp_path)
    loaded = BeitForMaskedImageModeling.from_pretrained(
        tmp_path / "pretrained", use_safetensors=True
    )
    assert loaded.config.use_mask_token and loaded.config.use_absolute_position_embeddings
    for key, value in method.model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    assert torch.equal(load_file(tmp_path / TOKENIZER_FILE)["codebook"], method.codebook)


def test_shared_relative_position_bias_runs():
    config = _config(position_encoding="shared_relative")
    method = BEiT(config, {"codebook": torch.randn(16, 48)})
    assert method.model.config.use_shared_relative_position_bias
    loss, _ = method.training_step(
        {"images": torch.randint(0, 255, (4, 3, 16, 16), dtype=torch.uint8)}
    )
    assert torch.isfinite(loss)


def test_preview_greys_the_masked_blocks_drawn_as_in_training():
    config = _config(image_size=32)  # 8 x 8 patches of 4 px, 25 masked in blocks
    method = BEiT(config, {"codebook": torch.randn(16, 48)})
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    torch.manual_seed(2)
    views = method.preview_views(images)
    torch.manual_seed(2)
    mask = method.draw_mask(method.views(images))  # the draws training_step makes
    assert [c for c, _ in views] == [
        "view (crop, flip, jitter)",
        "input: 25/64 patches masked in blocks",
    ]
    assert all(v.dtype == torch.uint8 and v.shape == (3, 3, 32, 32) for _, v in views)
    view, masked = views[0][1], views[1][1]
    grey = (masked == 128).all(dim=1)  # (3, 32, 32)
    patch_grey = grey.view(3, 8, 4, 8, 4).all(dim=4).all(dim=2).flatten(1)  # (3, 64)
    assert torch.equal(patch_grey & mask, mask)  # every masked patch is grey
    keep = ~mask.view(3, 8, 1, 8, 1).expand(3, 8, 4, 8, 4).reshape(3, 1, 32, 32)
    assert torch.equal(masked.masked_select(keep), view.masked_select(keep))  # the rest shown
    assert (mask.sum(dim=1) <= 25).all() and mask.sum(dim=1).float().mean() > 20


def test_paper_preset_masks_75_of_196_patches():
    config = build_config(BEiTConfig, "paper", {})
    assert grid_side(config) == 14 and num_masked(config) == 75


def test_init_is_the_beit_codes():
    """Tokens and absolute positions from N(0, 0.02) (transformers leaves them at zero), and
    block l's attention output and second MLP weights at 0.02 / sqrt(2 l)."""
    config = build_config(BEiTConfig, "quick", {"depth": 4})
    model = BEiT(config).model
    embeddings = model.beit.embeddings
    for tensor in (embeddings.cls_token, embeddings.mask_token, embeddings.position_embeddings):
        assert 0.012 < float(tensor.detach().std()) < 0.028
    for depth, layer in enumerate(model.beit.layers, start=1):
        expected = 0.02 / (2 * depth) ** 0.5
        for weight in (layer.attention.o_proj.weight, layer.mlp.fc2.weight):
            assert abs(float(weight.detach().std()) / expected - 1) < 0.1
        assert abs(float(layer.attention.q_proj.weight.detach().std()) / 0.02 - 1) < 0.1
