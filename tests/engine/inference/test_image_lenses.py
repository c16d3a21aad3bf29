"""The image lenses through the engine API on tiny models the tests build and save: attention
maps (ViT, DINO export, MAE encoder, CLIP vision tower), MAE reconstructions, the views lens, and
the shared loader, cache, input checks and thread cap."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from engine.api import Studio
from engine.config import build_config
from engine.inference import images as lens_images
from engine.inference import models as lens_models
from engine.inference.attention import ATTENTION, attention_maps, keep_share_mask
from engine.inference.images import load_image
from engine.inference.models import LensError, ModelCache, check_job, lens_threads, load_lens_model
from engine.inference.reconstruct import RECONSTRUCT, reconstruct

TINY_VIT = dict(
    image_size=16,
    patch_size=4,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
)
TINY_MAE = dict(
    TINY_VIT,
    decoder_hidden_size=32,
    decoder_num_hidden_layers=1,
    decoder_num_attention_heads=2,
    decoder_intermediate_size=64,
    mask_ratio=0.75,
    norm_pix_loss=True,
)
RNG = np.random.default_rng(0)
PHOTO = RNG.integers(0, 256, (40, 56, 3), dtype=np.uint8)  # not square: the lens crops it


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    return Studio(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Saved tiny models, one folder each, as `save_pretrained` writes them."""
    from transformers import (
        CLIPConfig,
        CLIPModel,
        ViTConfig,
        ViTMAEConfig,
        ViTMAEForPreTraining,
        ViTMAEModel,
        ViTModel,
    )

    from engine.methods.dino import DINO, DINOConfig

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    ViTModel(ViTConfig(**TINY_VIT)).save_pretrained(root / "vit")
    ViTMAEForPreTraining(ViTMAEConfig(**TINY_MAE)).save_pretrained(root / "mae")
    ViTMAEModel(ViTMAEConfig(**TINY_MAE)).save_pretrained(root / "mae_encoder")
    vision = {k: v for k, v in TINY_VIT.items()}
    CLIPModel(
        CLIPConfig(
            text_config=dict(
                vocab_size=64,
                hidden_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=64,
                bos_token_id=0,
                eos_token_id=1,
                pad_token_id=1,
            ),
            vision_config=vision,
            projection_dim=16,
        )
    ).save_pretrained(root / "clip")
    config = build_config(
        DINOConfig,
        "quick",
        {"image_size": 16, "depth": 1, "out_dim": 64, "head_hidden_dim": 32, "bottleneck_dim": 16},
    )
    DINO(config).export(root / "dino")  # writes dino/pretrained/
    return root


def _load(path, lens=ATTENTION, home=None):
    return load_lens_model(str(path), lens, home or path)


# ---- attention ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, heads, grid", [("vit", 2, 4), ("mae", 2, 4), ("clip", 2, 4), ("dino/pretrained", 3, 4)]
)
def test_attention_shapes_ranges_and_rows_sum_to_one(folders, name, heads, grid):
    lm = _load(folders / name)
    out = attention_maps(lm, PHOTO, layer=0, keep=0.6)
    assert out["num_heads"] == heads and out["grid"] == grid
    assert out["attention"].shape == (heads, grid, grid)
    assert out["attention"].min() >= 0
    # Each head's [CLS] row: patches plus the [CLS] token itself hold all the weight.
    rows = out["attention"].sum(axis=(1, 2)) + out["prefix"]
    np.testing.assert_allclose(rows, 1.0, atol=1e-5)
    side = out["image"].shape[0]
    assert side % grid == 0 and 200 <= side <= 300
    for picture in [*out["heads"], out["mean"], out["mask"]]:
        assert picture.shape == (side, side, 3) and picture.dtype == np.uint8
    assert len(out["heads"]) == heads
    assert out["keep_mask"].shape == (grid, grid) and out["kept_share"] >= 0.6 - 1e-6
    assert out["layer"] == out["num_layers"]
    low, high = out["share_range"]
    assert 0 <= low <= 1 / grid**2 <= high <= 1


def test_the_shared_scale_draws_uniform_attention_in_the_middle_colour(folders):
    from engine.inference import render

    # A near-uniform map: stretched per map it spans the whole palette; shared, it stays flat.
    flat = np.full((4, 4), 1 / 16) + np.linspace(-1e-4, 1e-4, 16).reshape(4, 4)
    stretched, shared = render.colorize(flat), render.colorize_shares(flat)
    assert np.ptp(stretched.astype(int).sum(axis=2)) > 300
    assert np.ptp(shared.astype(int).sum(axis=2)) <= 6
    uniform = render.colorize_shares(np.ones((4, 4)))
    assert (uniform == render._LUT[128]).all()  # exactly uniform: the middle colour
    peaked = np.zeros((4, 4))
    peaked[1, 2] = 1.0  # all the mass on one patch: the top colour there, the bottom elsewhere
    colours = render.colorize_shares(peaked)
    np.testing.assert_array_equal(colours[1, 2], render._LUT[255])
    np.testing.assert_array_equal(colours[0, 0], render._LUT[0])
    # Scale is a per-map choice: the same numbers, other pictures; unknown scales refused.
    lm = _load(folders / "vit")
    own = attention_maps(lm, PHOTO, layer=0, keep=0.6)
    one = attention_maps(lm, PHOTO, layer=0, keep=0.6, scale="shared")
    assert own["scale"] == "map" and one["scale"] == "shared"
    np.testing.assert_array_equal(own["attention"], one["attention"])
    assert not np.array_equal(own["mean"], one["mean"])
    with pytest.raises(LensError, match="scale must be one of map, shared"):
        attention_maps(lm, PHOTO, scale="log")


def test_mae_encoder_attention_keeps_every_patch_in_order(folders):
    lm = _load(folders / "mae")
    first = attention_maps(lm, PHOTO, layer=1)["attention"]
    second = attention_maps(lm, PHOTO, layer=1)["attention"]
    np.testing.assert_array_equal(first, second)  # no random shuffle of the patches
    assert lm.model.config.mask_ratio == 0.75  # the shared config is left as it was
    # The same maps as the encoder given all patches in order by hand.
    _, pixels = lens_images.model_input(lens_images.center_square(PHOTO), 16, *lm.image_stats)
    lm.model.config.mask_ratio = 0.0
    try:
        out = lm.model.vit(
            pixel_values=pixels, noise=torch.arange(16.0)[None], output_attentions=True
        )
    finally:
        lm.model.config.mask_ratio = 0.75
    by_hand = out.attentions[0][0, :, 0, 1:].reshape(2, 4, 4).detach().numpy()
    np.testing.assert_allclose(first, by_hand, atol=1e-6)


def test_layer_out_of_range_names_the_valid_ones(folders):
    lm = _load(folders / "vit")
    with pytest.raises(LensError, match="has 2 layers"):
        attention_maps(lm, PHOTO, layer=5)
    assert attention_maps(lm, PHOTO, layer=-1)["layer"] == 2


def test_keep_share_mask_keeps_the_fewest_top_cells():
    values = np.array([[0.5, 0.1], [0.3, 0.1]])
    assert keep_share_mask(values, 0.5).tolist() == [[True, False], [False, False]]
    assert keep_share_mask(values, 0.6).tolist() == [[True, False], [True, False]]
    assert keep_share_mask(values, 1.0).all()


# ---- reconstruction ----------------------------------------------------------------------
def test_reconstruct_panels_and_pasted_equals_original_on_visible_patches(folders):
    lm = _load(folders / "mae", RECONSTRUCT)
    out = reconstruct(lm, PHOTO, mask_ratio=0.75, seed=3)
    panels = ["original", "masked", "reconstruction", "pasted"]
    side = out["original"].shape[0]
    for name in panels:
        assert out[name].shape == (side, side, 3) and out[name].dtype == np.uint8, name
    assert out["mask"].shape == (4, 4) and out["num_patches"] == 16
    assert out["visible_patches"] == 4 == int((~out["mask"]).sum())
    assert out["warning"] is None and np.isfinite(out["loss"])
    pixel_hidden = np.kron(out["mask"], np.ones((side // 4, side // 4), dtype=bool))
    visible = ~pixel_hidden
    assert np.array_equal(out["pasted"][visible], out["original"][visible])
    assert np.array_equal(out["pasted"][pixel_hidden], out["reconstruction"][pixel_hidden])
    assert (out["masked"][pixel_hidden] == 128).all()
    assert np.array_equal(out["masked"][visible], out["original"][visible])
    # The seed picks the mask; the shared config's ratio is untouched.
    assert np.array_equal(reconstruct(lm, PHOTO, 0.75, seed=3)["mask"], out["mask"])
    assert lm.model.config.mask_ratio == 0.75
    nothing_hidden = reconstruct(lm, PHOTO, mask_ratio=0.0, seed=0)
    assert np.array_equal(nothing_hidden["pasted"], nothing_hidden["original"])


def test_norm_pix_predictions_are_unnormalised_per_patch(folders):
    """A decoder that predicted the normalised target exactly gives back the original."""
    lm = _load(folders / "mae", RECONSTRUCT)
    model = lm.model

    class Perfect(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def __getattr__(self, name):
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self.inner, name)

        def forward(self, pixel_values, noise):
            out = self.inner(pixel_values=pixel_values, noise=noise)
            target = self.inner.patchify(pixel_values)
            mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            out.logits = (target - mean) / (var + 1e-6) ** 0.5
            return out

    perfect = lens_models.LensModel(
        Perfect(), None, "vit_mae", "x", "perfect", None, lm.weight_names, 0
    )
    out = reconstruct(perfect, PHOTO, mask_ratio=0.75, seed=1)
    difference = np.abs(out["reconstruction"].astype(int) - out["original"].astype(int))
    assert difference.max() <= 1 and out["loss"] < 1e-6


def test_a_checkpoint_without_decoder_warns_instead_of_drawing_noise(folders):
    lm = _load(folders / "mae_encoder", RECONSTRUCT)
    out = reconstruct(lm, PHOTO, mask_ratio=0.5, seed=0)
    assert "no decoder" in out["warning"]
    assert out["reconstruction"] is None and out["pasted"] is None and out["loss"] is None
    assert out["original"].dtype == np.uint8 and out["visible_patches"] == 8


def test_reconstruct_refuses_bad_settings(folders):
    lm = _load(folders / "mae", RECONSTRUCT)
    with pytest.raises(LensError, match="mask ratio"):
        reconstruct(lm, PHOTO, mask_ratio=1.0)


# ---- loader, cache, inputs ---------------------------------------------------------------
def test_loader_refuses_a_pickle_folder(tmp_path, folders):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text((folders / "vit" / "config.json").read_text())
    torch.save({"w": torch.zeros(1)}, folder / "pytorch_model.bin")
    with pytest.raises(LensError, match="pickle"):
        _load(folder)


def test_wrong_family_is_named(folders):
    with pytest.raises(
        LensError, match="'vit' model; the MAE reconstruction lens needs a masked autoencoder"
    ):
        _load(folders / "vit", RECONSTRUCT)


def test_jobs_without_a_fitting_model_are_explained(tmp_path):
    job = {
        "id": 4,
        "method": "simclr",
        "backbone": "resnet18",
        "status": "completed",
        "run_dir": str(tmp_path / "runs" / "4"),
    }
    with pytest.raises(
        LensError,
        match=r"job 4 \(simclr, resnet18\) exported no "
        "transformers model; the attention lens needs a ViT",
    ):
        check_job(job, ATTENTION)
    with pytest.raises(LensError, match="no checkpoint yet"):
        check_job(dict(job, status="running"), ATTENTION)


def test_offline_hub_id_fails_at_once_with_one_line(studio):
    with pytest.raises(ValueError, match="cannot be reached") as caught:
        studio.lenses.attention(PHOTO, "facebook/dino-vits16")
    assert "\n" not in str(caught.value)


def test_unknown_run_id(studio):
    with pytest.raises(RuntimeError, match="no job 99"):
        studio.lenses.attention(PHOTO, "99")


def test_image_checks(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a picture")
    with pytest.raises(LensError, match="notes.txt is not an image file"):
        load_image(str(text))
    big = tmp_path / "big.png"
    Image.new("RGB", (300, 200)).save(big)
    with pytest.raises(LensError, match=r"300x200 \(0.1 megapixels\).*at most"):
        load_image(str(big), max_pixels=50_000)
    assert load_image(str(big)).shape == (200, 300, 3)
    grey = load_image(np.zeros((5, 7), dtype=np.float32))
    assert grey.shape == (5, 7, 3) and grey.dtype == np.uint8
    with pytest.raises(LensError, match="no image"):
        load_image(None)


def test_model_cache_evicts_least_recently_used_by_bytes():
    def item(name, nbytes):
        return lambda: lens_models.LensModel(None, None, "vit", name, name, None, None, nbytes)

    cache = ModelCache(max_bytes=250)
    cache.get("a", item("a", 100))
    cache.get("b", item("b", 100))
    cache.get("a", item("a", 100))  # a is now the most recent
    cache.get("c", item("c", 100))  # 300 > 250: b goes
    assert cache.keys() == ["a", "c"]
    cache.get("huge", item("huge", 1000))  # alone over the bound: kept on its own
    assert cache.keys() == ["huge"]


def test_lens_threads_caps_then_restores(monkeypatch):
    monkeypatch.setenv("PRETEXT_LENS_THREADS", "1")
    before = torch.get_num_threads()
    with lens_threads():
        assert torch.get_num_threads() == 1
        with lens_threads():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


# ---- through the studio: a trained run, the views lens -----------------------------------
@pytest.fixture(scope="module")
def mae_run(studio):
    summary = studio.run_foreground(
        {
            "method": "mae",
            "dataset": "digits",
            "params": {
                "steps": 3,
                "batch_size": 16,
                "image_size": 16,
                "warmup_steps": 1,
                "precision": "fp32",
                "depth": 1,
                "decoder_layers": 1,
                "decoder_hidden_size": 32,
            },
        }
    )
    assert summary["status"] == "completed", summary["error"]
    return str(summary["job_id"])


def test_a_trained_run_is_listed_and_opens_in_both_lenses(studio, mae_run):
    for lens in ("attention", "reconstruct"):
        values = [c["value"] for c in studio.lenses.lens_models(lens)]
        assert values[0] == mae_run and "facebook/" in values[-1]
    out = studio.lenses.attention(PHOTO, mae_run)
    assert out["num_layers"] == 1 and out["grid"] == 4
    out = studio.lenses.reconstruct(PHOTO, mae_run, 0.75, 0)
    assert out["warning"] is None and out["norm_pix_loss"]
    info = studio.lenses.lens_model_info("reconstruct", mae_run)
    assert info["decoder"] and info["image_size"] == 16


def test_views_of_simclr_and_mae(studio):
    out = studio.lenses.preview_views("simclr", "digits", seed=1, num_images=3)
    assert out["columns"] == 3 and out["captions"] == ["view 1", "view 2"]
    assert len(out["items"]) == 3 * 3
    assert all(p.dtype == np.uint8 and p.ndim == 3 for p, _ in out["items"])
    again = studio.lenses.preview_views("simclr", "digits", seed=1, num_images=3)
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(out["items"], again["items"]))
    other = studio.lenses.preview_views("simclr", "digits", seed=2, num_images=3)
    assert not np.array_equal(out["items"][1][0], other["items"][1][0])

    mae = studio.lenses.preview_views("mae", "digits", seed=0, num_images=2)
    caption = mae["captions"][1]
    assert caption == "encoder input: 16/64 patches"  # quick: 32 px, 4 px patches, 75%
    masked = mae["items"][2][0]  # image 1's encoder input, upscaled by a whole factor
    factor = masked.shape[0] // 32
    cells = masked[:: factor * 4, :: factor * 4]  # one pixel per patch (top left)
    patch_grey = np.array(
        [
            [
                (
                    masked[
                        r * factor * 4 : (r + 1) * factor * 4, c * factor * 4 : (c + 1) * factor * 4
                    ]
                    == 128
                ).all()
                for c in range(8)
            ]
            for r in range(8)
        ]
    )
    assert cells.shape[:2] == (8, 8) and patch_grey.sum() == 48


def test_views_built_on_meta_equal_views_built_for_real():
    """The lens builds methods on the meta device (no weights); their views are the same."""
    from engine.data.datasets import load_dataset
    from engine.inference import views_preview

    images = load_dataset("digits", "train", 32).images[:3]
    for method in ("simclr", "mae"):
        meta = views_preview.build_method(method)
        assert views_preview._on_meta(meta)
        from_meta = views_preview._seeded_views(meta, images, 5)
        real = views_preview.build_method(method, real=True)
        assert not views_preview._on_meta(real)
        from_real = views_preview._seeded_views(real, images, 5)
        for (caption, a), (_, b) in zip(from_meta, from_real):
            assert torch.equal(a, b), (method, caption)


def test_views_refuses_text_methods(studio):
    with pytest.raises(LensError, match="bert trains on text"):
        studio.lenses.preview_views("bert", "digits")


def test_examples_are_written_once(studio):
    found = studio.lenses.lens_examples()
    names = [e["name"] for e in found]
    assert any(n.startswith("shapes-") for n in names)
    assert sum(n.startswith("scenes-") for n in names) == 4
    assert all(Image.open(e["path"]).size[0] > 0 for e in found)
    assert studio.lenses.lens_examples() == found
    json.dumps(found)
    # Zero-shot offers each kind its own words.
    labels = {r["name"].partition("-")[0]: r["labels"] for r in studio.lenses.zero_shot_examples()}
    assert "circle" in labels["shapes"] and "ice cream" in labels["scenes"]
    assert "tree" not in labels["shapes"] and "circle" not in labels["scenes"]
