"""The segmentation protocol on crafted attention maps whose Jaccard is known by hand, and on
real (tiny, random) ViTs: [CLS] row, register tokens skipped, every family the lens takes."""

import threading

import pytest
import torch

from engine.evaluation.segmentation import (
    cls_attention,
    evaluate_segmentation,
    jaccard,
    keep_masks,
    segmentation_scores,
    upsample_masks,
)
from engine.inference.models import LensModel


def test_keep_masks_by_hand():
    # 0.5 alone is under 0.6; with the first 0.2 it reaches 0.7: those two are kept.
    attention = torch.tensor([[0.5, 0.2], [0.2, 0.1]])
    assert keep_masks(attention, 0.6).tolist() == [[True, True], [False, False]]
    # Exactly 0.6 with two patches: no third one.
    assert keep_masks(torch.tensor([[0.3, 0.3], [0.2, 0.2]]), 0.6).sum() == 2
    # Unnormalised maps are shares of their own total; a batch of maps is masked map by map.
    both = keep_masks(torch.stack([attention * 7, attention.flip(0)]), 0.6)
    assert both[0].tolist() == [[True, True], [False, False]]
    assert both[1].tolist() == [[True, False], [True, False]]  # 0.5, then the first 0.2


def test_upsample_and_jaccard_by_hand():
    mask = torch.tensor([[True, False], [False, False]])
    big = upsample_masks(mask, 4)
    assert big.sum() == 4 and big[:2, :2].all()
    truth = torch.zeros(4, 4, dtype=torch.bool)
    truth[:2, :3] = True  # 6 pixels, 4 shared with the kept patch
    assert jaccard(big, truth).item() == pytest.approx(4 / 6)
    assert jaccard(torch.zeros(2, 2), torch.zeros(2, 2)).item() == 1.0  # both empty
    assert jaccard(big, ~big).item() == 0.0


def test_attention_on_the_object_scores_one_and_uniform_attention_does_not():
    # A 4 x 4 grid of 2 px patches; the object is patches (0, 0) and (0, 1).
    truth = torch.zeros(1, 8, 8, dtype=torch.uint8)
    truth[0, :2, :4] = 1
    on_object = torch.zeros(4, 4)
    on_object[0, :2] = 0.5  # all of the mass on the object, half on each patch
    uniform = torch.full((4, 4), 1 / 16)  # 60% of it: 10 patches, 2 of them the object
    scores = segmentation_scores(torch.stack([on_object, uniform])[None], truth)
    assert scores["jaccard_heads"] == [1.0, 0.2]
    assert scores["jaccard_best_head"] == 1.0 and scores["best_head"] == 1
    assert scores["jaccard_mean_heads"] == pytest.approx(0.6)
    # Mean map: object patches 0.28125, the rest 0.03125; 0.5625 and 0.59375 are under 0.6,
    # so two background patches join: Jaccard 2 / 4.
    assert scores["jaccard_mean_map"] == pytest.approx(0.5)
    assert scores["num_images"] == 1 and scores["keep"] == 0.6


def _lens_model(model, model_type, size, patch):
    return LensModel(model, None, model_type, "t", "tiny", None, None, 0, threading.RLock())


def _tiny(kind):
    from transformers import (
        CLIPConfig,
        CLIPModel,
        Dinov2WithRegistersConfig,
        Dinov2WithRegistersModel,
        ViTConfig,
        ViTMAEConfig,
        ViTMAEForPreTraining,
        ViTModel,
    )

    common = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        image_size=16,
        patch_size=4,
    )
    if kind == "vit":
        model = ViTModel(ViTConfig(**common), add_pooling_layer=False)
    elif kind == "vit_mae":
        model = ViTMAEForPreTraining(
            ViTMAEConfig(**common, decoder_hidden_size=16, decoder_num_hidden_layers=1)
        )
    elif kind == "clip":
        vision = dict(common)
        model = CLIPModel(
            CLIPConfig(
                vision_config=vision,
                text_config=dict(
                    hidden_size=32, num_hidden_layers=1, num_attention_heads=4, vocab_size=50
                ),
                projection_dim=16,
            )
        )
    else:
        model = Dinov2WithRegistersModel(Dinov2WithRegistersConfig(**common, num_register_tokens=4))
    model.set_attn_implementation("eager")
    return _lens_model(model.eval(), model.config.model_type, 16, 4)


@pytest.mark.parametrize("kind", ["vit", "vit_mae", "clip", "dinov2_with_registers"])
def test_cls_attention_of_every_family(kind):
    from engine.inference.attention import vision_attentions

    torch.manual_seed(0)
    lm = _tiny(kind)
    pixels = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        maps = cls_attention(lm, pixels)
        rows = vision_attentions(lm, pixels)[-1][:, :, 0, :]  # (3, heads, T)
    assert maps.shape == (3, 4, 4, 4)
    skipped = 5 if kind == "dinov2_with_registers" else 1  # [CLS] + 4 registers
    assert rows.shape[-1] == 16 + skipped
    assert torch.allclose(maps.flatten(2), rows[:, :, skipped:].float())
    images = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
    masks = torch.zeros(5, 16, 16, dtype=torch.uint8)
    masks[:, 4:12, 4:12] = 1
    scores = evaluate_segmentation(lm, images, masks, batch_size=2)
    assert scores["num_images"] == 5 and len(scores["jaccard_heads"]) == 4
    assert 0.0 <= scores["jaccard_mean_heads"] <= scores["jaccard_best_head"] <= 1.0
