"""T5 text-to-text tab (`/text2text`): fill sentinel spans, or answer a task prefix.

Inputs: text (with <extra_id_N> sentinels, or "[MASK]"s numbered for it; or a task such as
"translate English to French: ..." for t5-small), model (a T5 run, folder or Hub id), beams,
max new tokens. Outputs: the text with the spans filled in (highlighted), the input with its
sentinels as the model reads it, the raw output, and details (the spans).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from webapp.figures import message
from webapp.lens_common import LensTab, ModelPicker, text_examples

INTRO = (
    "**Text to text.** T5 pretraining cuts spans out of a text and leaves a numbered "
    "sentinel (`<extra_id_0>`, `<extra_id_1>`, ...) for each; the model writes every "
    "sentinel followed by its span, and the lens puts the spans back (highlighted). "
    "`[MASK]` works as a sentinel too. With t5-small from the Hub, the paper's task "
    "prefixes work: `translate English to French: ...`, `summarize: ...`."
)


class Text2TextTab(LensTab):
    api_name = "text2text"
    intro = INTRO

    def build(self) -> None:
        self.header()
        with gr.Row():
            with gr.Column(scale=2, min_width=300):
                self.text = gr.Textbox(
                    "",
                    lines=3,
                    label="Text",
                    info="Sentinels <extra_id_N> or [MASK] where text is missing, or a task prefix",
                )
                self.picker = ModelPicker(self.studio, "text2text")
                with gr.Row():
                    self.num_beams = gr.Slider(
                        1, 8, value=4, step=1, label="Beams", info="Beam search width; 1: greedy"
                    )
                    self.max_new_tokens = gr.Slider(
                        1, 256, value=40, step=1, label="Max new tokens"
                    )
                self.run_btn = gr.Button("Run", variant="primary")
                self.make_note()
                model = self.picker.dropdown.value
                self.examples = text_examples(self.studio, "text2text", self.text, model)
                self.text.value = self.examples.first(model)
            with gr.Column(scale=3, min_width=360):
                self.filled = gr.HighlightedText(
                    label="Filled in",
                    show_legend=False,
                    show_inline_category=False,
                    color_map={"filled": "#10b981"},
                )
                self.source = gr.Textbox(label="Input with sentinels", interactive=False)
                self.output = gr.Textbox(label="Model output", interactive=False)
                with gr.Accordion("Details", open=False):
                    self.details = gr.JSON(label="Details")
        self.hidden_trigger()
        self.inputs = [self.text, self.picker.dropdown, self.num_beams, self.max_new_tokens]
        self.outputs = [self.filled, self.source, self.output, self.details]
        self.auto_triggers = [self.text.submit]

    def compute(
        self, text: str, model: str, num_beams: float, max_new_tokens: float
    ) -> tuple[list[Any], str]:
        result = self.studio.lenses.text2text(
            text, model, int(num_beams or 4), int(max_new_tokens or 40)
        )
        # A span the model left empty shows as ∅ (the data keep it as "").
        parts = [
            (piece or "∅", "filled") if is_fill else (piece, None)
            for piece, is_fill in result["parts"]
            if piece or is_fill
        ]
        details = {
            key: result[key] for key in ("model", "input", "output", "spans", "filled", "hint")
        }
        if result["spans"]:
            spans = "; ".join(f'{s["sentinel"]} → "{s["text"]}"' for s in result["spans"])
            text_note = f"{result['model']} filled {len(result['spans'])} span(s): {spans}."
        else:
            text_note = f'{result["model"]}: "{result["output"]}".'
        note = message(
            text_note + (f" Note: {result['hint']}." if result["hint"] else ""),
            "warn" if result["hint"] else "ok",
        )
        return [parts, result["input"], result["output"], details], note

    def wire(self, demo: gr.Blocks) -> None:
        super().wire(demo)
        self.examples.wire(self.picker)
