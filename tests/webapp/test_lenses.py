"""The lens tabs: handlers through the real engine on a tiny MAE run (and tiny CLIP, BERT,
GPT, T5 runs for the language lenses), and each named lens endpoint through gradio_client
against a launched app."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from engine.api import Studio
from tests.language_runs import language_runs, run_folder
from tests.webapp.helpers import free_port, kill_workers
from webapp.app import build_app, launch_options
from webapp.endpoints import LENS_ENDPOINTS
from webapp.lens_attention import AttentionTab
from webapp.lens_fill_mask import FillMaskTab
from webapp.lens_generate import GenerateTab
from webapp.lens_reconstruct import ReconstructTab
from webapp.lens_retrieve import RetrieveTab
from webapp.lens_text2text import Text2TextTab
from webapp.lens_views import ViewsTab
from webapp.lens_zero_shot import ZeroShotTab

TINY_MAE = {
    "steps": 3,
    "batch_size": 16,
    "image_size": 16,
    "warmup_steps": 1,
    "precision": "fp32",
    "depth": 1,
    "decoder_layers": 1,
    "decoder_hidden_size": 32,
}


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    s = Studio(tmp_path_factory.mktemp("home"))
    summary = s.run_foreground({"method": "mae", "dataset": "digits", "params": TINY_MAE})
    assert summary["status"] == "completed", summary["error"]
    yield s
    kill_workers(s)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("pictures") / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def not_an_image(tmp_path_factory):
    path = tmp_path_factory.mktemp("files") / "notes.txt"
    path.write_text("not a picture")
    return str(path)


def _tab(cls, studio):
    with gr.Blocks() as demo:
        tab = cls(studio)
        tab.build()
        tab.wire(demo)
    return tab


def test_picker_lists_the_run_then_hub_ids(studio):
    tab = _tab(AttentionTab, studio)
    choices = tab.picker.dropdown.choices
    assert choices[0][1] == "1" and "mae on digits" in choices[0][0]
    assert choices[-1][1] == "facebook/dino-vits16"
    assert tab.picker.dropdown.value == "1"


def test_without_runs_the_picker_offers_hub_ids_but_picks_none(tmp_path, photo):
    tab = _tab(AttentionTab, Studio(tmp_path / "empty"))
    assert tab.picker.dropdown.value is None
    assert [value for _, value in tab.picker.dropdown.choices] == ["facebook/dino-vits16"]
    *outputs, note = tab.run_ui(photo, None, 0, 0.6)
    assert "ps-error" in note and "no model: pick a run" in note


def test_attention_handler_shows_pictures_or_a_message(studio, photo, not_an_image):
    tab = _tab(AttentionTab, studio)
    heads, mean, mask, details, note = tab.run_ui(photo, "1", 0, 0.6)
    assert "ps-ok" in note and details["num_heads"] == 3 and details["layer"] == 1
    assert len(heads.constructor_args["value"]) == 3 and mean.shape == mask.shape
    *outputs, note = tab.run_ui(not_an_image, "1", 0, 0.6)
    assert outputs == [None] * 4 and "ps-error" in note and "not an image file" in note
    *_, note = tab.run_ui(photo, "1", 7, 0.6)
    assert "ps-error" in note and "has 1 layers" in note
    *_, note = tab.run_ui(None, "1", 0, 0.6)
    assert "Upload an image" in note and "ps-error" not in note
    slider, note = tab.on_model("1")
    assert slider.maximum == 1 and "vit_mae" in note


def test_reconstruct_handler_refuses_another_family(studio, photo, tmp_path):
    from transformers import ViTConfig, ViTModel

    ViTModel(
        ViTConfig(
            image_size=16,
            patch_size=4,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
        )
    ).save_pretrained(tmp_path)
    tab = _tab(ReconstructTab, studio)
    *outputs, note = tab.run_ui(photo, str(tmp_path), 0.75, 0)
    assert outputs == [None] * 5 and "ps-error" in note and "masked autoencoder" in note
    *outputs, note = tab.run_ui(photo, "1", 0.5, 0)
    assert "ps-ok" in note and "8 of 16 patches visible" in note
    assert outputs[0].shape == outputs[3].shape


def test_views_handler_sets_the_grid_columns(studio):
    tab = _tab(ViewsTab, studio)
    assert ("mae", "mae") in tab.method.choices and ("bert", "bert") not in tab.method.choices
    grid, details, note = tab.run_ui("mae", "digits", 0, 2)
    assert grid.constructor_args["columns"] == 3 and len(grid.constructor_args["value"]) == 6
    assert "encoder input" in note


IMAGE_METHODS = (
    "simclr",
    "mae",
    "rotation",
    "jigsaw",
    "colorization",
    "moco",
    "byol",
    "simsiam",
    "dino",
    "dinov2",
    "beit",
    "barlowtwins",
    "vicreg",
)


def test_views_lens_shows_each_of_the_thirteen_image_methods(studio):
    tab = _tab(ViewsTab, studio)
    offered = [value for _, value in tab.method.choices]
    assert sorted(offered) == sorted(IMAGE_METHODS)
    for method in IMAGE_METHODS:
        grid, details, note = tab.run_ui(method, "digits", 0, 1)
        assert "ps-ok" in note, (method, note)
        columns = grid.constructor_args["columns"]
        assert columns >= 3 and len(grid.constructor_args["value"]) == columns, method


def test_image_lens_results_have_the_contracts_keys(studio, photo):
    """What the tabs read is what engine/contract.py promises (the engine casts to it)."""
    from engine import contract

    lenses = studio.lenses
    assert set(lenses.attention(photo, "1")) == set(contract.AttentionResult.__annotations__)
    assert set(lenses.reconstruct(photo, "1")) == set(contract.ReconstructResult.__annotations__)
    assert set(lenses.lens_model_info("reconstruct", "1")) == set(
        contract.LensModelInfo.__annotations__
    )
    assert set(lenses.preview_views("simclr", "digits", 0, 1)) == set(
        contract.ViewsResult.__annotations__
    )
    assert all(set(c) == {"value", "label"} for c in lenses.lens_models("attention"))


@pytest.fixture(scope="module")
def language():
    home, ids = language_runs()
    return Studio(home), ids


def test_language_tab_handlers_answer_or_explain(language, photo):
    studio, ids = language
    tab = _tab(ZeroShotTab, studio)
    assert tab.picker.dropdown.value == ids["clip"]
    plot, table, details, note = tab.run_ui(photo, ids["clip"], "star, ring, heart", "a {}")
    assert "ps-ok" in note and list(plot.columns) == ["label", "probability"]
    assert abs(plot["probability"].sum() - 1) < 1e-6 and len(table) == 3
    *outputs, note = tab.run_ui(photo, ids["bert"], "star, ring", "a {}")
    assert outputs == [None] * 3 and "ps-error" in note and "needs a CLIP model" in note

    tab = _tab(RetrieveTab, studio)
    gallery, details, note = tab.run_ui("a red star", ids["clip"], "shapes", 3, "test", 100)
    assert "ps-ok" in note and len(gallery) == 3 and details["searched"] == 100
    assert gallery[0][1].startswith(f"{details['scores'][0]:.3f} · ")

    tab = _tab(FillMaskTab, studio)
    plot, table, note = tab.run_ui("a small red [MASK]", ids["bert"], 4)
    assert (
        "ps-ok" in note
        and len(plot) == 4
        and list(table.columns) == ["word", "probability", "sentence"]
    )
    *outputs, note = tab.run_ui("a small red star", ids["bert"], 4)
    assert outputs == [None] * 2 and "ps-error" in note and "no mask" in note

    tab = _tab(GenerateTab, studio)
    parts, continuation, details, note = tab.run_ui("a small", ids["gpt"], 8, 0.8, 50, 0)
    assert "ps-ok" in note and parts[0] == ("a small", None)
    assert parts[1:] == ([(continuation, "generated")] if continuation else [])

    tab = _tab(Text2TextTab, studio)
    parts, source, output, details, note = tab.run_ui(
        "a red [MASK] on a blue background", ids["t5"], 2, 8
    )
    assert source == "a red <extra_id_0> on a blue background" and parts[0] == ("a red ", None)
    assert details["spans"][0]["sentinel"] == "<extra_id_0>"


def test_examples_follow_the_model_picked(language, monkeypatch):
    """A run trained on captions gets caption-style examples (and its text box one of them);
    a Hub model everyday ones; switching models swaps the lists and the untouched text."""
    studio, ids = language
    tab = _tab(FillMaskTab, studio)
    assert tab.picker.dropdown.value == ids["bert"]
    examples = tab.examples
    assert tab.text.value == examples.captions[0][0] and "[MASK]" in tab.text.value
    assert all(row[0].startswith("a ") for row in examples.captions)  # shapes' captions
    assert examples.caption_box.visible and not examples.everyday_box.visible
    assert "The capital of France is [MASK]." in [row[0] for row in examples.everyday]
    assert len(examples.boxes) == 2  # captions and shapes share one list
    caption_box, everyday_box, text = examples.update("bert-base-uncased", tab.text.value)
    assert not caption_box.visible and everyday_box.visible
    assert text == examples.everyday[0][0]
    assert examples.update("bert-base-uncased", "my own [MASK].")[2] == gr.skip()
    assert examples.update(ids["bert"], examples.everyday[1][0])[2] == examples.captions[0][0]
    for cls, lens in ((GenerateTab, "generate"), (Text2TextTab, "t5")):
        tab = _tab(cls, studio)
        assert tab.examples.caption_box.visible, lens
    # Zero-shot: a CLIP trained on shapes is offered shapes and their names only.
    tab = _tab(ZeroShotTab, studio)
    assert tab.picker.dropdown.value == ids["clip"] and tab.examples.caption_box.visible
    shapes_rows = tab.examples.captions
    assert shapes_rows and all("circle" in row[1] for row in shapes_rows)
    assert tab.labels.value == shapes_rows[0][1]
    hub = tab.examples.update("openai/clip-vit-base-patch32", tab.labels.value)
    assert hub[-2].visible and not any(box.visible for box in hub[:-2])
    assert hub[-1] == gr.skip()  # shape names are among a Hub CLIP's examples too
    assert "cat" in tab.examples.everyday[0][1]  # which start with the photographs' words
    # The image lenses: a CLIP trained on shapes looks at shapes; a Hub model photos first.
    pictures = _tab(AttentionTab, studio).picture_examples
    assert pictures.caption_box.visible and not pictures.everyday_box.visible
    assert all("shapes-" in row[0] for row in pictures.captions)
    assert "shapes-" not in pictures.everyday[0][0]
    # ... and one trained on scenes at scenes (their names and masks: the Jaccard line).
    scenes = pictures.own["scenes"]
    assert len(scenes) == 4 and all("scenes-" in row[0] for row in scenes)
    assert pictures.rows_for(ids["clip"]) is pictures.captions
    monkeypatch.setattr(studio, "job", lambda job_id: {"dataset": "scenes"})  # a scenes run
    *boxes, picked = pictures.update("7", pictures.captions[0][0])
    assert [box.visible for box in boxes] == [rows is scenes for rows in pictures.lists]
    assert picked == scenes[0][0]  # a shapes picture gives way to the first scene


def test_language_lens_results_have_the_contracts_keys(language, photo):
    from engine import contract

    studio, ids = language
    lenses = studio.lenses
    for result, typed in [
        (lenses.zero_shot(photo, ids["clip"], "star, ring"), contract.ZeroShotResult),
        (
            lenses.retrieve("a red star", ids["clip"], "shapes", 2, "test", 100),
            contract.RetrieveResult,
        ),
        (lenses.fill_mask("a small red [MASK]", ids["bert"], 2), contract.FillMaskResult),
        (lenses.generate("a small", ids["gpt"], 4), contract.GenerateResult),
        (lenses.text2text("a red [MASK] star", ids["t5"], 1, 4), contract.Text2TextResult),
    ]:
        assert set(result) == set(typed.__annotations__), typed.__name__
    prediction = lenses.fill_mask("a small red [MASK]", ids["bert"], 1)["predictions"][0]
    assert set(prediction) == set(contract.FillPrediction.__annotations__)


def test_each_lens_endpoint_through_the_client(studio, photo, not_an_image):
    from gradio_client import Client, handle_file

    demo = build_app(studio)
    port = free_port()
    demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        **launch_options(),
    )
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        assert {f"/{name}" for name in LENS_ENDPOINTS} <= set(endpoints)
        # Real parameter names (README's), and a model is any string, not a Literal of runs.
        parameters = {
            name: {p["parameter_name"]: p["python_type"]["type"] for p in info["parameters"]}
            for name, info in endpoints.items()
        }
        assert list(parameters["/attention"]) == ["image", "model", "layer", "keep", "scale"]
        assert list(parameters["/fill_mask"]) == ["text", "model", "k"]
        assert list(parameters["/views"]) == ["method", "dataset", "seed", "num_images"]
        for name in LENS_ENDPOINTS:
            assert parameters[f"/{name}"].get("model", "str") == "str", name

        heads, mean, mask, details = client.predict(
            handle_file(photo), "1", 0, 0.6, api_name="/attention"
        )
        assert [h["caption"] for h in heads] == ["head 1", "head 2", "head 3"]
        side = Image.open(mean).size[0]
        assert Image.open(mask).size == (side, side) and side % 4 == 0
        assert details["grid"] == 4 and 0.6 <= details["kept_share"] <= 1.0
        assert details["scale"] == "map"  # the default: each map its own range
        *_, shared = client.predict(
            image=handle_file(photo), model="1", scale="shared", api_name="/attention"
        )
        assert shared["scale"] == "shared" and shared["layer"] == details["layer"]

        *panels, details = client.predict(handle_file(photo), "1", 0.75, 2, api_name="/reconstruct")
        original, masked, reconstruction, pasted = (
            np.asarray(Image.open(p).convert("RGB")) for p in panels
        )
        assert details["visible_patches"] == 4 and details["warning"] is None
        cell = original.shape[0] // 4
        hidden = (masked.reshape(4, cell, 4, cell, 3) == 128).all(axis=(1, 3, 4))  # (4, 4)
        shown = ~np.kron(hidden, np.ones((cell, cell), dtype=bool))
        assert hidden.sum() == 12
        assert np.array_equal(pasted[shown], original[shown])  # lossless PNG on the way

        grid, details = client.predict("simclr", "digits", 0, 2, api_name="/views")
        assert len(grid) == 2 * 3 and details["captions"] == ["view 1", "view 2"]

        # The language lenses, on the tiny runs' folders (a folder works like a run id).
        clip = run_folder("clip")
        plot, table, details = client.predict(
            handle_file(photo),
            clip,
            "star, ring, heart",
            "a {}\na small {}",
            "red, blue",
            api_name="/zero_shot",
        )
        assert details["ignored"] == ["red", "blue"]
        assert abs(sum(details["probabilities"]) - 1) < 1e-6
        assert [row[0] for row in table["data"]] == [
            details["labels"][i]
            for i in np.argsort(-np.array(details["probabilities"]), kind="stable")
        ]
        assert details["templates"] == ["a {}", "a small {}"]

        gallery, details = client.predict(
            query="a red star",
            model=clip,
            dataset="shapes",
            k=4,
            split="test",
            samples=100,
            api_name="/retrieve",
        )
        assert len(gallery) == 4 and details["scores"] == sorted(details["scores"], reverse=True)
        assert Image.open(gallery[0]["image"]).size[0] >= 64

        plot, table = client.predict(
            text="a small red <mask> on a blue background",
            model=run_folder("bert"),
            k=3,
            api_name="/fill_mask",
        )
        words = [row[0] for row in table["data"]]
        assert len(words) == 3 == len(set(words)) and "[MASK]" not in table["data"][0][2]

        first = client.predict(
            "a small red", run_folder("gpt"), 10, 1.0, 0, 5, api_name="/generate"
        )
        again = client.predict(
            "a small red", run_folder("gpt"), 10, 1.0, 0, 5, api_name="/generate"
        )
        assert first[1] == again[1] and first[2]["new_tokens"] <= 10

        filled, source, output, details = client.predict(
            "a small red <extra_id_0> on a blue background",
            run_folder("t5"),
            2,
            8,
            api_name="/text2text",
        )
        assert details["filled"] == source.replace("<extra_id_0>", details["spans"][0]["text"])

        with pytest.raises(Exception, match="no mask"):
            client.predict("a small red star", run_folder("bert"), 3, api_name="/fill_mask")
        with pytest.raises(Exception, match="needs a causal language model"):
            client.predict("a", run_folder("t5"), 5, 1.0, 0, 0, api_name="/generate")
        with pytest.raises(Exception, match="not an image file"):
            client.predict(handle_file(not_an_image), "1", 0, 0.6, api_name="/attention")
        with pytest.raises(Exception, match="offline"):
            client.predict(
                handle_file(photo), "facebook/vit-mae-base", 0.75, 0, api_name="/reconstruct"
            )
    finally:
        demo.close()


def test_opening_a_tab_offers_runs_that_finished_after_the_page_loaded(tmp_path):
    """The lens pickers refresh when a tab is selected, not only on page load: a run that
    completes while the page is open becomes the reconstruct lens's model."""
    from webapp.app import build_app
    from webapp.lens_common import all_pickers, refresh_pickers
    from webapp.lens_reconstruct import ReconstructTab

    studio = Studio(tmp_path / "home")
    demo = build_app(studio)
    selects = [
        d for d in demo.config["dependencies"] if any(t[1] == "select" for t in d["targets"])
    ]
    # One handler gets every lens picker's dropdown in and out when a tab is selected.
    assert any(d["inputs"] == d["outputs"] and len(d["outputs"]) >= 5 for d in selects), selects
    with gr.Blocks():
        tab = ReconstructTab(studio)
        tab.build()
    [picker] = all_pickers(tab)
    assert picker.dropdown.value in (None, "") or not picker.dropdown.value.isdigit()
    summary = studio.run_foreground({"method": "mae", "dataset": "digits", "params": TINY_MAE})
    [update] = refresh_pickers([picker])(None)
    job = str(summary["job_id"])
    assert update.value == job and job in [value for _, value in update.choices]
