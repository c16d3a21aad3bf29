"""Text corpora, read from the catalog, and their tokenisation into fixed-length blocks of ids.

The corpora are `kind="text"` entries of `engine.data.catalog`: the builtins
- `captions`: the captions of the builtin `shapes` dataset ("a small red star on a plain
  blue background, top left"): a tiny, regular language where a model learns fast;
- `pydocs`: real English prose, the docstrings of the Python standard library installed here
  (`engine.data.pydocs`, harvested and cached on first use);
and the user's (`engine.data.user_text`). Text methods read them with `corpus_texts` and
tokenise them with `token_blocks` or `token_rows`.
"""

from __future__ import annotations

import hashlib
import os

import torch

from engine.data import pydocs
from engine.data.catalog import SPLITS, get_source, sources
from engine.errors import DatasetError

TEST_EVERY = 20  # every 20th document of a corpus is its test split


def is_test_index(index: int) -> bool:
    """Every TEST_EVERY-th document of a corpus is in its test split."""
    return index % TEST_EVERY == TEST_EVERY - 1


def cut_to_chars(documents: list[str], max_chars: int) -> list[str]:
    """The leading documents that fit in `max_chars` characters (one separator counted per
    document); the document that crosses the limit is cut at its last space before it, so a
    corpus of one long document is cut, not emptied. `max_chars` <= 0 keeps everything."""
    if max_chars <= 0:
        return documents
    kept, size = [], 0
    for doc in documents:
        if size + len(doc) + 1 > max_chars:
            room = max_chars - size - 1
            piece = doc[: room + 1] if room > 0 else ""
            head = (piece.rsplit(" ", 1)[0] if " " in piece else piece)[:room].strip()
            if head:
                kept.append(head)
            break
        kept.append(doc)
        size += len(doc) + 1
    return kept


def corpus_texts(
    name: str, split: str = "train", cache_dir: str | os.PathLike | None = None, max_chars: int = 0
) -> list[str]:
    """The documents of one split (every TEST_EVERY-th document is test). `max_chars` > 0 cuts
    the split to that many characters (see `cut_to_chars`) before any tokenisation."""
    source = get_source(name)
    if source.kind != "text":
        corpora = ", ".join(s.name for s in sources("text"))
        raise DatasetError(f"{name!r} holds images, not text; text corpora: {corpora}")
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; use train or test")
    reason = source.unavailable()
    if reason:
        raise DatasetError(f"text dataset {name!r} is not available: {reason}")
    folder = None if cache_dir is None else os.path.abspath(os.fspath(cache_dir))
    docs = source.documents(folder)
    chosen = [d for i, d in enumerate(docs) if is_test_index(i) == (split == "test")]
    return cut_to_chars(chosen, max_chars)


def cheap_to_read(name: str, cache_dir: str | os.PathLike | None) -> bool:
    """Whether reading the corpus now is quick (pydocs is harvested on first use: not quick)."""
    if name == "pydocs":
        return pydocs.is_cached(cache_dir)
    return any(s.name == name for s in sources("text"))


def corpus_digest(texts: list[str]) -> str:
    return hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()


def token_blocks(
    texts: list[str],
    tokenizer,
    block_size: int,
    separator_id: int,
    prefix_id: int | None = None,
    encoded: list[list[int]] | None = None,
) -> torch.Tensor:
    """Pack documents into rows of `block_size` token ids: each document's tokens followed by
    `separator_id`, concatenated, cut into blocks (the remainder is dropped); with `prefix_id`,
    each block starts with it (BERT's [CLS]). (N, block_size) int64. `encoded`: the texts'
    token ids when the caller has them already (see `encode`)."""
    encoded = encode(texts, tokenizer) if encoded is None else encoded
    stream = [token for ids in encoded for token in (*ids, separator_id)]
    body = block_size - (prefix_id is not None)
    count = len(stream) // body
    if count == 0:
        raise DatasetError(
            f"the corpus has {len(stream)} tokens, fewer than one block of "
            f"{block_size}; use a shorter context length or more text"
        )
    blocks = torch.tensor(stream[: count * body], dtype=torch.long).view(count, body)
    if prefix_id is not None:
        blocks = torch.cat([torch.full((count, 1), prefix_id, dtype=torch.long), blocks], 1)
    return blocks


def encode(texts: list[str], tokenizer) -> list[list[int]]:
    """Each text's token ids, without special tokens."""
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def token_rows(
    texts: list[str],
    tokenizer,
    row_size: int,
    cls_id: int | None,
    sep_id: int,
    pad_id: int,
    encoded: list[list[int]] | None = None,
) -> torch.Tensor:
    """One document per row, BERT's way for single sentences: [CLS] tokens [SEP] (T5's: tokens
    </s>, with `cls_id` None), padded with `pad_id` to the longest row (at most `row_size`); a
    document too long for a row continues in the next rows, so nothing is dropped.
    (N, width) int64, width <= row_size."""
    prefix = [] if cls_id is None else [cls_id]
    body = row_size - 1 - len(prefix)
    if body < 1:
        raise DatasetError(
            f"a context length of {row_size} leaves no room for text in a row; use at least 3"
        )
    encoded = encode(texts, tokenizer) if encoded is None else encoded
    rows = [
        [*prefix, *ids[start : start + body], sep_id]
        for ids in encoded
        if ids
        for start in range(0, len(ids), body)
    ]
    if not rows:
        raise DatasetError("the corpus has no tokens; add text")
    width = max(len(row) for row in rows)
    out = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def fits_in_rows(
    texts: list[str],
    tokenizer,
    row_size: int,
    share: float = 0.9,
    encoded: list[list[int]] | None = None,
    specials: int = 2,
) -> bool:
    """Whether at least `share` of the documents fit in one row of `row_size` with `specials`
    extra tokens ([CLS] and [SEP]; T5's </s> alone is 1) (short documents such as captions):
    then rows waste little on padding."""
    encoded = encode(texts, tokenizer) if encoded is None else encoded
    lengths = [len(ids) for ids in encoded]
    room = row_size - specials
    return bool(lengths) and sum(n <= room for n in lengths) >= share * len(lengths)
