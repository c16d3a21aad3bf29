"""What the model sees tab (`/views`): the exact inputs a method trains on.

Inputs: method, dataset, seed, number of images. Outputs: a grid (one row per image: the image,
then each view the method makes of it, made by the method's own code) and details (the view
kinds and their sizes).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from engine.contract import Studio
from webapp.figures import message
from webapp.lens_common import LensTab, details_json

INTRO = (
    "**What does the model see?** A method's training inputs, made by the very code its "
    "training step runs (quick preset): SimCLR's two augmented views, MAE's crop and the "
    "few patches its encoder gets, and each other method's own views. One row per image."
)


def image_datasets(studio: Studio) -> list[str]:
    return [
        d["name"]
        for d in studio.datasets()
        if "image" in d.get("modalities", [d["kind"]]) and d["available"]
    ]


def refresh_datasets_on_load(demo: gr.Blocks, studio: Studio, dropdown: gr.Dropdown) -> None:
    """On each page load, offer the image datasets as they are now (one added in the Train
    tab since the app started included), keeping the user's pick when it still exists."""

    def refresh(current: str | None) -> Any:
        choices = image_datasets(studio)
        return gr.Dropdown(
            choices=choices,
            value=current if current in choices else (choices[0] if choices else None),
        )

    demo.load(refresh, [dropdown], [dropdown], api_visibility="private", show_progress="hidden")


class ViewsTab(LensTab):
    api_name = "views"
    intro = INTRO

    def build(self) -> None:
        self.header()
        methods = self.studio.lenses.view_methods()
        datasets = image_datasets(self.studio)
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                self.method = gr.Dropdown(
                    methods,
                    value="simclr" if "simclr" in methods else (methods[0] if methods else None),
                    label="Method",
                )
                self.dataset = gr.Dropdown(
                    datasets,
                    value="shapes" if "shapes" in datasets else (datasets[0] if datasets else None),
                    label="Dataset",
                )
                with gr.Row():
                    self.seed = gr.Number(
                        0, precision=0, label="Seed", info="Which images, which random views"
                    )
                    self.count = gr.Slider(1, 8, value=4, step=1, label="Images")
                self.run_btn = gr.Button("Show views", variant="primary")
                self.make_note()
            with gr.Column(scale=3, min_width=360):
                self.grid = gr.Gallery(
                    label="Views",
                    columns=3,
                    height="fit-content",
                    object_fit="contain",
                    format="png",
                    allow_preview=True,
                )
                with gr.Accordion("Details", open=False):
                    self.details = gr.JSON(label="Details")
        self.hidden_trigger()
        self.inputs = [self.method, self.dataset, self.seed, self.count]
        self.outputs = [self.grid, self.details]
        self.auto_triggers = [self.method.input, self.dataset.input, self.count.release]

    def compute(
        self, method: str, dataset: str, seed: float, num_images: float
    ) -> tuple[list[Any], str]:
        if not method or not dataset:
            return self.cleared(), message("Pick a method and a dataset.")
        result = self.studio.lenses.preview_views(
            method, dataset, int(seed or 0), int(num_images or 4)
        )
        details = details_json(
            result, ["method", "dataset", "preset", "image_size", "captions", "sizes", "columns"]
        )
        kinds = "; ".join(
            c if s == result["image_size"] else f"{c} ({s} px)"
            for c, s in zip(result["captions"], result["sizes"])
        )
        note = message(f"{method} on {dataset} ({result['image_size']} px): {kinds}.", "ok")
        return [result["items"], details], note

    def present(self, outputs: list[Any]) -> list[Any]:
        items, details = outputs
        return [gr.Gallery(value=items, columns=details["columns"]), details]

    def wire(self, demo: gr.Blocks) -> None:
        super().wire(demo)
        refresh_datasets_on_load(demo, self.studio, self.dataset)
