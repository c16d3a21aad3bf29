"""BERT fill-mask tab (`/fill_mask`): what goes in the blank?

Inputs: text with one "[MASK]" (or "<mask>"), model (a BERT run, folder or Hub id), k.
Outputs: a bar chart of the k most probable distinct words and a table of the sentences they
complete (word, probability, sentence).
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from engine.contract import FillMaskResult
from webapp.figures import message
from webapp.lens_common import LensTab, ModelPicker, score_plot, text_examples

INTRO = (
    "**Fill in the blank.** A masked language model reads the whole sentence, blank "
    "included, and ranks its vocabulary for the blank. Write `[MASK]` (or `<mask>`) where "
    "a word is missing; the bars are probabilities over the whole vocabulary."
)
TABLE_HEADERS = ["word", "probability", "sentence"]


def result_frames(result: FillMaskResult) -> tuple[pd.DataFrame, pd.DataFrame]:
    predictions = result["predictions"]
    plot = pd.DataFrame(
        {
            "word": [p["token"] for p in predictions],
            "probability": [p["score"] for p in predictions],
        }
    )
    table = pd.DataFrame(
        {
            "word": [p["token"] for p in predictions],
            "probability": [round(p["score"], 4) for p in predictions],
            "sentence": [p["sequence"] for p in predictions],
        }
    )
    return plot, table


class FillMaskTab(LensTab):
    api_name = "fill_mask"
    intro = INTRO

    def build(self) -> None:
        self.header()
        with gr.Row():
            with gr.Column(scale=2, min_width=300):
                self.text = gr.Textbox(
                    "",
                    lines=2,
                    label="Text",
                    info="One [MASK] (or <mask>) where a word is missing",
                )
                self.picker = ModelPicker(self.studio, "fill_mask")
                self.k = gr.Slider(
                    1, 20, value=5, step=1, label="Top k", info="How many distinct words"
                )
                self.run_btn = gr.Button("Fill the blank", variant="primary")
                self.make_note()
                model = self.picker.dropdown.value
                self.examples = text_examples(self.studio, "fill_mask", self.text, model)
                self.text.value = self.examples.first(model)
            with gr.Column(scale=3, min_width=360):
                self.plot = score_plot("Top words", "word")
                self.table = gr.Dataframe(
                    headers=TABLE_HEADERS, label="Filled sentences", interactive=False, wrap=True
                )
        self.hidden_trigger()
        self.inputs = [self.text, self.picker.dropdown, self.k]
        self.outputs = [self.plot, self.table]
        self.auto_triggers = [self.text.submit, self.k.release]

    def compute(self, text: str, model: str, k: float) -> tuple[list[Any], str]:
        result = self.studio.lenses.fill_mask(text, model, int(k or 5))
        plot, table = result_frames(result)
        best = result["predictions"][0]
        note = message(
            f'{result["model"]}: "{best["token"]}" first with probability '
            f"{best['score']:.1%}; the {len(result['predictions'])} words shown hold "
            f"{sum(p['score'] for p in result['predictions']):.1%} of it.",
            "ok",
        )
        return [plot, table], note

    def wire(self, demo: gr.Blocks) -> None:
        super().wire(demo)
        self.examples.wire(self.picker)
