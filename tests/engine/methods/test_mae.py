import torch

from engine.config import build_config
from engine.methods.mae import MAE, MAEConfig


def test_encoder_sees_only_visible_patches():
    config = build_config(
        MAEConfig, "quick", {"image_size": 16, "patch_size": 4, "mask_ratio": 0.75, "depth": 1}
    )
    method = MAE(config)
    lengths = []
    method.model.vit.layernorm.register_forward_hook(  # the encoder's final norm
        lambda module, args, out: lengths.append(out.shape[1])
    )
    images = torch.randint(0, 255, (2, 3, 16, 16), dtype=torch.uint8)
    loss, _ = method.training_step({"images": images})
    # 16 patches, 25% visible = 4, plus the [CLS] token.
    assert lengths == [1 + 4]
    assert torch.isfinite(loss)
    # Embedding keeps every patch, in order, and leaves the training mask ratio alone.
    method.embed(torch.zeros(2, 3, 16, 16, dtype=torch.uint8))
    assert lengths[-1] == 1 + 16
    assert method.model.config.mask_ratio == 0.75


def test_export_loads_with_from_pretrained(tmp_path):
    from transformers import ViTMAEForPreTraining

    config = build_config(MAEConfig, "quick", {"image_size": 16, "depth": 1})
    method = MAE(config)
    method.export(tmp_path)
    loaded = ViTMAEForPreTraining.from_pretrained(tmp_path / "pretrained", use_safetensors=True)
    for key, value in method.model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


def sincos_table(dim: int, grid: int) -> torch.Tensor:
    """MAE's get_2d_sincos_pos_embed (util/pos_embed.py), written out: a zero row for [CLS],
    then per patch in row-major order the 1-D table of its column over the first half of the
    channels and of its row over the second (the authors' meshgrid puts w first)."""

    def one_d(positions: torch.Tensor, half: int) -> torch.Tensor:
        omega = 1.0 / 10000 ** (torch.arange(half // 2, dtype=torch.float64) / (half / 2))
        angles = positions.double()[:, None] * omega[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    rows = torch.arange(grid).repeat_interleave(grid)
    cols = torch.arange(grid).repeat(grid)
    table = torch.cat([one_d(cols, dim // 2), one_d(rows, dim // 2)], dim=1)
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), table]).float()


def test_patches_know_where_they_are():
    """A fresh MAE has the paper's frozen 2-D sin-cos position tables in its encoder and its
    decoder (transformers 5 leaves both at zero), so its encoder tells an image from the same
    patches shuffled."""
    config = build_config(MAEConfig, "quick", {"image_size": 16, "patch_size": 4, "depth": 1})
    model = MAE(config).model
    encoder = model.vit.embeddings.position_embeddings
    decoder = model.decoder.decoder_pos_embed
    assert torch.allclose(encoder[0], sincos_table(192, 4), atol=1e-6)
    assert torch.allclose(decoder[0], sincos_table(128, 4), atol=1e-6)
    assert not encoder.requires_grad and not decoder.requires_grad
    assert float(model.vit.embeddings.cls_token.detach().std()) > 0.005
    assert float(model.decoder.mask_token.detach().std()) > 0.005

    method = MAE(config)
    image = torch.randint(0, 255, (1, 3, 16, 16), dtype=torch.uint8)
    patches = image.reshape(1, 3, 4, 4, 4, 4)  # (B, C, row, y, col, x)
    shuffled = patches.flip(2).flip(4).reshape(1, 3, 16, 16)  # the patches in another order
    assert not torch.allclose(method.embed(image), method.embed(shuffled), atol=1e-4)
