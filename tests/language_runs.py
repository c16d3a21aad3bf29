"""Tiny CLIP, BERT, GPT and T5 runs for the language lenses' tests, trained once per test
process (a few steps each, about 10 s in all after the imports) and shared by every test module
that asks: `language_runs()` returns (home folder, {"clip": "1", "bert": "2", ...}).

Built with `Studio.run_foreground`, so each is a real finished job with its exported
`pretrained/` folder, listed by the lens pickers like any user's run.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

COMMON = {
    "steps": 3,
    "batch_size": 16,
    "warmup_steps": 1,
    "precision": "fp32",
    "backbone": "tiny",
    "checkpoint_every": 3,
}
RUNS = (
    ("clip", "shapes", {"image_size": 16, "patch_size": 4, "zero_shot_every": 3, "train_pairs": 0}),
    ("bert", "captions", {"context_length": 32}),
    ("gpt", "captions", {"context_length": 32}),
    ("t5", "captions", {"context_length": 32}),
)


@functools.lru_cache(maxsize=1)
def language_runs() -> tuple[Path, dict[str, str]]:
    from engine.api import Studio

    home = Path(tempfile.mkdtemp(prefix="language-runs-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    studio = Studio(home)
    ids = {}
    for method, dataset, params in RUNS:
        summary = studio.run_foreground(
            {"method": method, "dataset": dataset, "params": dict(COMMON, **params)}
        )
        assert summary["status"] == "completed", summary["error"]
        ids[method] = str(summary["job_id"])
    studio.shutdown()
    return home, ids


def run_folder(method: str) -> str:
    """The run folder of the tiny `method` run (what a user may type into a model picker)."""
    home, ids = language_runs()
    return str(home / "runs" / ids[method])
