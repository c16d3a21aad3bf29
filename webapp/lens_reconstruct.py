"""MAE reconstruction tab (`/reconstruct`): hide patches, let the model paint them back.

Inputs: image, model (an MAE run, folder or Hub id), mask ratio, seed. Outputs: original,
masked input, reconstruction, reconstruction with the visible patches pasted back, details
(visible patches, loss on the hidden ones, a warning for a checkpoint without a decoder).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from webapp.figures import message
from webapp.lens_common import LensTab, ModelPicker, details_json, examples, image_input, picture

INTRO = (
    "**Can it fill the gaps?** A masked autoencoder sees only the visible patches and "
    "paints the hidden ones. Panels: the image at the model's resolution, what the encoder "
    "sees (grey: hidden), the reconstruction, and the reconstruction with the visible "
    "patches pasted back (as in the MAE paper's figures). Move the mask ratio to make it "
    "harder; change the seed for another mask."
)


def psnr_line(result: dict[str, Any]) -> str:
    """The hidden patches' PSNR beside the two fills without a network (the `reconstruction`
    protocol's baselines) for this image and mask."""
    return (
        f"PSNR on the hidden patches {result['psnr']:.1f} dB; filled with the image's mean "
        f"colour {result['psnr_mean_colour']:.1f} dB, with the nearest visible patch "
        f"{result['psnr_nearest_visible']:.1f} dB."
    )


class ReconstructTab(LensTab):
    api_name = "reconstruct"
    intro = INTRO

    def build(self) -> None:
        self.header()
        with gr.Row():
            with gr.Column(scale=2, min_width=300):
                self.image = image_input()
                self.picker = ModelPicker(self.studio, "reconstruct")
                with gr.Row():
                    self.mask_ratio = gr.Slider(
                        0.0,
                        0.95,
                        value=0.75,
                        step=0.05,
                        label="Mask ratio",
                        info="Share of patches hidden; 0.75 in training",
                    )
                    self.seed = gr.Number(
                        0, precision=0, label="Seed", info="Which patches are hidden"
                    )
                self.run_btn = gr.Button("Reconstruct", variant="primary")
                self.make_note()
                self.picture_examples = examples(self.studio, self.image, picker=self.picker)
            with gr.Column(scale=3, min_width=360):
                with gr.Row():
                    self.original = picture("Original")
                    self.masked = picture("Masked input")
                with gr.Row():
                    self.reconstruction = picture("Reconstruction")
                    self.pasted = picture("Reconstruction + visible")
                with gr.Accordion("Details", open=False):
                    self.details = gr.JSON(label="Details")
        self.hidden_trigger()
        self.inputs = [self.image, self.picker.dropdown, self.mask_ratio, self.seed]
        self.outputs = [self.original, self.masked, self.reconstruction, self.pasted, self.details]
        self.auto_triggers = [self.image.change, self.mask_ratio.release, self.seed.submit]

    def compute(
        self, image: Any, model: str, mask_ratio: float, seed: float
    ) -> tuple[list[Any], str]:
        if image is None:
            return self.cleared(), message("Upload an image or pick an example.")
        result = self.studio.lenses.reconstruct(image, model, float(mask_ratio), int(seed or 0))
        details = details_json(
            result,
            [
                "model",
                "visible_patches",
                "num_patches",
                "loss",
                "norm_pix_loss",
                "warning",
                "psnr",
                "psnr_mean_colour",
                "psnr_nearest_visible",
            ],
        )
        if result["warning"]:
            note = message(result["warning"], "warn")
        else:
            note = message(
                f"{result['model']}: {result['visible_patches']} of "
                f"{result['num_patches']} patches visible; mean squared error on "
                f"the hidden ones {result['loss']:.3f}"
                f"{' (per-patch normalised pixels)' if result['norm_pix_loss'] else ''}"
                f".{' ' + psnr_line(result) if result.get('psnr') is not None else ''}",
                "ok",
            )
        return [
            result["original"],
            result["masked"],
            result["reconstruction"],
            result["pasted"],
            details,
        ], note
