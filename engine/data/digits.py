"""scikit-learn's handwritten digits: 1,797 real 8x8 images of 0-9 (UCI optdigits test set).

Alpaydin & Kaynak 1998, "Optical Recognition of Handwritten Digits", UCI ML repository. The data
ships inside scikit-learn, so it loads with no network. It is an honesty check rather than a
showcase: raw pixels already score about 0.965 with k-NN.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import torch

NATIVE_SIZE = 8
TOTAL = 1797
TEST_FRACTION = 0.2
SPLIT_SEED = 0
# train_test_split rounds the test share up: ceil(0.2 * 1797) = 360.
NUM_TEST = 360
NUM_TRAIN = TOTAL - NUM_TEST
CLASS_NAMES: list[str] = [str(d) for d in range(10)]


def unavailable_reason() -> str:
    """ "" when scikit-learn can be imported, else what to install. Cheap: imports nothing."""
    if importlib.util.find_spec("sklearn") is None:
        return "scikit-learn is not installed; run `pip install scikit-learn`"
    return ""


def load_digits_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, 8, 8) uint8 and labels (N,) int64 of one split.

    The split is stratified by digit with a fixed seed, so it is the same on every machine and
    each digit keeps its share (about 36 test images per digit).
    """
    # Imported here: scikit-learn takes about a second to import and most callers never need it.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    pixels, labels = load_digits(return_X_y=True)  # (1797, 64) float in 0..16, (1797,) int
    index = np.arange(len(labels))
    train_idx, test_idx = train_test_split(
        index, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=labels
    )
    chosen = np.sort(train_idx if split == "train" else test_idx)
    grey = np.rint(pixels[chosen] * (255.0 / 16.0)).astype(np.uint8)  # 0..16 -> 0..255
    images = torch.from_numpy(grey).view(-1, 1, NATIVE_SIZE, NATIVE_SIZE)  # (N, 64) -> (N, 1, 8, 8)
    # Grey to three identical channels so every image model takes digits unchanged.
    rgb = images.expand(-1, 3, -1, -1).contiguous()  # (N, 3, 8, 8)
    return rgb, torch.from_numpy(labels[chosen].astype(np.int64))


def captions_for(labels: torch.Tensor) -> list[str]:
    """One caption per image, e.g. "a handwritten digit 7"."""
    return [f"a handwritten digit {int(d)}" for d in labels]
