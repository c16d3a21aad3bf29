"""GPT generation tab (`/generate`): the model continues a prompt.

Inputs: prompt, model (a GPT run, folder or Hub id), max new tokens, temperature (0: greedy),
top-k (0: no cut), seed. Outputs: the prompt with the continuation highlighted, the
continuation alone, and details (new tokens, why it stopped, seconds).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from webapp.figures import message
from webapp.lens_common import LensTab, ModelPicker, text_examples

INTRO = (
    "**Let it write.** A causal language model samples one token at a time from its "
    "next-token distribution. Temperature flattens (higher) or sharpens (lower) it, 0 "
    "always takes the most probable token; top-k keeps only the k most probable. The same "
    "seed gives the same text."
)


class GenerateTab(LensTab):
    api_name = "generate"
    intro = INTRO

    def build(self) -> None:
        self.header()
        with gr.Row():
            with gr.Column(scale=2, min_width=300):
                self.prompt = gr.Textbox(
                    "",
                    lines=2,
                    label="Prompt",
                    info="May be empty: the model starts a text",
                )
                self.picker = ModelPicker(self.studio, "generate")
                with gr.Row():
                    self.max_new_tokens = gr.Slider(
                        1, 256, value=40, step=1, label="Max new tokens"
                    )
                    self.temperature = gr.Slider(
                        0.0, 2.0, value=0.8, step=0.05, label="Temperature", info="0: greedy"
                    )
                with gr.Row():
                    self.top_k = gr.Slider(
                        0, 200, value=50, step=1, label="Top-k", info="0: no cut"
                    )
                    self.seed = gr.Number(0, precision=0, label="Seed")
                self.run_btn = gr.Button("Generate", variant="primary")
                self.make_note()
                model = self.picker.dropdown.value
                self.examples = text_examples(self.studio, "generate", self.prompt, model)
                self.prompt.value = self.examples.first(model)
            with gr.Column(scale=3, min_width=360):
                self.text = gr.HighlightedText(
                    label="Prompt + continuation",
                    color_map={"generated": "#6366f1"},
                    show_legend=False,
                    show_inline_category=False,
                )
                self.continuation = gr.Textbox(
                    label="Continuation", lines=4, interactive=False, buttons=["copy"]
                )
                with gr.Accordion("Details", open=False):
                    self.details = gr.JSON(label="Details")
        self.hidden_trigger()
        self.inputs = [
            self.prompt,
            self.picker.dropdown,
            self.max_new_tokens,
            self.temperature,
            self.top_k,
            self.seed,
        ]
        self.outputs = [self.text, self.continuation, self.details]
        self.auto_triggers = [self.prompt.submit, self.seed.submit]

    def compute(
        self,
        prompt: str,
        model: str,
        max_new_tokens: float,
        temperature: float,
        top_k: float,
        seed: float,
    ) -> tuple[list[Any], str]:
        result = self.studio.lenses.generate(
            prompt,
            model,
            int(max_new_tokens or 40),
            float(temperature or 0.0),
            int(top_k or 0),
            int(seed or 0),
        )
        parts = [(result["prompt"], None), (result["continuation"], "generated")]
        details = {
            key: result[key] for key in ("model", "new_tokens", "stopped", "greedy", "seconds")
        }
        how = "greedy" if result["greedy"] else f"temperature {float(temperature):g}"
        note = message(
            f"{result['model']}: {result['new_tokens']} new tokens ({how}), "
            f"stopped at {result['stopped']}, in {result['seconds']:.2f} s.",
            "ok",
        )
        return [[p for p in parts if p[0]], result["continuation"], details], note

    def wire(self, demo: gr.Blocks) -> None:
        super().wire(demo)
        self.examples.wire(self.picker)
