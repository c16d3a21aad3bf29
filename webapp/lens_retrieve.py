"""CLIP retrieval tab (`/retrieve`): the pictures of a dataset that best match a sentence.

Inputs: query text, model (a CLIP run, folder or Hub id), dataset (any image dataset), k,
split, how many images to search. Outputs: a gallery of the top-k images (score, label and
caption under each) and details (scores, rows, labels, captions, whether the dataset's
embeddings came from the cache).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from webapp.figures import message
from webapp.lens_common import LensTab, ModelPicker
from webapp.lens_views import image_datasets, refresh_datasets_on_load

INTRO = (
    "**Text-to-image search.** CLIP embeds the query and every image of the dataset in "
    "one space; the nearest images come back, best first, with their cosine similarity. "
    "The dataset is embedded once per model and checkpoint (the first query takes a few "
    "seconds), then every query only embeds its words."
)
EXAMPLES = [
    "a red star",
    "a small blue ring on a gradient background",
    "a large green heart",
    "a yellow triangle, top left",
    "a ring",
]


class RetrieveTab(LensTab):
    api_name = "retrieve"
    intro = INTRO

    def build(self) -> None:
        self.header()
        datasets = image_datasets(self.studio)
        with gr.Row():
            with gr.Column(scale=2, min_width=300):
                self.query = gr.Textbox(
                    EXAMPLES[0], label="Query", info="What the pictures should show"
                )
                self.picker = ModelPicker(self.studio, "retrieve")
                self.dataset = gr.Dropdown(
                    datasets,
                    value="shapes" if "shapes" in datasets else (datasets[0] if datasets else None),
                    label="Dataset",
                )
                with gr.Row():
                    self.k = gr.Slider(1, 32, value=8, step=1, label="Top k")
                    self.split = gr.Radio(["test", "train"], value="test", label="Split")
                self.samples = gr.Slider(
                    100,
                    10_000,
                    value=1000,
                    step=100,
                    label="Images searched",
                    info="A fixed sample of the split (all when fewer)",
                )
                self.run_btn = gr.Button("Search", variant="primary")
                self.make_note()
                gr.Examples([[q] for q in EXAMPLES], [self.query], label="Queries")
            with gr.Column(scale=3, min_width=360):
                self.gallery = gr.Gallery(
                    label="Best matches",
                    columns=3,  # room for the wrapped captions (app.py's CSS)
                    elem_id="ps-retrieve-gallery",
                    height="fit-content",
                    object_fit="contain",
                    format="png",
                    allow_preview=True,
                )
                with gr.Accordion("Details", open=False):
                    self.details = gr.JSON(label="Details")
        self.hidden_trigger()
        self.inputs = [
            self.query,
            self.picker.dropdown,
            self.dataset,
            self.k,
            self.split,
            self.samples,
        ]
        self.outputs = [self.gallery, self.details]
        self.auto_triggers = [self.query.submit, self.k.release]

    def compute(
        self, query: str, model: str, dataset: str, k: float, split: str, samples: float
    ) -> tuple[list[Any], str]:
        if not dataset:
            return self.cleared(), message("Pick a dataset.")
        result = self.studio.lenses.retrieve(
            query, model, dataset, int(k or 8), split or "test", int(samples or 1000)
        )
        items = [
            (picture, f"{score:.3f} · {label}" + (f": {caption}" if caption else ""))
            for picture, score, label, caption in zip(
                result["images"], result["scores"], result["labels"], result["captions"]
            )
        ]
        details = {
            key: result[key]
            for key in (
                "model",
                "query",
                "dataset",
                "split",
                "searched",
                "embeddings_cached",
                "scores",
                "indices",
                "labels",
                "captions",
            )
        }
        cached = (
            "embeddings from the cache"
            if result["embeddings_cached"]
            else "dataset embedded now, cached for the next query"
        )
        note = message(
            f"{result['model']}: the {len(items)} best of {result['searched']:,} "
            f'{dataset} {split} images for "{result["query"]}" (cosine '
            f"{result['scores'][0]:.3f} to {result['scores'][-1]:.3f}; {cached}).",
            "ok",
        )
        return [items, details], note

    def wire(self, demo: gr.Blocks) -> None:
        super().wire(demo)
        refresh_datasets_on_load(demo, self.studio, self.dataset)
