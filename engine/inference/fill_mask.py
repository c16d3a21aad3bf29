"""The fill-mask lens: what a masked language model puts in the blank.

Devlin et al. 2019 (BERT, arXiv:1810.04805): the model reads the whole sentence, the blank
included, and gives a distribution over its vocabulary at the blank. The top `k` distinct
words are shown with their probabilities and the sentence each one completes. The blank may be
written "[MASK]" or "<mask>" whatever the model's own mask token is.

    lm = load_lens_model("9", FILL_MASK, home)
    out = fill_mask(lm, "a small red [MASK] on a blue background", k=5)
    out["predictions"][0]   # {"token": "star", "score": 0.41, "sequence": "a small red star ..."}
"""

from __future__ import annotations

import re
from typing import Any

from engine import checks
from engine.inference.models import Lens, LensError, LensModel

FILL_MASK = Lens(
    "fill_mask",
    "fill-mask",
    model_types=("bert",),
    wants="a masked language model: a BERT run, or a Hub id such as bert-base-uncased",
    suggestions=("bert-base-uncased",),
)
MASK_SPELLINGS = re.compile(r"\[mask\]|<mask>", re.IGNORECASE)
MAX_K = 50


def with_model_mask(text: str, mask_token: str) -> str:
    """`text` with every "[MASK]" / "<mask>" (any case) written as the model's mask token."""
    return MASK_SPELLINGS.sub(lambda _: mask_token, text)


def fill_mask(lm: LensModel, text: str, k: int = 5) -> dict[str, Any]:
    """The `k` most probable distinct words for the one mask in `text`.

    Returns {"text" (with the model's mask token), "mask_token", "predictions": [{"token",
    "token_id", "score" (probability over the whole vocabulary), "sequence" (the sentence
    with that word in the blank)}] most probable first, "model"}. Special tokens are never
    offered; two vocabulary entries that read the same (a word and its "##" piece) count once.
    """
    import torch

    tokenizer = lm.processor
    mask = getattr(tokenizer, "mask_token", None)
    if tokenizer is None or mask is None:
        raise LensError(f"{lm.label} has no tokenizer with a mask token saved with it")
    k = checks.whole_number(k, "k", error=LensError)
    if not 1 <= k <= MAX_K:
        raise LensError(f"k must be from 1 to {MAX_K}, got {k}")
    text = with_model_mask(str(text or "").strip(), mask)
    count = text.count(mask)
    if count == 0:
        raise LensError(
            "the text has no mask: write [MASK] (or <mask>) where a word is "
            'missing, e.g. "a small red [MASK] on a blue background"'
        )
    if count > 1:
        raise LensError(
            f"the text has {count} masks; this lens fills one at a time: keep one [MASK]"
        )
    limit = int(getattr(lm.model.config, "max_position_embeddings", 512))
    with lm.lock:  # a fast tokenizer's truncation state is shared by the requests
        ids = tokenizer(text, truncation=True, max_length=limit)["input_ids"]
    if tokenizer.mask_token_id not in ids:
        raise LensError(
            f"the mask falls after the first {limit} tokens, which is all "
            f"{lm.label} reads; shorten the text before it"
        )
    position = ids.index(tokenizer.mask_token_id)
    with lm.lock, torch.inference_mode():
        logits = lm.model(input_ids=torch.tensor([ids])).logits[0, position]  # (V,)
    probabilities = torch.softmax(logits.float(), dim=-1)
    special = set(tokenizer.all_special_ids)
    predictions: list[dict[str, Any]] = []
    seen: set[str] = set()
    for token_id in torch.argsort(probabilities, descending=True, stable=True).tolist():
        if token_id in special or token_id >= len(tokenizer):
            continue
        word = tokenizer.decode([token_id]).strip()
        if not word or word in seen:
            continue
        seen.add(word)
        filled = list(ids)
        filled[position] = token_id
        predictions.append(
            {
                "token": word,
                "token_id": token_id,
                "score": float(probabilities[token_id]),
                "sequence": tokenizer.decode(filled, skip_special_tokens=True),
            }
        )
        if len(predictions) == k:
            break
    if len(predictions) < k:
        raise LensError(
            f"{lm.label} knows only {len(predictions)} distinct words; ask for "
            f"at most {len(predictions)}"
        )
    return {"text": text, "mask_token": mask, "predictions": predictions, "model": lm.label}
