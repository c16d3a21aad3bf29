"""CLIP zero-shot tab (`/zero_shot`): which of the words fits the picture?

Inputs: image, model (a CLIP run, folder or Hub id), candidate labels (comma-separated), prompt
templates (one per line, each with "{}"), words to ignore (comma-separated values of an attribute
such as colours). Outputs: a bar chart of the labels' probabilities,
a table (label, probability, cosine similarity), details (templates, logit scale).
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr
import pandas as pd

from engine.contract import ZeroShotResult
from webapp.figures import message
from webapp.lens_common import (
    LensTab,
    ModelExamples,
    ModelPicker,
    by_dataset,
    image_input,
    score_plot,
)

log = logging.getLogger(__name__)
INTRO = (
    "**Zero-shot classification.** CLIP embeds the picture and each label put into the "
    "prompt templates; a label's text embedding is the mean over its templates (the "
    "paper's prompt ensemble), and the closest label wins. No labelled training: the "
    "words are the classifier. Try the shape names on a shapes picture with a CLIP run "
    "trained on shapes. *Ignore* takes an attribute out of the decision (Chuang et al. "
    '2023): a CLIP that never saw a yellow heart learns "heart" as "not yellow"; '
    "with the colours ignored, the picture is judged by its shape."
)
DEFAULT_LABELS = "circle, square, triangle, star, heart, ring"
DEFAULT_TEMPLATES = "a photo of a {}."
TABLE_HEADERS = ["label", "probability", "cosine similarity"]


def result_frames(result: ZeroShotResult) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(bar chart data, table) from a `studio.lenses.zero_shot` result, most probable first."""
    order = result["ranking"]
    labels = [result["labels"][i] for i in order]
    probabilities = [result["probabilities"][i] for i in order]
    plot = pd.DataFrame({"label": labels, "probability": probabilities})
    table = pd.DataFrame(
        {
            "label": labels,
            "probability": [round(p, 4) for p in probabilities],
            "cosine similarity": [round(result["similarities"][i], 4) for i in order],
        }
    )
    return plot, table


class ZeroShotTab(LensTab):
    api_name = "zero_shot"
    intro = INTRO

    def build(self) -> None:
        self.header()
        with gr.Row():
            with gr.Column(scale=2, min_width=300):
                self.image = image_input()
                self.picker = ModelPicker(self.studio, "zero_shot")
                self.labels = gr.Textbox(
                    DEFAULT_LABELS, label="Candidate labels", info="Comma-separated; at least two"
                )
                self.templates = gr.Textbox(
                    DEFAULT_TEMPLATES,
                    lines=2,
                    label="Prompt templates",
                    info="One per line, {} is the label; several are averaged",
                )
                self.ignore = gr.Textbox(
                    "",
                    label="Ignore",
                    info="Optional: values of an attribute to leave out "
                    "of the decision, comma-separated (e.g. red, "
                    "blue, green)",
                )
                self.run_btn = gr.Button("Classify", variant="primary")
                self.make_note()
                self.example_rows()
            with gr.Column(scale=3, min_width=360):
                self.plot = score_plot("Probabilities", "label")
                self.table = gr.Dataframe(headers=TABLE_HEADERS, label="Scores", interactive=False)
                with gr.Accordion("Details", open=False):
                    self.details = gr.JSON(label="Details")
        self.hidden_trigger()
        self.inputs = [self.image, self.picker.dropdown, self.labels, self.templates, self.ignore]
        self.outputs = [self.plot, self.table, self.details]
        self.auto_triggers = [self.image.change, self.labels.submit, self.ignore.submit]

    def example_rows(self) -> None:
        """Examples that fill the picture, the labels and the templates together, and fit
        the model: a run trained on shapes gets the shapes and their names only; a Hub CLIP
        the photographs with everyday words first."""
        self.examples = None
        try:
            rows = self.studio.lenses.zero_shot_examples()
        except Exception:
            log.exception("zero-shot examples could not be written")
            return
        if not rows:
            return
        table = [[r["path"], r["labels"], r["templates"], r["ignore"]] for r in rows]
        model = self.picker.dropdown.value
        self.examples = ModelExamples(
            self.studio,
            self.labels,
            by_dataset(rows, table),
            table,
            model,
            inputs=[self.image, self.labels, self.templates, self.ignore],
            column=1,
        )
        self.labels.value = self.examples.first(model)

    def wire(self, demo: gr.Blocks) -> None:
        super().wire(demo)
        if self.examples is not None:
            self.examples.wire(self.picker)

    def compute(
        self, image: Any, model: str, labels: str, templates: str, ignore: str = ""
    ) -> tuple[list[Any], str]:
        if image is None:
            return self.cleared(), message("Upload an image or pick an example.")
        result = self.studio.lenses.zero_shot(image, model, labels, templates, ignore)
        plot, table = result_frames(result)
        best = result["ranking"][0]
        details = {
            "model": result["model"],
            "templates": result["templates"],
            "ignored": result["ignored"],
            "logit_scale": round(result["logit_scale"], 3),
            "labels": result["labels"],
            "probabilities": result["probabilities"],
        }
        count = len(result["templates"])
        ignoring = f"; ignoring {', '.join(result['ignored'])}" if result["ignored"] else ""
        note = message(
            f'{result["model"]}: "{result["labels"][best]}" with probability '
            f"{result['probabilities'][best]:.1%} of {len(result['labels'])} labels "
            f"({count} template{'s' if count > 1 else ''} averaged{ignoring}"
            f"; chance {1 / len(result['labels']):.1%}).",
            "ok",
        )
        return [plot, table, details], note
