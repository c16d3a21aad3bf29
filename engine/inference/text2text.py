"""The text-to-text lens: an encoder-decoder T5 reads a text and writes one.

Raffel et al. 2020 (T5, arXiv:1910.10683). A T5 pretrained here learned span corruption only:
given a text with sentinels (<extra_id_0>, <extra_id_1>, ...) where spans are missing, it
writes each sentinel followed by the span it hid; the lens puts the spans back in place. A
checkpoint trained on tasks too (t5-small from the Hub) also answers the T5 paper's task
prefixes ("translate English to French: ...", "summarize: ..."). Decoding is beam search.
"[MASK]" and "<mask>" are accepted for sentinels and numbered in order.

    lm = load_lens_model("14", TEXT2TEXT, home)
    out = text2text(lm, "a small red <extra_id_0> on a blue background", num_beams=4)
    out["filled"]   # "a small red star on a blue background"
"""

from __future__ import annotations

import re
from typing import Any

from engine import checks
from engine.inference.models import Lens, LensError, LensModel

TEXT2TEXT = Lens(
    "text2text",
    "text-to-text",
    model_types=("t5",),
    wants="an encoder-decoder T5: a T5 run, or a Hub id such as t5-small",
    suggestions=("t5-small",),
)
SENTINEL = re.compile(r"<extra_id_(\d+)>")
MASK_SPELLINGS = re.compile(r"\[mask\]|<mask>", re.IGNORECASE)
MAX_BEAMS = 16
MAX_NEW_TOKENS = 512
MAX_INPUT_TOKENS = 512
TASK_PREFIXES = ("translate English to French:", "translate English to German:", "summarize:")


def with_sentinels(text: str) -> str:
    """`text` with each "[MASK]"/"<mask>" replaced by the next sentinel number not yet used."""
    used = {int(n) for n in SENTINEL.findall(text)}
    counter = iter(n for n in range(10_000) if n not in used)
    return MASK_SPELLINGS.sub(lambda _: f"<extra_id_{next(counter)}>", text)


def sentinel_numbers(tokenizer: Any) -> dict[int, int]:
    """token id -> N for the tokenizer's <extra_id_N> tokens."""
    out = {}
    for token, token_id in tokenizer.get_vocab().items():
        match = SENTINEL.fullmatch(token)
        if match:
            out[token_id] = int(match.group(1))
    return out


def split_spans(ids: list[int], sentinels: dict[int, int], tokenizer: Any) -> dict[int, str]:
    """Decoder output ids "<extra_id_0> a b <extra_id_1> c ..." -> {0: "a b", 1: "c"}; text
    before the first sentinel is dropped, as is a sentinel's second span."""
    spans: dict[int, str] = {}
    current, pieces = None, []
    for token_id in [*ids, None]:
        if token_id is None or token_id in sentinels:
            if current is not None and current not in spans:
                spans[current] = tokenizer.decode(pieces, skip_special_tokens=True).strip()
            current, pieces = (sentinels[token_id] if token_id is not None else None), []
        else:
            pieces.append(token_id)
    return spans


def check_settings(num_beams: Any, max_new_tokens: Any) -> tuple[int, int]:
    num_beams = checks.whole_number(num_beams, "beams", error=LensError)
    max_new_tokens = checks.whole_number(max_new_tokens, "max new tokens", error=LensError)
    if not 1 <= num_beams <= MAX_BEAMS:
        raise LensError(f"beams must be from 1 to {MAX_BEAMS}, got {num_beams}")
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise LensError(f"max new tokens must be from 1 to {MAX_NEW_TOKENS}, got {max_new_tokens}")
    return num_beams, max_new_tokens


def text2text(
    lm: LensModel, text: str, num_beams: int = 4, max_new_tokens: int = 40
) -> dict[str, Any]:
    """The model's output for `text` by beam search.

    Returns {"input" (with numbered sentinels), "output" (decoded, sentinels kept), "spans":
    [{"sentinel", "text"}] (one per sentinel of the input; "" when the model wrote none),
    "filled" (the input with its sentinels replaced by their spans; None without sentinels),
    "parts": [(piece, is_fill)] of the filled text, "hint" (or None), "model"}.
    """
    import torch

    num_beams, max_new_tokens = check_settings(num_beams, max_new_tokens)
    tokenizer = lm.processor
    if tokenizer is None:
        raise LensError(f"{lm.label} has no tokenizer saved with it")
    source = with_sentinels(str(text or "").strip())
    if not source:
        raise LensError(
            "type a text: one with <extra_id_0> (or [MASK]) where a span is "
            'missing, or a task such as "translate English to French: ..."'
        )
    sentinels = sentinel_numbers(tokenizer)
    asked = [int(n) for n in SENTINEL.findall(source)]
    unknown = [n for n in asked if n not in sentinels.values()]
    if unknown:
        raise LensError(
            f"{lm.label}'s vocabulary has no <extra_id_{unknown[0]}> "
            f"(it has {len(sentinels)} sentinels)"
        )
    config = lm.model.config
    with lm.lock, torch.inference_mode():  # the lock also guards the tokenizer's shared state
        ids = tokenizer(source, truncation=True, max_length=MAX_INPUT_TOKENS, return_tensors="pt")[
            "input_ids"
        ]  # (1, L)
        out = lm.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            num_beams=num_beams,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            early_stopping=num_beams > 1,
        )
    drop = {config.pad_token_id, config.eos_token_id, config.decoder_start_token_id}
    output_ids = [i for i in out[0].tolist() if i not in drop]
    result: dict[str, Any] = {
        "input": source,
        "output": tokenizer.decode(output_ids, skip_special_tokens=False),
        "spans": [],
        "filled": None,
        "parts": [],
        "hint": None,
        "model": lm.label,
    }
    if asked:
        written = split_spans(output_ids, sentinels, tokenizer)
        result["spans"] = [
            {"sentinel": f"<extra_id_{n}>", "text": written.get(n, "")} for n in asked
        ]
        parts: list[tuple[str, bool]] = []
        for index, piece in enumerate(SENTINEL.split(source)):  # text, N, text, N, ..., text
            if index % 2:
                parts.append((written.get(int(piece), ""), True))
            elif piece:
                parts.append((piece, False))
        result["parts"] = parts
        result["filled"] = "".join(p for p, _ in parts)
        missing = [n for n in asked if not written.get(n)]
        if missing:
            result["hint"] = (
                f"the model wrote nothing for <extra_id_{missing[0]}>; more beams "
                "or max new tokens may help, or more training"
            )
    else:
        result["output"] = tokenizer.decode(output_ids, skip_special_tokens=True)
        result["parts"] = [(result["output"], False)]
        if str(lm.source).isdigit():
            result["hint"] = (
                "a T5 pretrained here learned span filling only: put <extra_id_0> "
                "(or [MASK]) where text is missing. Task prefixes such as "
                '"translate English to French:" need a model trained on those '
                "tasks, such as t5-small"
            )
    return result
