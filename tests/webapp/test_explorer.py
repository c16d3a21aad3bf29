"""The Embeddings tab's handlers through the real engine API (raw pixels: no model to train),
its plain helpers, and the public `/embeddings` endpoint through gradio_client."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
import pytest

from engine.api import Studio
from engine.inference.embeddings import sample_rows
from engine.inference.projections import read_csv
from tests.webapp.helpers import free_port
from webapp import endpoints
from webapp.explorer_maps import (
    SAME_ARCH,
    map_frame,
    resolve_b,
    search_rows,
    selection_rows,
    selection_text,
    traces,
)
from webapp.explorer_tab import ExplorerTab

SAMPLES = 150


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    return Studio(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def tab(studio):
    with gr.Blocks() as demo:
        tab = ExplorerTab(studio)
        tab.build()
        tab.wire(demo)
    return tab


NAMES = [
    "plot_a",
    "plot_b",
    "knn_a",
    "knn_b",
    "note",
    "views",
    "gallery",
    "selection",
    "csv",
    "status",
    "colour_by",
    "legend",
    "plot3_a",
    "plot3_b",
    "stale",
    "maps",
    "found",
]


def draw(
    tab,
    model_a="pixels",
    model_b="",
    projection="pca",
    dataset="digits",
    texts="none",
    dims=2,
    search="",
):
    """The draw handler's answer by output name ("note", "views", ...); None where unchanged."""
    out = tab.draw(
        model_a,
        model_b,
        dataset,
        "train",
        SAMPLES,
        projection,
        15,
        0.1,
        20,
        texts,
        "label",
        dims,
        search,
        progress=None,
    )
    assert set(out) <= set(tab.draw_outputs)
    return {name: out.get(getattr(tab, name)) for name in NAMES}


class Event:
    """What the selection script sends: gr.EventData keeps it in `_data`."""

    def __init__(self, **data):
        self._data = data


def test_draw_gives_one_colour_group_per_label(tab):
    out = draw(tab)
    frame = out["plot_a"].value
    columns = frame["columns"] if isinstance(frame, dict) else list(frame.columns)
    assert {"x", "y", "label", "index", "text"} <= set(columns)
    view = out["views"]["a"]
    assert view["num_points"] == SAMPLES and len(map_frame(view)) == SAMPLES
    assert map_frame(view)["label"].nunique() == 10  # digits 0-9
    assert out["plot_a"].color_map["3"] == tab.plot_update(view).color_map["3"]
    assert "k-NN" in out["knn_a"] and "raw pixels" in out["knn_a"]
    assert out["plot_b"].visible == "hidden" and out["knn_b"] == "" and out["note"] == ""


def test_a_map_can_be_coloured_by_a_nuisance_factor(tab):
    out = draw(tab, dataset="shapes")
    view = out["views"]["a"]
    assert out["colour_by"].choices[0] == ("label", "label")
    assert {"color", "background", "size"} <= {c[0] for c in out["colour_by"].choices}
    assert set(view["factor_knn"]) >= {"color", "background"}
    assert "color" in out["knn_a"] and "label" in out["knn_a"]
    assert "diamond" in out["legend"] and "ps-swatch" in out["legend"]
    recoloured = tab.recolour(out["views"], "color")
    plot_a, legend = recoloured[tab.plot_a], recoloured[tab.legend]
    assert "<b>color</b>" in legend and "diamond" not in legend
    frame = plot_a.value
    columns = frame["columns"] if isinstance(frame, dict) else list(frame.columns)
    assert "color" in columns and plot_a.color == "color"
    assert set(plot_a.color_map) >= set(view["points"]["factors"]["color"])
    assert plot_a.color_map["red"] == "#d63a3a"  # a colour factor is drawn in its colours
    assert tab.plot_b not in recoloured  # no second map drawn
    assert tab.recolour({}, "color") == gr.skip()


def test_the_endpoint_shape_has_one_trace_per_label(tab):
    view = draw(tab)["views"]["a"]
    found = traces(view)
    assert [t["name"] for t in found] == [str(d) for d in range(10)]
    assert sum(len(t["x"]) for t in found) == SAMPLES
    for trace in found:
        rows = [i for i, label in enumerate(view["points"]["label"]) if label == trace["name"]]
        assert trace["index"] == [view["points"]["index"][i] for i in rows]


def test_text_points_get_their_own_group():
    view = {
        "class_names": ["circle", "star"],
        "points": {
            "x": [0.0, 1.0, 2.0],
            "y": [0.0, 1.0, 2.0],
            "index": [5, 0, 1],
            "label": ["star", "circle", "star"],
            "kind": ["image", "text", "text"],
            "text": ["", "a circle", "a star"],
        },
    }
    assert [t["name"] for t in traces(view)] == ["circle · text", "star", "star · text"]


def test_selecting_points_shows_their_images_only(tab):
    views = draw(tab)["views"]
    gallery, text = tab.on_select(views, Event(map="a", positions=[4, 0, 4, 99999, -1]))
    assert len(gallery) == 2
    picture, caption = gallery[0]
    assert picture.shape == (32, 32, 3)  # small thumbnails
    index, label = views["a"]["points"]["index"][4], views["a"]["points"]["label"][4]
    assert caption == f"#{index} · {label}"
    assert text.startswith("**2 selected**")
    assert tab.on_select(views, Event(map="a", positions=[]))[0] == []
    assert tab.on_select({}, Event(map="a", positions=[1]))[0] == []


def test_side_by_side_maps_share_their_samples(tab):
    out = draw(tab, model_b="pixels:16")
    a, b = out["views"]["a"], out["views"]["b"]
    assert a["points"]["index"] == b["points"]["index"]
    assert out["plot_b"].visible and "16 px" in out["knn_b"]
    with open(out["csv"].value["path"], encoding="utf-8") as handle:
        rows = read_csv(handle.read())
    assert len(rows["x"]) == 2 * SAMPLES
    assert set(rows["model"]) == {"raw pixels at 32 px", "raw pixels at 16 px"}
    assert rows["index"][:SAMPLES] == a["points"]["index"]
    assert rows["x"][:3] == pytest.approx(a["points"]["x"][:3], rel=1e-5)


def test_errors_are_shown_not_raised(tab):
    out = draw(tab, model_a="random:nonsense")
    assert "ps-error" in out["note"] and "nonsense" in out["note"]
    out = draw(tab, model_a="pixels", dataset="captions")
    assert "ps-error" in out["note"] and "text corpus" in out["note"]
    assert "Pick a model" in draw(tab, model_a="")["note"]


def test_model_b_defaults_to_the_random_init_of_a():
    assert resolve_b("3", SAME_ARCH) == "random:3"
    assert resolve_b("pixels", SAME_ARCH) is None
    assert resolve_b("3", "") is None and resolve_b("3", "pixels") == "pixels"


def test_selection_helpers():
    view = {"points": {"index": [10, 11, 12], "label": ["a", "b", "a"]}}
    assert selection_rows(view, [2, 0, 2, 7, "x"]) == [2, 0]
    assert selection_text(view, [0, 2]).startswith("**2 selected**: 2 × a")
    texts = {
        "points": {
            "index": [0, 1],
            "label": ["star", "ring"],
            "kind": ["image", "text"],
            "text": ["", "a small ring"],
        }
    }
    assert selection_text(texts, [0, 1]).endswith("\n- ring: a small ring")


def settings(tab, views, projection="pca", dims=2, perplexity=20, model_b=""):
    """`on_settings` as the browser calls it when an input changes: {output name: update}."""
    values = ["pixels", model_b, "digits", "train", SAMPLES, projection, 15, 0.1, perplexity]
    out = tab.on_settings(*values, "none", dims, views)
    return dict(zip(["umap_box", "tsne_box", "stale", "maps"], out))


def test_changing_the_projection_greys_the_maps_until_draw_redraws_them(tab):
    views = draw(tab)["views"]
    # Before any Draw nothing is stale; the sliders follow the projection chosen.
    first = settings(tab, {}, "umap")
    assert first["umap_box"].visible and not first["tsne_box"].visible and first["stale"] == ""
    moved = settings(tab, views, "tsne")
    assert moved["tsne_box"].visible and not moved["umap_box"].visible
    assert "These maps show PCA: press Draw for t-SNE (perplexity 20)" in moved["stale"]
    assert moved["maps"].elem_classes == ["ps-stale"]
    # A parameter of another projection changes nothing; back to what is drawn: not stale.
    back = settings(tab, views, "pca", perplexity=50)
    assert back["stale"] == "" and back["maps"].elem_classes == []
    assert "press Draw to redraw" in settings(tab, views, model_b="pixels:16")["stale"]
    assert "3-D" in settings(tab, views, dims=3)["stale"]
    # Draw draws what the inputs say: its axes and its points are the same projection's.
    out = draw(tab, projection="tsne")
    assert out["plot_a"].x_title == "t-SNE 1" and out["views"]["a"]["projection"] == "tsne"
    assert out["stale"] == "" and out["maps"].elem_classes == []
    assert settings(tab, out["views"], "tsne")["stale"] == ""


def test_the_3d_view_draws_three_axes_with_plotly(tab):
    out = draw(tab, model_b="pixels:16", dims=3)
    assert out["plot_a"].visible == out["plot_b"].visible == "hidden"
    assert out["plot3_a"].visible and out["plot3_b"].visible
    figure = out["plot3_a"].value  # gr.Plot's payload: the plotly figure as JSON
    assert figure["type"] == "plotly"
    import json

    layout = json.loads(figure["plot"])["layout"]
    assert [layout["scene"][f"{a}axis"]["title"]["text"] for a in "xyz"] == ["PC 1", "PC 2", "PC 3"]
    assert len(out["views"]["a"]["points"]["z"]) == SAMPLES
    with open(out["csv"].value["path"], encoding="utf-8") as handle:
        assert len(read_csv(handle.read())["z"]) == 2 * SAMPLES
    assert "3-D" in out["knn_a"]


def test_search_picks_the_points_whose_label_or_caption_holds_the_words(tab):
    views = draw(tab, dataset="shapes")["views"]
    p = views["a"]["points"]
    found = search_rows(views["a"], "Red  star")
    assert found and all(p["label"][r] == "star" and "red" in p["text"][r] for r in found)
    assert len(found) < sum(label == "star" for label in p["label"])
    assert search_rows(views["a"], "") == [] and search_rows(None, "star") == []
    gallery, text, plot3_a, _, rows = tab.on_search(views, "red star")
    assert rows == found and len(gallery) == min(len(found), 48)
    assert text.startswith("Search “red star”: **") and plot3_a == gr.skip()
    assert tab.on_search(views, "zebra")[1].startswith("No point")
    assert "Draw a map first" in tab.on_search({}, "star")[1]
    # In 3-D the found points are a trace of their own, drawn on top.
    out = draw(tab, dataset="shapes", dims=3, search="red star")
    assert out["found"] == found and len(out["gallery"]) == min(len(found), 48)
    import json

    names = [t["name"] for t in json.loads(out["plot3_a"].value["plot"])["data"]]
    assert names[-1] == f"found ({len(found)})"


def test_the_tab_starts_with_the_umap_status_and_projection_controls(tab):
    assert "UMAP" in tab.status.value
    umap_box, tsne_box = tab.on_projection("umap")
    assert umap_box.visible and not tsne_box.visible


def test_embeddings_endpoint_through_gradio_client(studio):
    from gradio_client import Client

    with gr.Blocks() as demo:
        endpoints.register(studio)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        result = client.predict(
            "pixels", "digits", 120, "pca", None, "test", "none", api_name="/embeddings"
        )
        assert result["num_points"] == 120 and result["projection"] == "pca"
        assert [t["name"] for t in result["traces"]] == [str(d) for d in range(10)]
        assert sum(len(t["x"]) for t in result["traces"]) == 120
        assert 0 <= result["knn_top1"] <= 1
        cube = client.predict(
            model="pixels",
            dataset="digits",
            samples=60,
            split="test",
            dims=3,
            api_name="/embeddings",
        )
        assert cube["dims"] == 3 and sum(len(t["z"]) for t in cube["traces"]) == 60
        with pytest.raises(Exception, match="unknown projection"):
            client.predict(
                "pixels", "digits", 50, "isomap", None, "train", "none", api_name="/embeddings"
            )
    finally:
        demo.close()


def test_a_dragged_box_in_a_browser_shows_the_images_behind_it(studio):
    """The selection script on a real page: draw raw pixels, drag a box over map A, and see
    the gallery fill with those points (skipped without Debian's chromium and playwright)."""
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    sync_api = pytest.importorskip("playwright.sync_api")
    if chromium is None:
        pytest.skip("chromium is not installed")
    with gr.Blocks() as demo:
        tab = ExplorerTab(studio)
        tab.build()
        tab.wire(demo)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=chromium,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"http://127.0.0.1:{port}/", wait_until="load")
            model = page.get_by_label("Model", exact=True)
            model.fill("pixels")
            model.press("Enter")
            page.get_by_label("test", exact=True).check()
            page.get_by_label("Samples", exact=True).fill("120")
            page.get_by_role("button", name="Draw").click()
            points = page.locator("#ps-map-a g.mark-symbol.role-mark path")
            points.first.wait_for(timeout=120_000)
            assert points.count() == 120
            # Vega draws the points in the frame's order (the script counts on it).
            label = points.nth(5).get_attribute("aria-label")
            index = int(label.split("index: ")[1].split(";")[0])
            assert index == sample_rows(360, 120).tolist()[5]
            box = page.locator("#ps-map-a svg").bounding_box()
            page.mouse.move(box["x"] + 5, box["y"] + 5)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=4)
            page.mouse.move(box["x"] + box["width"] - 5, box["y"] + box["height"] - 5, steps=4)
            page.mouse.up()
            page.locator("#ps-explorer-gallery img").first.wait_for(timeout=60_000)
            page.get_by_text("selected").first.wait_for(timeout=10_000)
            assert page.locator("#ps-explorer-gallery img").count() == 48  # MAX_THUMBS of 120
            # explorer.js outlines the selection after the gallery arrives: wait for it (a
            # loaded machine once read the strokes before they were drawn).
            outlined = """() => Array.from(document.querySelectorAll(
                '#ps-map-a g.mark-symbol.role-mark path')).filter(p => p.style.stroke).length"""
            page.wait_for_function(f"({outlined})() === 120", timeout=30_000)

            # Another projection greys the maps out until Draw draws it, under its own axes.
            def where() -> list:
                return [p.get_attribute("transform") for p in points.all()[:10]]

            pca_points = where()
            page.get_by_label("t-SNE", exact=True).check()
            page.get_by_text("These maps show PCA: press Draw for t-SNE").wait_for(timeout=30_000)
            assert page.locator(".ps-stale #ps-map-a").count() == 1
            page.get_by_text("t-SNE perplexity").wait_for(timeout=10_000)  # its slider shown
            page.get_by_role("button", name="Draw").click()
            page.locator("#ps-map-a").get_by_text("t-SNE 1").wait_for(timeout=120_000)
            page.wait_for_timeout(1000)
            assert page.locator(".ps-stale").count() == 0
            assert where() != pca_points  # t-SNE's points under t-SNE's axes
            # The 3-D view: plotly, on the same sample.
            page.get_by_label("PCA (instant)", exact=True).check()
            page.get_by_label("3-D", exact=True).check()
            page.get_by_role("button", name="Draw").click()
            page.locator("#ps-map3-a .js-plotly-plot").first.wait_for(timeout=120_000)
            page.wait_for_timeout(1000)
            assert page.locator(".ps-stale").count() == 0
            assert not errors, errors
            browser.close()
    finally:
        demo.close()


def test_the_selection_script_comes_from_its_file(tab):
    """webapp/explorer.js is the bridge's js_on_load, read when the tab is built."""
    from webapp.explorer_tab import SELECT_JS

    script = SELECT_JS.read_text(encoding="utf-8")
    assert tab.bridge.js_on_load == script
    assert "window.__psExplorer" in script and "bridge.trigger('select'" in script
