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
