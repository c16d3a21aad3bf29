"""Test-wide settings: offline, no analytics, no UMAP warm-up, the repo root importable."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("PRETEXT_UMAP_WARMUP", "0")
os.environ.pop("PRETEXT_FAULT", None)
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Test processes share the cores (pytest-xdist): one thread each, and in the workers
    # they start, so none spins on a core another needs.
    os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402

# Tiny settings every method accepts: a few steps in well under a second each on a CPU.
TINY = {
    "steps": 12,
    "batch_size": 16,
    "image_size": 16,
    "warmup_steps": 2,
    "checkpoint_every": 5,
    "precision": "fp32",
}


@pytest.fixture
def tiny_params() -> dict:
    return dict(TINY)
