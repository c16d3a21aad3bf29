"""DINO attention tab (`/attention`): where a ViT's [CLS] token looks, head by head.

Inputs: image, model (run id, folder or Hub id), layer (0 = last), keep (share of the attention
mass the mask keeps). Outputs: a gallery of per-head overlays, the heads' mean, the mask, and
details (layer, heads, grid, share kept).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from webapp.errors import error_note
from webapp.figures import message
from webapp.lens_common import LensTab, ModelPicker, details_json, examples, image_input, picture

INTRO = (
    "**Where does the model look?** The [CLS] token's attention over the image patches, "
    "one map per head of the chosen layer, their mean, and the patches that hold the "
    "chosen share of the attention (DINO's figure 1). Works on DINO and DINOv2 runs with a "
    "ViT, MAE encoders, CLIP's vision tower, and facebook/dino-vits16 or "
    "facebook/dinov2-small (register tokens skipped) when online."
)
MAX_LAYERS = 24
SCALES = [("Each map", "map"), ("Shared", "shared")]  # engine.inference.attention.SCALES


def scores(result: dict[str, Any]) -> tuple[float, float] | None:
    """(the mask's Jaccard, the best head's) when the result has a score, else None."""
    if result.get("jaccard") is None:
        return None
    return result["jaccard"], max(result.get("jaccard_heads") or [result["jaccard"]])


def jaccard_line(result: dict[str, Any]) -> str:
    """ "Jaccard 0.62 with the object's mask (best head 0.71)" when the result has one."""
    scored = scores(result)
    if scored is None:
        return ""
    return f"Jaccard {scored[0]:.2f} with the object's mask (best head {scored[1]:.2f})."


def mask_caption(result: dict[str, Any]) -> str:
    """ "Mask · Jaccard 0.62, best head 0.71": short enough for the picture's label, which
    shares its row with the picture's buttons ("" without a score)."""
    scored = scores(result)
    if scored is None:
        return ""
    return f"Mask · Jaccard {scored[0]:.2f}, best head {scored[1]:.2f}"


class AttentionTab(LensTab):
    api_name = "attention"
    intro = INTRO

    def build(self) -> None:
        self.header()
        with gr.Row():
            with gr.Column(scale=2, min_width=300):
                self.image = image_input()
                self.picker = ModelPicker(self.studio, "attention")
                with gr.Row():
                    self.layer = gr.Slider(
                        0,
                        MAX_LAYERS,
                        value=0,
                        step=1,
                        label="Layer",
                        info="1 is the first; 0 the last (DINO's choice)",
                    )
                    self.keep = gr.Slider(
                        0.05,
                        1.0,
                        value=0.6,
                        step=0.05,
                        label="Mask",
                        info="Attention share kept (DINO: 0.6)",
                    )
                self.scale = gr.Radio(
                    SCALES,
                    value="map",
                    label="Colours",
                    info="Each map stretched from its own min to max (DINO's figures), or one "
                    "scale for all: uniform attention is the middle colour, so a flat head "
                    "looks flat",
                )
                self.run_btn = gr.Button("Show attention", variant="primary")
                self.make_note()
                self.picture_examples = examples(self.studio, self.image, picker=self.picker)
            with gr.Column(scale=3, min_width=360):
                with gr.Row():
                    self.mean = picture("Mean over heads")
                    self.mask = picture("Mask", buttons=["download"])  # room for the score
                self.heads = gr.Gallery(
                    label="Each head",
                    columns=6,
                    height="fit-content",
                    object_fit="contain",
                    format="png",
                    allow_preview=True,
                )
                with gr.Accordion("Details", open=False):
                    self.details = gr.JSON(label="Details")
        self.hidden_trigger()
        self.inputs = [self.image, self.picker.dropdown, self.layer, self.keep, self.scale]
        self.outputs = [self.heads, self.mean, self.mask, self.details]
        self.auto_triggers = [
            self.image.change,
            self.layer.release,
            self.keep.release,
            self.scale.input,
        ]

    def compute(
        self, image: Any, model: str, layer: float, keep: float, scale: str = "map"
    ) -> tuple[list[Any], str]:
        if image is None:
            return self.cleared(), message("Upload an image or pick an example.")
        result = self.studio.lenses.attention(
            image, model, int(layer or 0), float(keep), scale or "map"
        )
        heads = [(overlay, f"head {i + 1}") for i, overlay in enumerate(result["heads"])]
        details = details_json(
            result,
            [
                "model",
                "layer",
                "num_layers",
                "num_heads",
                "grid",
                "kept_share",
                "share_range",
                "scale",
            ],
        )
        details["kept_patches"] = int(result["keep_mask"].sum())
        scored = jaccard_line(result)  # a builtin example with an object mask, else ""
        if scored:
            details.update(jaccard=result["jaccard"], jaccard_heads=result["jaccard_heads"])
        low, high = result["share_range"]
        note = message(
            f"{result['model']}: layer {result['layer']} of "
            f"{result['num_layers']}, {result['num_heads']} heads on a "
            f"{result['grid']}x{result['grid']} patch grid. A patch gets "
            f"{low:.1%} to {high:.1%} of the mean attention (uniform: "
            f"{1 / result['grid'] ** 2:.1%}); the mask keeps "
            f"{details['kept_patches']} patches holding "
            f"{result['kept_share']:.0%} of it.{' ' + scored if scored else ''}",
            "ok",
        )
        return [heads, result["mean"], result["mask"], details], note

    def present(self, outputs: list[Any]) -> list[Any]:
        heads, mean, mask, details = outputs
        if not heads:
            return outputs
        caption = mask_caption(details or {})
        return [
            gr.Gallery(value=heads, columns=min(6, len(heads))),
            mean,
            # The score under the maps: the mask picture's caption (API clients: details).
            gr.Image(value=mask, label=caption) if caption else mask,
            details,
        ]

    def on_model(self, model: str) -> list[Any]:
        """A model was picked: fit the layer slider to it, or say why it cannot be used."""
        if not model:
            return [gr.skip(), ""]
        try:
            info = self.studio.lenses.lens_model_info("attention", model)
        except Exception as error:  # noqa: BLE001 - the user's message, or a bug logged
            return [gr.skip(), error_note(error, "attention model info")]
        return [
            gr.Slider(maximum=info["num_layers"], value=0),
            message(
                f"{info['model']}: {info['model_type']}, {info['num_layers']} layers, "
                f"{info['num_heads']} heads, {info['image_size']} px images in "
                f"{info['patch_size']} px patches."
            ),
        ]

    def wire(self, demo: gr.Blocks) -> None:
        super().wire(demo)
        # The slider fits the model the page opens with (load) and any later one (.change:
        # picked, or swapped in by a refresh; Gradio fires it only when the value differs).
        fit = dict(fn=self.on_model, inputs=[self.picker.dropdown], outputs=[self.layer, self.note])
        demo.load(**fit, api_visibility="private", show_progress="hidden")
        self.picker.dropdown.change(**fit, api_visibility="private")
