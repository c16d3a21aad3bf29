"""What the language methods (bert, gpt, t5) share: settings, corpus loading, text samples.

Not a method (the registry skips modules starting with "_").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine.config import TrainConfig, param
from engine.data.text import corpus_texts, encode, fits_in_rows, token_blocks, token_rows
from engine.data.tokenizers import load_or_train
from engine.errors import DatasetError
from engine.methods.base import TrainData
from engine.models.text import TEXT_SIZES

SAMPLES_FILE = "samples.jsonl"  # in the run folder: one JSON object per line, with "step"


@dataclass
class TextConfig(TrainConfig):
    backbone: str = param(
        "mini",
        "Transformer size: tiny (128 wide, 2 layers), mini (256, 4), "
        "small (512, 4), base (768, 12; the papers' size, slow on a CPU).",
        choices=sorted(TEXT_SIZES),
        main=True,
    )
    depth: int = param(0, "Transformer layers; 0 keeps the size's standard number.", min=0)
    # TrainConfig's help speaks of images; a text method's batch is sequences.
    batch_size: int = param(
        64,
        "Sequences per step, each context_length tokens: tokens per step = batch_size x "
        "context_length. Larger batches give smoother gradients; lower it first when "
        "memory runs short.",
        min=2,
        main=True,
    )
    image_size: int = param(32, "Not used by text methods.", min=8, max=512)
    knn_every: int = param(100, "Not used by text methods (no labelled classes).", min=0)
    vocab_size: int = param(
        8000,
        "Tokenizer vocabulary, trained on the corpus and saved with "
        "the run. The output layer is vocabulary x width: 8k keeps small "
        "models fast (30k made them several times slower here); a small "
        "corpus gives a smaller vocabulary.",
        min=128,
        max=65536,
    )
    context_length: int = param(
        64,
        "Tokens per training sequence: a block of the packed "
        "corpus, or (bert and t5 with packing rows) the most a row "
        "holding one document may have.",
        min=8,
        max=2048,
        main=True,
    )
    max_corpus_chars: int = param(
        0, "Cut the corpus to this many characters before tokenisation (0: all of it).", min=0
    )
    dropout: float = param(
        0.1,
        "Dropout in the transformer (0.1 in the papers; 0 learns faster "
        "on tiny data but overfits).",
        min=0.0,
        max=0.9,
    )
    sample_every: int = param(
        50, "Write a decoded example to samples.jsonl every N steps (and at the last step).", min=1
    )


def load_corpus(
    method: type,
    dataset: str,
    config: TextConfig,
    run_dir: Path | None,
    cache_dir: Path | None,
    tokenizer_kind: str,
) -> tuple[list[str], Any]:
    """The training documents and the run's tokenizer (trained now, or reused on resume)."""
    texts = corpus_texts(dataset, "train", cache_dir, config.max_corpus_chars)
    tokenizer = load_or_train(
        run_dir, tokenizer_kind, texts, config.vocab_size, config.context_length
    )
    return texts, tokenizer


def check_corpus(method: type, dataset: str, config: TextConfig, cache_dir: Path | None) -> None:
    """Refuse, before a job exists, a corpus too small for `config`: fewer than batch_size
    sequences of context_length tokens with a vocabulary of vocab_size trained on it.

    Every tokenizer here splits text at whitespace first, so a corpus holds at least as many
    tokens as words (plus one separator per document): a corpus with enough words passes at
    once; a smaller one is tokenised exactly as the job would (quick: it is small)."""
    from engine.data.text import cheap_to_read

    if not cheap_to_read(dataset, cache_dir):
        return  # pydocs before its first harvest: the job checks when it loads the corpus
    texts = corpus_texts(dataset, "train", cache_dir, config.max_corpus_chars)
    words = sum(len(t.split()) + 1 for t in texts)
    if words >= (config.batch_size + 1) * config.context_length:
        return
    if not texts:
        raise DatasetError(
            f"{dataset!r} has no training text (max_corpus_chars "
            f"{config.max_corpus_chars} keeps none of it)"
        )
    try:
        method.load_data(dataset, config, None, cache_dir)
    except DatasetError as error:
        raise DatasetError(
            f"too little text for this job: {error} (a vocabulary of "
            f"{config.vocab_size} was trained on its "
            f"{sum(len(t) for t in texts):,} characters)"
        ) from None


def blocks_data(
    blocks: torch.Tensor, tokenizer: Any, config: TextConfig, dataset: str, run_dir: Path | None
) -> TrainData:
    if len(blocks) < config.batch_size:
        raise DatasetError(
            f"{dataset!r} gives {len(blocks)} sequences of {config.context_length} "
            f"tokens, fewer than batch_size {config.batch_size}; use a smaller "
            "batch or context length, or more text"
        )
    info = {"vocab_size": len(tokenizer), "tokenizer": tokenizer}
    if run_dir is not None:
        info["samples_path"] = str(Path(run_dir) / SAMPLES_FILE)
    return TrainData({"input_ids": blocks}, info)


def packing_param() -> Any:
    """The `packing` setting of the methods that read documents either way (bert, t5)."""
    return param(
        "auto",
        "How documents become sequences: pack (concatenated and cut into "
        "blocks of context_length, the papers' way for long text), rows (one document "
        "per padded row, so a short sentence's words keep their positions and "
        "neighbours, as in a prompt), auto (rows when nine in ten documents fit in "
        "one).",
        choices=["auto", "pack", "rows"],
    )


def rows_or_pack(
    texts: list[str],
    tokenizer: Any,
    config: Any,
    dataset: str,
    run_dir: Path | None,
    separator_id: int,
    prefix_id: int | None,
) -> TrainData:
    """Sequences under `config.packing`: "rows" (one document per row, `prefix_id` tokens
    `separator_id`, padded with the tokenizer's pad), "pack" (documents joined by
    `separator_id` and cut into full blocks), or "auto" (rows when nine in ten documents fit
    in one, else pack)."""
    encoded = encode(texts, tokenizer)  # once, for the choice and for the sequences
    specials = 1 + (prefix_id is not None)
    rows = config.packing == "rows" or (
        config.packing == "auto"
        and fits_in_rows(
            texts, tokenizer, config.context_length, encoded=encoded, specials=specials
        )
    )
    if not rows:
        blocks = token_blocks(
            texts, tokenizer, config.context_length, separator_id, prefix_id, encoded=encoded
        )
        data = blocks_data(blocks, tokenizer, config, dataset, run_dir)
    else:
        table = token_rows(
            texts,
            tokenizer,
            config.context_length,
            prefix_id,
            separator_id,
            tokenizer.pad_token_id,
            encoded=encoded,
        )
        data = blocks_data(table, tokenizer, config, dataset, run_dir)
    data.info["rows"] = rows  # padded rows (a batch may still hold no padding) or full blocks
    return data


def pack(
    texts: list[str],
    tokenizer: Any,
    config: TextConfig,
    dataset: str,
    run_dir: Path | None,
    separator_id: int,
    prefix_id: int | None = None,
) -> TrainData:
    blocks = token_blocks(texts, tokenizer, config.context_length, separator_id, prefix_id)
    return blocks_data(blocks, tokenizer, config, dataset, run_dir)


def write_sample(path: str | None, record: dict[str, Any]) -> None:
    """Append one record to the run's samples.jsonl (the Train tab shows the latest)."""
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_samples(run_dir: str | Path, since_step: int = -1) -> list[dict[str, Any]]:
    """The samples a job wrote with step > since_step, oldest first (for the UI)."""
    path = Path(run_dir) / SAMPLES_FILE
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written
        if record.get("step", 0) > since_step:
            out.append(record)
    return out


class StepCounter(torch.nn.Module):
    """Optimizer steps done, saved in checkpoints so periodic work survives a resume."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))

    @property
    def next_step(self) -> int:
        return int(self.steps_done) + 1

    def set(self, step: int) -> None:
        self.steps_done.fill_(step)
