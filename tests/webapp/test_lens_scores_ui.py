"""The Attention lens shows the Jaccard under the maps (the mask's caption, the note and the
details) for a builtin example; the MAE lens says the PSNR beside the two fills."""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np

from webapp.lens_attention import AttentionTab, jaccard_line
from webapp.lens_reconstruct import psnr_line


def test_jaccard_line_and_the_mask_caption():
    assert jaccard_line({"jaccard": None}) == ""
    line = jaccard_line({"jaccard": 0.6234, "jaccard_heads": [0.5, 0.712]})
    assert line == "Jaccard 0.62 with the object's mask (best head 0.71)."
    tab = AttentionTab.__new__(AttentionTab)
    mask = np.zeros((4, 4, 3), dtype=np.uint8)
    details = {"jaccard": 0.6234, "jaccard_heads": [0.5, 0.712]}
    heads = [(mask, "head 1")]
    _, _, shown, out = tab.present([heads, mask, mask, details])
    assert shown.label == "Mask · Jaccard 0.62, best head 0.71" and out is details
    _, _, shown, _ = tab.present([heads, mask, mask, {"grid": 4}])
    assert shown is mask  # no score: the picture as it is


def test_psnr_line():
    line = psnr_line({"psnr": 21.04, "psnr_mean_colour": 14.0, "psnr_nearest_visible": 17.26})
    assert line == (
        "PSNR on the hidden patches 21.0 dB; filled with the image's mean colour 14.0 dB, "
        "with the nearest visible patch 17.3 dB."
    )


def test_train_form_names_the_two_new_protocols():
    from webapp.train_tab import eval_choices

    protocols = [{"name": "segmentation", "description": ""}, {"name": "reconstruction"}]
    assert eval_choices(protocols) == [
        ("segmentation (ViT attention)", "segmentation"),
        ("reconstruction (MAE PSNR)", "reconstruction"),
    ]
