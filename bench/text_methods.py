"""The language and image-text methods' "done when" figures, from the CLI with the quick preset.

    python bench/text_methods.py [--home /tmp/texthome] [--runs clip,bert,gpt,t5,pydocs]

Each run is `python -m engine train --method M --dataset D --preset quick --json --home H`,
timed from outside; then its run folder is loaded offline with plain transformers:
- clip on shapes: zero-shot accuracy on the held-out colour-shape pairs (never trained on)
  with the colours ignored and without, and on the pairs it trained on, at the last step,
  against chance (1 / 10 shapes);
- bert on captions: `pipeline("fill-mask")` on "a small red [MASK] on a blue background.";
- gpt on captions: `pipeline("text-generation")` from "a small", and the share of generated
  words that are caption words;
- t5 on captions: held-out captions with the shape and background colour words replaced by
  sentinels, filled with `generate`; the share of spans filled with a word of the right kind
  (and with the exact word, which no context predicts: chance is about 1 in 10);
- gpt on pydocs: the loss of the first and last 10% of the steps.
Prints one markdown table (the one in bench/RESULTS-text.md) and each run's details.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["HF_HUB_OFFLINE"] = "1"

RUNS = {
    "clip": ("clip", "shapes"),
    "bert": ("bert", "captions"),
    "gpt": ("gpt", "captions"),
    "t5": ("t5", "captions"),
    "pydocs": ("gpt", "pydocs"),
}
PROMPT = "a small red [MASK] on a blue background."


def train(method: str, dataset: str, home: str, extra: list[str]) -> tuple[dict, float]:
    command = [
        sys.executable,
        "-m",
        "engine",
        "train",
        "--method",
        method,
        "--dataset",
        dataset,
        "--preset",
        "quick",
        "--json",
        "--home",
        home,
        *extra,
    ]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    minutes = (time.perf_counter() - start) / 60
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return json.loads(lines[-1]), minutes


def model_folder(run_dir: str) -> str:
    from engine.hub import resolve_folder

    return str(resolve_folder(run_dir))


def curve(studio, job_id: int, name: str) -> list[tuple[int, float]]:
    return [(p["step"], p["value"]) for p in studio.metrics(job_id) if p["name"] == name]


def clip_figures(studio, summary: dict) -> tuple[str, dict]:
    curves = {
        name: curve(studio, summary["job_id"], name)
        for name in ("zero_shot_acc", "zero_shot_colour_blind_acc", "zero_shot_seen_acc")
    }
    held, blind, seen = (curves[n][-1][1] for n in curves)
    return (
        f"held-out zero-shot accuracy {blind:.3f} with the colours ignored, {held:.3f} "
        f"without; on the pairs it trained on {seen:.3f}; chance 0.100",
        {name: [(s, round(v, 3)) for s, v in points] for name, points in curves.items()},
    )


def bert_figures(studio, summary: dict) -> tuple[str, dict]:
    from transformers import pipeline

    from engine.data.shapes import SHAPE_NAMES

    fill = pipeline("fill-mask", model=model_folder(summary["run_dir"]), top_k=5)
    top = [(r["token_str"], round(r["score"], 3)) for r in fill(PROMPT)]
    shapes = [t for t, _ in top if t in SHAPE_NAMES]
    return (
        f"'{PROMPT}' -> {', '.join(t for t, _ in top)} ({len(shapes)}/5 shape words)",
        {"top5": top},
    )


def caption_words() -> set[str]:
    from engine.data.text import corpus_texts

    return {w for c in corpus_texts("captions", "train") for w in re.findall(r"[a-z]+", c)}


def gpt_figures(studio, summary: dict) -> tuple[str, dict]:
    from transformers import pipeline, set_seed

    generate = pipeline("text-generation", model=model_folder(summary["run_dir"]))
    set_seed(0)
    outs = [
        o["generated_text"]
        for o in generate(
            "a small", max_new_tokens=24, do_sample=True, temperature=0.8, num_return_sequences=3
        )
    ]
    vocab = caption_words()
    words = [w for o in outs for w in re.findall(r"[a-z]+", o.lower())]
    share = sum(w in vocab for w in words) / max(len(words), 1)
    return (
        f'"{outs[0].splitlines()[0]}" ({share:.0%} of generated words are caption words)',
        {"samples": outs},
    )


def t5_figures(studio, summary: dict) -> tuple[str, dict]:
    """Held-out captions with the shape word, or the background colour word, replaced by a
    sentinel, filled with `generate`. Both are drawn at random for each image, so no text
    context tells which shape or colour it was (the exact word is right about 1 time in 10,
    by chance); a model that learned the captions fills each span with a word of the right
    kind: a shape name, a colour name."""
    import torch
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    from engine.data.shapes import BACKGROUND_PALETTE, SHAPE_NAMES
    from engine.data.text import corpus_texts

    folder = model_folder(summary["run_dir"])
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = T5ForConditionalGeneration.from_pretrained(folder, use_safetensors=True).eval()
    captions = [c for c in corpus_texts("captions", "test") if "background," in c.split()][:40]
    kinds = {"shape": set(SHAPE_NAMES), "colour": set(BACKGROUND_PALETTE)}
    right_kind, exact, total, shown = 0, 0, 0, []
    for caption in captions:
        words = caption.split()
        for i, kind in ((3, "shape"), (words.index("background,") - 1, "colour")):
            masked = " ".join("<extra_id_0>" if j == i else w for j, w in enumerate(words))
            inputs = tokenizer(masked, return_tensors="pt")
            with torch.no_grad():
                out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
            decoded = tokenizer.decode(out[0], skip_special_tokens=False)
            fills = re.split(r"<extra_id_\d+>", decoded.replace("<pad>", "").replace("</s>", ""))[
                1:
            ]
            fill = fills[0].strip() if fills else ""
            total += 1
            right_kind += fill in kinds[kind]
            exact += fill == words[i].strip(",")
            if len(shown) < 2:
                shown.append(f"{masked} -> {decoded.replace('<pad>', '').strip()}")
    return (
        f"{right_kind}/{total} sentinel spans ({len(captions)} held-out captions, shape or "
        f"background colour hidden) filled "
        f"with a word of the right kind (shape, colour); {exact}/{total} with the exact "
        f"word (chance about 1 in 10); e.g. {shown[0]}",
        {"examples": shown, "right_kind": right_kind, "exact": exact, "total": total},
    )


def pydocs_figures(studio, summary: dict) -> tuple[str, dict]:
    losses = [v for _, v in curve(studio, summary["job_id"], "loss")]
    tenth = max(len(losses) // 10, 1)
    first, last = sum(losses[:tenth]) / tenth, sum(losses[-tenth:]) / tenth
    return (
        f"loss {first:.2f} (first {tenth} steps) -> {last:.2f} (last {tenth} steps)",
        {"first": first, "last": last},
    )


FIGURES = {
    "clip": clip_figures,
    "bert": bert_figures,
    "gpt": gpt_figures,
    "t5": t5_figures,
    "pydocs": pydocs_figures,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", default="/tmp/texthome")
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to every run (e.g. steps=20 for a smoke test)",
    )
    parser.add_argument(
        "--jobs",
        default="",
        metavar="RUN=ID,...",
        help="figures of jobs already trained (e.g. bert=1,gpt=2) instead of "
        "training; minutes are then the job's own duration",
    )
    args = parser.parse_args()
    from engine.api import Studio

    extra = [arg for item in args.set for arg in ("--set", item)]
    done = dict(item.split("=") for item in args.jobs.split(",") if item)
    rows = []
    for key in done or [r.strip() for r in args.runs.split(",") if r.strip()]:
        method, dataset = RUNS[key]
        load = os.getloadavg()[0]
        if key in done:
            summary = Studio(args.home).summary(int(done[key]))
            minutes, load = summary["duration_s"] / 60, float("nan")
        else:
            summary, minutes = train(method, dataset, args.home, extra)
        figure, details = FIGURES[key](Studio(args.home), summary)
        rows.append((method, dataset, summary, minutes, load, figure))
        print(
            json.dumps(
                {
                    "run": key,
                    "job_id": summary["job_id"],
                    "minutes": round(minutes, 2),
                    "status": summary["status"],
                    **details,
                }
            ),
            flush=True,
        )
    print("\n| method | dataset | job | steps | loss first -> last | minutes | load | figure |")
    print("|---|---|---|---|---|---|---|---|")
    for method, dataset, s, minutes, load, figure in rows:
        print(
            f"| {method} | {dataset} | {s['job_id']} | {s['steps']} | {s['first_loss']:.2f} -> "
            f"{s['final_loss']:.2f} | {minutes:.1f} | {load:.1f} | {figure} |"
        )


if __name__ == "__main__":
    main()
