"""The model card of an exported run: a Hub README.md with YAML metadata, and its loss curve.

    write_card(folder, facts)            # README.md (+ loss_curve.png when there are points)

The metadata goes through huggingface_hub's `ModelCardData` and `ModelCard.from_template`, so
the YAML block is the one the Hub parses: `library_name`, `tags` (self-supervised, the method),
`datasets`, `metrics` and a `pipeline_tag` where one fits. The body says, in order: what the
method is (its `MethodCard`), how the run was trained (the resolved config), how it scored
against the baselines on the same data, the loss curve, and how to load the folder without the
studio. Plain data in (`CardFacts`), no torch and no store: `engine.export` gathers the facts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CURVE_FILE = "loss_curve.png"
CARD_FILE = "README.md"
# Columns of the evaluation table: figure key -> heading (in this order, when present).
FIGURE_COLUMNS = {
    "knn_top1": "k-NN top-1",
    "knn_top5": "k-NN top-5",
    "linear_top1": "linear top-1",
}
_TEMPLATE = "---\n{{ card_data }}\n---\n\n{{ body }}\n"


@dataclass
class CardFacts:
    """Everything the card says about one exported checkpoint."""

    method: str  # registry name, e.g. "simclr"
    title: str  # "SimCLR"
    job_id: int
    step: int
    dataset: str
    preset: str
    backbone: str
    config: dict[str, Any]  # the resolved training config
    library_name: str  # "transformers" or "pytorch"
    pipeline_tag: str | None
    load_snippet: str  # Python that loads the folder, shown under "How to load it"
    files: list[str]  # what the folder holds, shown under "Files"
    card: dict[str, Any] | None = None  # the MethodCard as a dict
    paper: str = ""
    # Evaluation rows: {"name", "kind" ("job" | "baseline"), "dataset", figure keys...}
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss)
    extra_images: list[tuple[str, str]] = field(default_factory=list)  # (caption, file name)


def card_data(facts: CardFacts) -> Any:
    """The card's YAML metadata as huggingface_hub's `ModelCardData`."""
    from huggingface_hub import ModelCardData

    tags = ["self-supervised", facts.method, "pretext-studio"]
    if facts.backbone:
        tags.append(facts.backbone)
    return ModelCardData(
        library_name=facts.library_name,
        tags=tags,
        datasets=[facts.dataset],
        metrics=_metric_ids(facts.evaluations) or None,
        pipeline_tag=facts.pipeline_tag,
        model_name=f"{facts.method}-{facts.dataset}-job{facts.job_id}",
    )


def render_card(facts: CardFacts) -> str:
    """The whole README.md: YAML metadata, then the body."""
    from huggingface_hub import ModelCard

    card = ModelCard.from_template(card_data(facts), template_str=_TEMPLATE, body=_body(facts))
    return str(card)


def write_card(folder: Path, facts: CardFacts) -> Path:
    """Write README.md (and loss_curve.png when the run logged a loss) into `folder`."""
    folder = Path(folder)
    if facts.losses:
        draw_curve(facts.losses, folder / CURVE_FILE, f"{facts.title} loss, job {facts.job_id}")
    path = folder / CARD_FILE
    path.write_text(render_card(facts), encoding="utf-8")
    return path


# ---- the body -----------------------------------------------------------------------------
def _body(facts: CardFacts) -> str:
    parts = [
        f"# {facts.title} on {facts.dataset} (Pretext Studio job {facts.job_id}, "
        f"step {facts.step})",
        f"A `{facts.backbone}` encoder pretrained with **{facts.title}** "
        f"({facts.card['authors'] + ', ' if facts.card else ''}"
        f"{facts.card['year'] if facts.card else ''}; {facts.paper or 'see the method card'}) "
        f"on `{facts.dataset}`, {facts.preset} preset, {facts.step} steps, exported by "
        "Pretext Studio as a folder that loads without the studio.",
    ]
    if facts.card:
        parts += [
            "## The method",
            facts.card["idea"],
            f"**Good at.** {facts.card['good_at']}",
            f"**Key settings.** {facts.card['hyperparameters']}",
        ]
    parts += ["## How to load it", "```python\n" + facts.load_snippet.strip() + "\n```"]
    parts += ["## Evaluation", _evaluation_table(facts)]
    if facts.losses:
        first, last = facts.losses[0], facts.losses[-1]
        parts += [
            "## Training curve",
            f"![loss curve]({CURVE_FILE})",
            f"Loss {first[1]:.4g} at step {first[0]}, {last[1]:.4g} at step {last[0]}.",
        ]
    for caption, name in facts.extra_images:
        parts += [f"![{caption}]({name})"]
    parts += [
        "## Training configuration",
        "The resolved settings the job trained with (also in `training_config.json`):",
        "```json\n" + json.dumps(facts.config, indent=1, sort_keys=True, default=str) + "\n```",
        "## Files",
        "\n".join(f"- `{name}`" for name in sorted(facts.files)),
    ]
    return "\n\n".join(parts)


_FIGURE_PREFIXES = ("fewshot_", "finetune_", "seg_", "recon_")
# figure key prefix -> the Hub metric id it reports
_METRIC_IDS = {"knn_": "accuracy", "linear_": "accuracy", "fewshot_": "accuracy",
               "finetune_": "accuracy", "seg_": "jaccard", "recon_": "psnr"}  # fmt: skip


def _figures(row: dict[str, Any]) -> list[str]:
    return [key for key in row if key in FIGURE_COLUMNS or key.startswith(_FIGURE_PREFIXES)]


def _metric_ids(rows: list[dict[str, Any]]) -> list[str]:
    """The Hub metric ids the evaluation rows report (accuracy, jaccard, psnr), in order."""
    found = [
        metric
        for row in rows
        for key in _figures(row)
        for prefix, metric in _METRIC_IDS.items()
        if key.startswith(prefix)
    ]
    return list(dict.fromkeys(found))


def _evaluation_table(facts: CardFacts) -> str:
    """This run's figures beside the baselines evaluated on the same dataset, as Markdown."""
    rows = [row for row in facts.evaluations if _figures(row)]
    if not any(row.get("kind") == "job" for row in rows):
        return (
            "Not evaluated yet. In the studio: `python -m engine eval --job "
            f"{facts.job_id} --protocol knn,linear`, then export again."
        )
    keys: list[str] = [k for k in FIGURE_COLUMNS if any(k in row for row in rows)]
    extra = sorted(
        {k for row in rows for k in _figures(row) if k not in FIGURE_COLUMNS}
        - {k for row in rows for k in row if k.endswith(("_std", "_scratch"))}
    )
    keys += extra
    heading = ["model", "evaluated on", *(FIGURE_COLUMNS.get(k, k.replace("_", " ")) for k in keys)]
    lines = ["| " + " | ".join(heading) + " |", "|" + "---|" * len(heading)]
    for row in rows:
        name = row["name"]
        if row.get("kind") == "job":
            at = row.get("eval_step")
            later = at is not None and at != facts.step
            name = f"**{name}** (this run" + (f", evaluated at step {at})" if later else ")")
        cells = [name, str(row.get("dataset", ""))]
        cells += [f"{row[k]:.3f}" if isinstance(row.get(k), (int, float)) else "" for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        "Baselines: raw pixels and the same network at random initialisation, evaluated with "
        "the same protocol on the same data (the studio stores them with the first evaluation "
        "of each dataset)."
    )
    return "\n".join(lines) + "\n\n" + note


# ---- the loss curve ----------------------------------------------------------------------
def draw_curve(
    points: list[tuple[int, float]], path: Path, title: str, size: tuple[int, int] = (640, 360)
) -> Path:
    """A line chart of (step, value) points as a PNG, drawn with PIL (no plotting library):
    axes with min/max labels, the curve, and the title."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = size
    left, right, top, bottom = 64, 16, 32, 36
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=13)  # PIL's own font: no font file to find
    finite = [(s, v) for s, v in points if math.isfinite(v)]
    draw.text((left, 8), title, fill="black", font=font)
    draw.rectangle([left, top, width - right, height - bottom], outline=(160, 160, 160))
    if finite:
        steps = [s for s, _ in finite]
        values = [v for _, v in finite]
        s0, s1 = min(steps), max(steps)
        v0, v1 = min(values), max(values)
        span_s, span_v = (s1 - s0) or 1, (v1 - v0) or abs(v1) or 1.0
        plot_w, plot_h = width - left - right, height - top - bottom

        def xy(step: float, value: float) -> tuple[float, float]:
            return (
                left + (step - s0) / span_s * plot_w,
                top + (1 - (value - v0) / span_v) * plot_h,
            )

        line = [xy(s, v) for s, v in finite]
        if len(line) == 1:
            x, y = line[0]
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(31, 119, 180))
        else:
            draw.line(line, fill=(31, 119, 180), width=2)
        draw.text((4, top - 4), f"{v1:.4g}", fill="black", font=font)
        draw.text((4, height - bottom - 12), f"{v0:.4g}", fill="black", font=font)
        draw.text((left, height - bottom + 6), f"step {s0}", fill="black", font=font)
        label = f"step {s1}"
        draw.text((width - right, height - bottom + 6), label, fill="black", font=font, anchor="ra")
    image.save(path)
    return Path(path)
