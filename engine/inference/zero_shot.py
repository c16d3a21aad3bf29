"""The zero-shot lens: classify an image by the words nearest to it in CLIP's space.

Radford et al. 2021 (CLIP, arXiv:2103.00020), section 3.1.4: each candidate label is put into
one or more prompt templates ("a photo of a {}."), the prompts are embedded by the text tower,
and a label's classifier is the mean of its prompts' normalised embeddings, normalised again
(the paper's prompt ensembling, `engine.prompts`: transformers' pipeline takes one template).
The image's normalised embedding against those classifiers, times the model's learned logit
scale, gives the softmax over the labels. Works on a CLIP run or any CLIP checkpoint.

    lm = load_lens_model("7", ZERO_SHOT, home)
    out = zero_shot(lm, image, ["star", "ring"], ["a photo of a {}.", "a {} on a background"])
    out["probabilities"]   # one per label, summing to one

Words to ignore (`ignore="red, blue, green"`) take an attribute out of the decision: the label
classifiers are projected off the directions along which the prompts "a {word} {label}"
differ, after Chuang et al. 2023 ("Debiasing Vision-Language Models via Biased Prompts",
arXiv:2302.00070, their orthogonal projection). A CLIP that never saw a heart in yellow learns
"heart" as "not yellow"; with the colours ignored, a yellow heart is judged by its shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.inference.images import center_square, model_input
from engine.inference.models import Lens, LensError, LensModel
from engine.prompts import label_classifiers

ZERO_SHOT = Lens(
    "zero_shot",
    "zero-shot",
    model_types=("clip",),
    wants="a CLIP model (an image and a text tower): a CLIP run, or a Hub id such as "
    "openai/clip-vit-base-patch32",
    suggestions=("openai/clip-vit-base-patch32",),
)
DEFAULT_TEMPLATE = "a photo of a {}."
MAX_LABELS = 100
MAX_TEMPLATES = 32
MAX_IGNORED = 32
MAX_ATTRIBUTE_PROMPTS = 2000  # words x labels x templates embedded to find the directions


def parse_labels(labels: str | Sequence[str]) -> list[str]:
    """Comma-separated text (or a list) -> distinct, non-empty labels in their order."""
    items = labels.split(",") if isinstance(labels, str) else list(labels or [])
    out: list[str] = []
    for item in items:
        label = str(item).strip()
        if label and label not in out:
            out.append(label)
    if len(out) < 2:
        raise LensError(
            'give at least two candidate labels, separated by commas (e.g. "cat, dog, rocket")'
        )
    if len(out) > MAX_LABELS:
        raise LensError(f"at most {MAX_LABELS} labels at once; got {len(out)}")
    return out


def parse_templates(templates: str | Sequence[str] | None) -> list[str]:
    """One template per line (or a list), each with one "{}" where the label goes; none given
    means the default "a photo of a {}."."""
    items = templates.splitlines() if isinstance(templates, str) else list(templates or [])
    out: list[str] = []
    for item in items:
        template = str(item).strip()
        if not template or template in out:
            continue
        if template.count("{}") != 1:
            raise LensError(
                f"the template {template!r} needs exactly one {{}} where the label "
                'goes, e.g. "a photo of a {}."'
            )
        out.append(template)
    if len(out) > MAX_TEMPLATES:
        raise LensError(f"at most {MAX_TEMPLATES} templates; got {len(out)}")
    return out or [DEFAULT_TEMPLATE]


def parse_ignored(words: str | Sequence[str] | None) -> list[str]:
    """Comma-separated attribute words to ignore (or a list): none, or at least two, since an
    attribute's direction is where its values differ."""
    items = words.split(",") if isinstance(words, str) else list(words or [])
    out = list(dict.fromkeys(w for w in (str(i).strip() for i in items) if w))
    if len(out) == 1:
        raise LensError(
            f"ignoring needs at least two values of the attribute, e.g. "
            f'"red, blue, green"; got only {out[0]!r}'
        )
    if len(out) > MAX_IGNORED:
        raise LensError(f"at most {MAX_IGNORED} words to ignore; got {len(out)}")
    return out


def clip_tokenizer(lm: LensModel) -> Any:
    tokenizer = getattr(lm.processor, "tokenizer", lm.processor)
    if tokenizer is None or not callable(tokenizer):
        raise LensError(f"{lm.label} has no tokenizer saved with it, so it cannot read labels")
    return tokenizer


def text_embeddings(lm: LensModel, texts: list[str]) -> Any:
    """B texts -> float32 (B, D) unit-length embeddings from the text tower."""
    import torch

    tokenizer = clip_tokenizer(lm)
    limit = int(lm.model.config.text_config.max_position_embeddings)
    # Under the model's lock: a fast tokenizer's padding/truncation state is shared.
    with lm.lock, torch.inference_mode():
        tokens = tokenizer(
            texts, padding=True, truncation=True, max_length=limit, return_tensors="pt"
        )
        out = lm.model.get_text_features(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
        )
    features = out if isinstance(out, torch.Tensor) else out.pooler_output  # (B, D)
    return torch.nn.functional.normalize(features.float(), dim=-1)


def image_embedding(lm: LensModel, image: np.ndarray) -> Any:
    """An (H, W, 3) uint8 image -> float32 (D,) unit-length embedding of its centred square."""
    import torch

    _, pixels = model_input(center_square(image), lm.image_size, *lm.image_stats)
    with lm.lock, torch.inference_mode():
        out = lm.model.get_image_features(pixel_values=pixels)
    features = out if isinstance(out, torch.Tensor) else out.pooler_output  # (1, D)
    return torch.nn.functional.normalize(features.float(), dim=-1)[0]


def zero_shot(
    lm: LensModel,
    image: np.ndarray,
    labels: str | Sequence[str],
    templates: str | Sequence[str] | None = None,
    ignore: str | Sequence[str] | None = None,
) -> dict[str, Any]:
    """Probabilities of `labels` for `image` (H, W, 3 uint8) with the template ensemble,
    blind to the `ignore` words' attribute when given (comma-separated, at least two).

    Returns {"labels", "probabilities" (floats summing to one, in the labels' order),
    "similarities" (cosine of the image to each label's ensemble), "ranking" (label indices,
    most probable first), "templates", "ignored", "logit_scale", "model"}.
    """
    import torch

    names = parse_labels(labels)
    prompts = parse_templates(templates)
    ignored = parse_ignored(ignore)
    needed = len(ignored) * len(names) * len(prompts)
    if needed > MAX_ATTRIBUTE_PROMPTS:
        raise LensError(
            f"ignoring {len(ignored)} words over {len(names)} labels and "
            f"{len(prompts)} templates takes {needed} prompts, more than "
            f"{MAX_ATTRIBUTE_PROMPTS}; ignore fewer words or use fewer templates"
        )
    classes = label_classifiers(
        lambda texts: text_embeddings(lm, texts), names, prompts, ignored
    )  # (C, D)
    picture = image_embedding(lm, image)  # (D,)
    similarities = classes @ picture  # (C,)
    scale = float(lm.model.logit_scale.detach().exp())
    probabilities = torch.softmax(scale * similarities, dim=0)
    return {
        "labels": names,
        "probabilities": probabilities.tolist(),
        "similarities": similarities.tolist(),
        "ranking": torch.argsort(probabilities, descending=True, stable=True).tolist(),
        "templates": prompts,
        "ignored": ignored,
        "logit_scale": scale,
        "model": lm.label,
    }


PHOTO_LABELS = "cat, dog, coffee cup, rocket, astronaut, car"


def example_rows(pictures: list[dict[str, str]]) -> list[dict[str, str]]:
    """The example pictures ({"name", "path"}) with labels and templates to try on them: the
    photographs with everyday words and the default template, the shapes with the shape names,
    the prompts a CLIP run of the studio checks its zero-shot with, and its colours ignored;
    the scenes with their ten object names and the same prompts."""
    from engine.data.scenes import CLASS_NAMES
    from engine.data.shapes import PALETTE, SHAPE_NAMES
    from engine.methods.clip import TEMPLATES

    templates = "\n".join(TEMPLATES)
    kinds = {
        "shapes-": {
            "labels": ", ".join(SHAPE_NAMES),
            "templates": templates,
            "ignore": ", ".join(PALETTE),
        },
        "scenes-": {"labels": ", ".join(CLASS_NAMES), "templates": templates, "ignore": ""},
    }
    photos = {"labels": PHOTO_LABELS, "templates": DEFAULT_TEMPLATE, "ignore": ""}
    return [
        dict(p, **next((v for k, v in kinds.items() if p["name"].startswith(k)), photos))
        for p in pictures
    ]
