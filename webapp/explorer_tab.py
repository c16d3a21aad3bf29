"""Embeddings tab: a 2-D map (PCA, UMAP or t-SNE) of a model's embeddings coloured by label,
beside the same samples under a second model (by default the random initialisation of the
first), with the images behind a clicked point or a dragged box, k-NN accuracy and a CSV.

The maps are `gr.ScatterPlot`s (hover: label, index, caption). Their own brush selects an x
range only, so a small script (webapp/explorer.js, run by a gr.HTML bridge) turns a click or a
dragged box on either map into the row positions of the points under it, outlines the same
points on both maps, and sends them to `on_select`, which fills the gallery with those images
only. Everything heavy (embedding, projection, caches) is `studio.project`; handlers are thin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from engine.contract import EmbeddingMap, EmbeddingModel, Studio
from webapp.errors import error_note
from webapp.explorer_maps import (
    HOVER,
    LEGEND_CSS,
    MAX_THUMBS,
    SAME_ARCH,
    color_map,
    colour_choices,
    dataset_choices,
    knn_text,
    legend_html,
    map_frame,
    resolve_b,
    selection_rows,
    selection_text,
    write_csv,
)
from webapp.figures import Updates, message

NO_MODEL = ""
PROJECTIONS = [("PCA (instant)", "pca"), ("UMAP", "umap"), ("t-SNE", "tsne")]
AXIS = {"pca": "PC", "umap": "UMAP", "tsne": "t-SNE"}
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
                self.projection = gr.Radio(PROJECTIONS, value="pca", label="Projection")
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
            with gr.Column(scale=4):
                self.legend = gr.HTML("", css_template=LEGEND_CSS)
                with gr.Row(equal_height=True):
                    self.plot_a = self._plot("ps-map-a")
                    self.plot_b = self._plot("ps-map-b")
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
        ]
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
            x_title=" ",
            y_title=" ",
            show_label=False,
            min_width=300,
            colors_in_legend=[],
        )

    def wire(self, demo: gr.Blocks) -> None:
        private = dict(api_visibility="private")
        gr.on(
            [self.draw_btn.click, self.projection.change],
            self.draw,
            self.draw_inputs,
            self.draw_outputs,
            trigger_mode="always_last",
            **private,
        )
        self.projection.change(
            self.on_projection,
            [self.projection],
            [self.umap_box, self.tsne_box],
            show_progress="hidden",
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
        self.timer.tick(
            self.tick, None, [self.status, self.timer], show_progress="hidden", **private
        )
        self.colour_by.input(
            self.recolour,
            [self.views, self.colour_by],
            [self.plot_a, self.plot_b, self.legend],
            show_progress="hidden",
            **private,
        )

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
        return [gr.Group(visible=projection == "umap"), gr.Group(visible=projection == "tsne")]

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

    def compute(
        self,
        model_a: str,
        model_b: str | None,
        dataset: str,
        split: str,
        samples: float,
        projection: str,
        n_neighbors: float,
        min_dist: float,
        perplexity: float,
        texts: str,
        progress: Any = None,
    ) -> list[EmbeddingMap]:
        """The maps of A (and B): engine views, in order."""
        params = {
            "pca": {},
            "umap": {"n_neighbors": int(n_neighbors), "min_dist": float(min_dist)},
            "tsne": {"perplexity": float(perplexity)},
        }[projection]
        names = [model_a] + ([b] if (b := resolve_b(model_a, model_b)) else [])
        views = []
        for i, name in enumerate(names):

            def report(fraction: float, text: str, i: int = i, name: str = name) -> None:
                if progress is not None:
                    progress((i + fraction) / len(names), desc=f"{name}: {text}")

            views.append(
                self.studio.project(
                    name,
                    dataset,
                    int(samples or DEFAULT_SAMPLES),
                    projection,
                    params,
                    split,
                    texts or "none",
                    report,
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
        progress: gr.Progress = gr.Progress(),
    ) -> Updates:
        status = message(self.studio.umap_status(), "info")

        def refused(note: str) -> Updates:
            return {self.note: note, self.status: status}

        if not model_a:
            return refused(message("Pick a model first.", "warn"))
        try:
            views = self.compute(
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
                progress,
            )
        except Exception as error:  # noqa: BLE001 - the user's message, or a bug logged
            return refused(error_note(error, "embedding map"))
        choices = colour_choices(views[0])
        colour_by = colour_by if colour_by in choices else "label"
        b = views[1] if len(views) > 1 else None
        notes = " ".join(dict.fromkeys(v["message"] for v in views if v["message"]))
        level = "warn" if any(v.get("capped") for v in views) else "info"
        state = {"a": views[0], "b": b, "dataset": dataset, "split": split}
        return {
            self.plot_a: self.plot_update(views[0], colour_by),
            self.plot_b: (
                self.plot_update(b, colour_by) if b else gr.ScatterPlot(value=None, visible=False)
            ),
            self.knn_a: knn_text(views[0]),
            self.knn_b: knn_text(b),
            self.note: message(notes, level) if notes else "",
            self.views: state,
            self.gallery: [],
            self.selection: selection_text(None, []),
            self.csv: gr.DownloadButton(value=write_csv(self.studio.maps_csv(views)), visible=True),
            self.status: message(self.studio.umap_status(), "info"),
            self.colour_by: gr.Dropdown(choices=choices, value=colour_by),
            self.legend: legend_html(views[0], colour_by),
        }

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

    def recolour(self, views: dict[str, Any], colour_by: str) -> Any:
        """The drawn maps coloured by another column; nothing is computed again."""
        if not views or not views.get("a"):
            return gr.skip()
        out: Updates = {
            self.plot_a: self.plot_update(views["a"], colour_by),
            self.legend: legend_html(views["a"], colour_by),
        }
        if views.get("b"):
            out[self.plot_b] = self.plot_update(views["b"], colour_by)
        return out

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
