"""Embeddings tab: a 2-D map (PCA, UMAP or t-SNE) of a model's embeddings coloured by label,
beside the same samples under a second model (by default the random initialisation of the
first), with the images behind a clicked point or a dragged box, k-NN accuracy and a CSV; or
the same projection in 3-D (plotly, as TensorBoard's projector); and a search that picks the
points whose label or caption holds the words.

The maps are `gr.ScatterPlot`s (hover: label, index, caption). Their own brush selects an x
range only, so a small script (webapp/explorer.js, run by a gr.HTML bridge) turns a click or a
dragged box on either map into the row positions of the points under it, outlines the same
points on both maps, and sends them to `on_select`, which fills the gallery with those images
only. Everything heavy (embedding, projection, caches) is `studio.project`; handlers are thin.

Only Draw computes. Changing the projection, its parameters or any other input the maps
depend on greys the maps out under a "press Draw" line (`on_settings`, which also shows the
projection's own sliders) until Draw has drawn what the inputs say, so a map is never shown
under another projection's axis titles. Draw's one progress bar is on the first map.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from engine.contract import EmbeddingMap, EmbeddingModel, Studio
from webapp.errors import error_note
from webapp.explorer_maps import (
    AXIS,
    HOVER,
    LEGEND_CSS,
    MAX_THUMBS,
    SAME_ARCH,
    color_map,
    colour_choices,
    dataset_choices,
    figure_3d,
    found_text,
    knn_text,
    legend_html,
    map_frame,
    projection_params,
    resolve_b,
    search_rows,
    selection_rows,
    selection_text,
    stale_note,
    write_csv,
)
from webapp.figures import Updates, message

NO_MODEL = ""
PROJECTIONS = [("PCA (instant)", "pca"), ("UMAP", "umap"), ("t-SNE", "tsne")]
VIEWS = [("2-D maps", 2), ("3-D", 3)]
STALE_CLASS = "ps-stale"  # the maps' column while they show other settings than the inputs
STALE_CSS = f"""
.{STALE_CLASS} .ps-map {{ pointer-events: none; }}
.{STALE_CLASS} .ps-map > :not(.wrap) {{ opacity: 0.3; filter: grayscale(1); }}
#ps-explorer-gallery .caption-label {{ max-width: none; left: var(--block-label-margin);
  white-space: normal; line-height: 1.2; }}
"""  # .wrap: Gradio's progress overlay, which stays bright; gallery captions wrap, not cut
# After a search or a Draw: outline the found points on the 2-D maps (the selection script's
# `outline`), once Vega has drawn them.
OUTLINE_JS = """(found) => { if (!Array.isArray(found) || !found.length) return;
  const go = () => window.__psExplorer && window.__psExplorer.outline(found);
  go(); setTimeout(go, 600); }"""  # nothing found: leave a click's outline alone
SEARCH_JS = """(found) => window.__psExplorer && window.__psExplorer.outline(
  Array.isArray(found) ? found : [])"""  # a search replaces the outline, even with none
TEXT_MODES = [("images only", "none"), ("+ class prompts", "prompts"), ("+ captions", "captions")]
DEFAULT_SAMPLES = 2000
MAX_SAMPLES = 10_000
PLOT_HEIGHT = 430
SELECT_JS = Path(__file__).with_name("explorer.js")  # the click-and-box selection script


def select_js() -> str:
    """The selection script, read when the tab is built (a function body for js_on_load)."""
    return SELECT_JS.read_text(encoding="utf-8")


# ---- the tab -----------------------------------------------------------------------------
class ExplorerTab:
    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        studio.warm_up_umap()  # background thread; PRETEXT_UMAP_WARMUP=0 turns it off

    def model_choices(self) -> tuple[list[tuple[str, str]], list[EmbeddingModel]]:
        models = self.studio.embedding_models()
        return [(m["label"], m["value"]) for m in models], models

    def build(self) -> None:
        choices, models = self.model_choices()
        runs = [m for m in models if m["kind"] == "run"]
        first = runs[0]["value"] if runs else (choices[0][1] if choices else None)
        datasets = self.studio.datasets()
        first_dataset = runs[0]["dataset"] if runs else "digits"
        gr.Markdown(
            "Map a model's embeddings of a dataset to 2-D, coloured by label: points "
            "that cluster by class mean the model learned what the labels mean. "
            "**Click a point or drag a box** on a map to see the images behind it "
            "(the same points are outlined on both maps).",
            elem_classes=["ps-hint"],
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=270):
                with gr.Row(equal_height=False):
                    self.model_a = gr.Dropdown(
                        choices,
                        value=first,
                        allow_custom_value=True,
                        label="Model",
                        scale=5,
                        info="A finished run, a network at random init, raw pixels, or a Hub id",
                    )
                    self.refresh_btn = gr.Button("↻", size="sm", scale=0, min_width=44)
                self.model_b = gr.Dropdown(
                    [
                        ("Random init of the same network", SAME_ARCH),
                        ("(none)", NO_MODEL),
                        *choices,
                    ],
                    value=SAME_ARCH,
                    allow_custom_value=True,
                    label="Compare with",
                    info="Drawn beside it on the same samples",
                )
                self.dataset = gr.Dropdown(
                    dataset_choices(datasets), value=first_dataset, label="Dataset"
                )
                with gr.Row():
                    self.split = gr.Radio(
                        ["train", "test"], value="train", label="Split", min_width=120
                    )
                    self.samples = gr.Number(
                        DEFAULT_SAMPLES,
                        label="Samples",
                        precision=0,
                        minimum=2,
                        maximum=MAX_SAMPLES,
                        min_width=110,
                        info=f"up to {MAX_SAMPLES:,}",
                    )
                with gr.Row():
                    self.projection = gr.Radio(
                        PROJECTIONS, value="pca", label="Projection", min_width=150, scale=3
                    )
                    self.dims = gr.Radio(
                        VIEWS,
                        value=2,
                        label="View",
                        min_width=100,
                        scale=2,
                        info="3-D: drag to turn",
                    )
                with gr.Group(visible=False) as self.umap_box:
                    self.n_neighbors = gr.Slider(
                        2,
                        100,
                        15,
                        step=1,
                        label="UMAP n_neighbors",
                        info="small: local detail; large: global layout",
                    )
                    self.min_dist = gr.Slider(
                        0.0,
                        1.0,
                        0.1,
                        step=0.01,
                        label="UMAP min_dist",
                        info="how tightly points pack in a cluster",
                    )
                with gr.Group(visible=False) as self.tsne_box:
                    self.perplexity = gr.Slider(
                        2,
                        100,
                        30,
                        step=1,
                        label="t-SNE perplexity",
                        info="about the number of neighbours each "
                        "point keeps; below the point count",
                    )
                self.colour_by = gr.Dropdown(
                    ["label"],
                    value="label",
                    label="Colour by",
                    info="the label, or a nuisance factor of the dataset (what else did it learn?)",
                )
                self.texts = gr.Radio(
                    TEXT_MODES,
                    value="none",
                    label="Texts (CLIP runs)",
                    visible=False,
                    info="Embed the class prompts or captions too",
                )
                self.draw_btn = gr.Button("Draw", variant="primary")
                self.status = gr.HTML(
                    message(self.studio.umap_status(), "info"), elem_classes=["ps-status"]
                )
                self.note = gr.HTML("", elem_classes=["ps-note"])
            with gr.Column(scale=4) as self.maps:
                self.stale = gr.HTML(
                    "", elem_classes=["ps-note"], head=f"<style>{STALE_CSS}</style>"
                )
                with gr.Row(equal_height=False):
                    self.search = gr.Textbox(
                        "",
                        label="Search",
                        placeholder="words of a label or caption, e.g. red star",
                        scale=2,
                        min_width=220,
                        submit_btn="Find",
                        info="Picks the points whose label or caption holds every word",
                    )
                    self.legend = gr.HTML("", css_template=LEGEND_CSS, scale=5, min_width=300)
                with gr.Row(equal_height=True):
                    self.plot_a = self._plot("ps-map-a")
                    self.plot_b = self._plot("ps-map-b")
                    self.plot3_a = self._plot_3d("ps-map3-a")
                    self.plot3_b = self._plot_3d("ps-map3-b")
                with gr.Row():
                    self.knn_a = gr.Markdown("")
                    self.knn_b = gr.Markdown("")
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3):
                        self.gallery = gr.Gallery(
                            label="Selected points",
                            columns=6,
                            height=280,
                            elem_id="ps-explorer-gallery",
                            object_fit="contain",
                            allow_preview=True,
                            fit_columns=False,
                            format="png",
                            interactive=False,
                        )
                    with gr.Column(scale=1, min_width=200):
                        self.selection = gr.Markdown(selection_text(None, []))
                        self.csv = gr.DownloadButton("Download CSV", visible=False, size="sm")
        self.bridge = gr.HTML("", js_on_load=select_js(), elem_id="ps-explorer-bridge")
        self.views = gr.State({})
        self.found = gr.JSON(None, visible=False)  # rows a search found (to outline them)
        warming = self.studio.umap_status().startswith("UMAP is warming")
        self.timer = gr.Timer(2.0, active=warming)
        self.draw_inputs = [
            self.model_a,
            self.model_b,
            self.dataset,
            self.split,
            self.samples,
            self.projection,
            self.n_neighbors,
            self.min_dist,
            self.perplexity,
            self.texts,
            self.colour_by,
            self.dims,
            self.search,
        ]
        # What the drawn maps depend on: a change to any of them makes the maps stale.
        self.settings_inputs = [*self.draw_inputs[:10], self.dims]
        self.draw_outputs = [
            self.plot_a,
            self.plot_b,
            self.knn_a,
            self.knn_b,
            self.note,
            self.views,
            self.gallery,
            self.selection,
            self.csv,
            self.status,
            self.colour_by,
            self.legend,
            self.plot3_a,
            self.plot3_b,
            self.stale,
            self.maps,
            self.found,
        ]

    def _plot(self, elem_id: str) -> gr.ScatterPlot:
        return gr.ScatterPlot(
            None,
            x="x",
            y="y",
            color="label",
            tooltip=HOVER,
            height=PLOT_HEIGHT,
            elem_id=elem_id,
            elem_classes=["ps-map"],
            x_title=" ",
            y_title=" ",
            show_label=False,
            min_width=300,
            colors_in_legend=[],
        )

    def _plot_3d(self, elem_id: str) -> gr.Plot:
        return gr.Plot(
            None,
            show_label=False,
            elem_id=elem_id,
            elem_classes=["ps-map"],
            min_width=300,
            visible=False,
        )

    def wire(self, demo: gr.Blocks) -> None:
        private = dict(api_visibility="private")
        # Emptied first: Gradio 6.31's ScatterPlot keeps its old points when a new frame
        # and new axis titles arrive together, but draws a fresh plot from empty right.
        self.draw_btn.click(
            self.clear_maps,
            None,
            [self.plot_a, self.plot_b],
            show_progress="hidden",
            **private,
        ).then(
            self.draw,
            self.draw_inputs,
            self.draw_outputs,
            trigger_mode="always_last",
            show_progress_on=[self.plot_a, self.plot3_a],  # one bar: only one is shown
            **private,
        ).then(None, [self.found], None, js=OUTLINE_JS, **private)
        # Any input the maps depend on: grey them out (or back in) and show the projection's
        # own sliders, in one quick handler on the value the browser now holds.
        settings_events = [
            self.projection.change,
            self.dims.change,
            self.n_neighbors.release,
            self.min_dist.release,
            self.perplexity.release,
            self.model_a.change,
            self.model_b.change,
            self.dataset.change,
            self.split.change,
            self.samples.change,
            self.texts.change,
        ]
        gr.on(
            settings_events,
            self.on_settings,
            [*self.settings_inputs, self.views],
            [self.umap_box, self.tsne_box, self.stale, self.maps],
            show_progress="hidden",
            trigger_mode="always_last",
            **private,
        )
        self.model_a.change(
            self.on_model,
            [self.model_a, self.dataset],
            [self.dataset, self.texts],
            show_progress="hidden",
            **private,
        )
        self.refresh_btn.click(
            self.refresh,
            [self.model_a, self.model_b],
            [self.model_a, self.model_b],
            show_progress="hidden",
            **private,
        )
        demo.load(
            self.refresh,
            [self.model_a, self.model_b],
            [self.model_a, self.model_b],
            show_progress="hidden",
            **private,
        )
        self.bridge.select(
            self.on_select,
            [self.views],
            [self.gallery, self.selection],
            show_progress="hidden",
            **private,
        )
        gr.on(
            [self.search.submit],
            self.on_search,
            [self.views, self.search, self.colour_by],
            [self.gallery, self.selection, self.plot3_a, self.plot3_b, self.found],
            show_progress="hidden",
            **private,
        ).then(None, [self.found], None, js=SEARCH_JS, **private)
        self.timer.tick(
            self.tick, None, [self.status, self.timer], show_progress="hidden", **private
        )
        self.colour_by.input(
            self.recolour,
            [self.views, self.colour_by, self.search],
            [self.plot_a, self.plot_b, self.legend, self.plot3_a, self.plot3_b],
            show_progress="hidden",
            **private,
        ).then(None, [self.found], None, js=OUTLINE_JS, **private)

    # ---- handlers ------------------------------------------------------------------------
    def refresh(self, model_a: str | None, model_b: str | None) -> list[Any]:
        choices, _ = self.model_choices()
        values = [v for _, v in choices]
        a = model_a if model_a else (values[0] if values else None)
        return [
            gr.Dropdown(choices=choices, value=a),
            gr.Dropdown(
                choices=[
                    ("Random init of the same network", SAME_ARCH),
                    ("(none)", NO_MODEL),
                    *choices,
                ],
                value=model_b,
            ),
        ]

    def on_projection(self, projection: str) -> list[Any]:
        """The sliders of `projection` shown, the others hidden."""
        return [gr.Group(visible=projection == "umap"), gr.Group(visible=projection == "tsne")]

    @staticmethod
    def request(
        model_a: str | None,
        model_b: str | None,
        dataset: str | None,
        split: str | None,
        samples: float | None,
        projection: str,
        n_neighbors: float,
        min_dist: float,
        perplexity: float,
        texts: str | None,
        dims: int | None,
    ) -> dict[str, Any]:
        """What a Draw with these inputs would draw (only the projection's own parameters
        count): the drawn maps are stale when theirs differs."""
        return {
            "model_a": model_a or "",
            "model_b": model_b or "",
            "dataset": dataset or "",
            "split": split or "train",
            "samples": int(samples or DEFAULT_SAMPLES),
            "projection": projection,
            "params": projection_params(projection, n_neighbors, min_dist, perplexity),
            "texts": texts or "none",
            "dims": int(dims or 2),
        }

    def on_settings(self, *values: Any) -> list[Any]:
        """An input changed: the projection's sliders, and the maps greyed out under "press
        Draw" while they show other settings than the inputs (back when they match again)."""
        *inputs, views = values
        wanted = self.request(*inputs)
        boxes = self.on_projection(wanted["projection"])
        drawn = (views or {}).get("request")
        if not drawn or drawn == wanted:
            return [*boxes, "", gr.Column(elem_classes=[])]
        return [*boxes, stale_note(drawn, wanted), gr.Column(elem_classes=[STALE_CLASS])]

    def on_model(self, model: str | None, dataset: str | None) -> list[Any]:
        """A run brings its training dataset (when it differs) and, for CLIP, the texts."""
        found = next((m for m in self.studio.embedding_models() if m["value"] == model), None)
        if found is None or found["job_id"] is None:
            return [gr.skip(), gr.Radio(visible=False, value="none")]
        job = self.studio.job(found["job_id"])
        clip = found["modality"] == "image-text"
        return [
            gr.Dropdown(value=job["dataset"]) if job["dataset"] != dataset else gr.skip(),
            gr.Radio(visible=clip, value="prompts" if clip else "none"),
        ]

    def tick(self) -> list[Any]:
        status = self.studio.umap_status()
        return [message(status, "info"), gr.Timer(active=status.startswith("UMAP is warming"))]

    def compute(self, request: dict[str, Any], progress: Any = None) -> list[EmbeddingMap]:
        """The maps of A (and B) that `request` (see `request`) asks for: engine views."""
        a, b = request["model_a"], resolve_b(request["model_a"], request["model_b"])
        names = [a] + ([b] if b else [])
        views = []
        for i, name in enumerate(names):

            def report(fraction: float, text: str, i: int = i, name: str = name) -> None:
                if progress is not None:
                    progress((i + fraction) / len(names), desc=f"{name}: {text}")

            views.append(
                self.studio.project(
                    name,
                    request["dataset"],
                    request["samples"],
                    request["projection"],
                    request["params"],
                    request["split"],
                    request["texts"],
                    report,
                    request["dims"],
                )
            )
        return views

    def draw(
        self,
        model_a: str | None,
        model_b: str | None,
        dataset: str,
        split: str,
        samples: float,
        projection: str,
        n_neighbors: float,
        min_dist: float,
        perplexity: float,
        texts: str,
        colour_by: str = "label",
        dims: int = 2,
        search: str = "",
        progress: gr.Progress = gr.Progress(),
    ) -> Updates:
        status = message(self.studio.umap_status(), "info")

        def refused(note: str) -> Updates:
            return {self.note: note, self.status: status}

        if not model_a:
            return refused(message("Pick a model first.", "warn"))
        wanted = self.request(
            model_a,
            model_b,
            dataset,
            split,
            samples,
            projection,
            n_neighbors,
            min_dist,
            perplexity,
            texts,
            dims,
        )
        try:
            views = self.compute(wanted, progress)
        except Exception as error:  # noqa: BLE001 - the user's message, or a bug logged
            return refused(error_note(error, "embedding map"))
        choices = colour_choices(views[0])
        colour_by = colour_by if colour_by in choices else "label"
        b = views[1] if len(views) > 1 else None
        notes = " ".join(dict.fromkeys(v["message"] for v in views if v["message"]))
        level = "warn" if any(v.get("capped") for v in views) else "info"
        state = {"a": views[0], "b": b, "dataset": dataset, "split": split, "request": wanted}
        found = search_rows(views[0], search)
        three = wanted["dims"] == 3
        # Hidden with its points: a Vega plot emptied or unmounted throws from its resize
        # observer (Gradio 6.31).
        hidden_2d = gr.ScatterPlot(visible="hidden")
        return {
            self.plot_a: hidden_2d if three else self.plot_update(views[0], colour_by),
            self.plot_b: (self.plot_update(b, colour_by) if b and not three else hidden_2d),
            self.plot3_a: self.plot_3d(views[0], colour_by, found) if three else hidden_3d(),
            self.plot3_b: self.plot_3d(b, colour_by, found) if three and b else hidden_3d(),
            self.knn_a: knn_text(views[0]),
            self.knn_b: knn_text(b),
            self.note: message(notes, level) if notes else "",
            self.views: state,
            self.gallery: self.gallery_items(state, views[0], found),
            self.selection: found_text(views[0], found, search),
            self.csv: gr.DownloadButton(value=write_csv(self.studio.maps_csv(views)), visible=True),
            self.status: message(self.studio.umap_status(), "info"),
            self.colour_by: gr.Dropdown(choices=choices, value=colour_by),
            self.legend: legend_html(views[0], colour_by),
            self.stale: "",
            self.maps: gr.Column(elem_classes=[]),
            self.found: found,
        }

    def clear_maps(self) -> list[Any]:
        return [gr.ScatterPlot(value=None), gr.ScatterPlot(value=None)]

    def plot_update(self, view: EmbeddingMap, colour_by: str = "label") -> gr.ScatterPlot:
        axis = AXIS[view["projection"]]
        return gr.ScatterPlot(
            value=map_frame(view, colour_by),
            color=colour_by,
            color_map=color_map(view, colour_by),
            x_title=f"{axis} 1",
            y_title=f"{axis} 2",
            visible=True,
            title=view["model"]["name"],
            colors_in_legend=[],
        )

    def plot_3d(
        self, view: EmbeddingMap, colour_by: str = "label", found: list[int] | None = None
    ) -> gr.Plot:
        return gr.Plot(value=figure_3d(view, colour_by, found), visible=True)

    def recolour(self, views: dict[str, Any], colour_by: str, search: str = "") -> Any:
        """The drawn maps coloured by another column; nothing is computed again."""
        if not views or not views.get("a"):
            return gr.skip()
        a, b = views["a"], views.get("b")
        out: Updates = {self.legend: legend_html(a, colour_by)}
        if a.get("dims") == 3:
            found = search_rows(a, search)
            out[self.plot3_a] = self.plot_3d(a, colour_by, found)
            if b:
                out[self.plot3_b] = self.plot_3d(b, colour_by, found)
            return out
        out[self.plot_a] = self.plot_update(a, colour_by)
        if b:
            out[self.plot_b] = self.plot_update(b, colour_by)
        return out

    def on_search(self, views: dict[str, Any], search: str, colour_by: str = "label") -> list[Any]:
        """The points whose label or caption holds the words: outlined on the 2-D maps (by
        the selection script) or drawn large in 3-D, their images in the gallery."""
        view = (views or {}).get("a")
        if not view:
            return [[], message("Draw a map first, then search it.", "warn"), *[gr.skip()] * 2, []]
        found = search_rows(view, search)
        plots = [gr.skip(), gr.skip()]
        if view.get("dims") == 3:
            b = views.get("b")
            plots = [
                self.plot_3d(view, colour_by, found),
                self.plot_3d(b, colour_by, found) if b else gr.skip(),
            ]
        return [
            self.gallery_items(views, view, found),
            found_text(view, found, search),
            *plots,
            found,
        ]

    def on_select(self, views: dict[str, Any], evt: gr.EventData) -> list[Any]:
        data = getattr(evt, "_data", None) or {}
        view = views.get(data.get("map") or "a") if views else None
        if not view:
            return [[], selection_text(None, [])]
        rows = selection_rows(view, data.get("positions") or [])
        return [self.gallery_items(views, view, rows), selection_text(view, rows)]

    def gallery_items(
        self, views: dict[str, Any], view: EmbeddingMap, rows: list[int]
    ) -> list[tuple[Any, str]]:
        """(thumbnail, caption) for the selected image points (texts get no picture)."""
        p = view["points"]
        images = [r for r in rows if p["kind"][r] == "image"][:MAX_THUMBS]
        if not images:
            return []
        pictures = self.studio.embedding_thumbnails(
            views["dataset"], views["split"], [p["index"][r] for r in images]
        )
        return [
            (picture, f"#{p['index'][r]} · {p['label'][r]}") for picture, r in zip(pictures, images)
        ]


def hidden_3d() -> gr.Plot:
    return gr.Plot(value=None, visible=False)
