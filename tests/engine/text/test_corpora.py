"""Text corpora: captions, and the pydocs harvest (deterministic, cleaned, cached)."""

import pytest
import torch

from engine.data import pydocs, text
from engine.data.datasets import dataset_info, load_dataset
from engine.errors import DatasetError


def test_text_corpora_are_listed_as_text():
    for name in ("captions", "pydocs"):
        info = dataset_info(name)
        assert info["kind"] == "text" and info["modalities"] == ["text"] and info["available"]
    assert "image-text" in dataset_info("shapes")["modalities"]
    with pytest.raises(DatasetError, match="text corpus"):
        load_dataset("captions", "train", 16)


def test_captions_split_and_cap():
    train = text.corpus_texts("captions", "train")
    test = text.corpus_texts("captions", "test")
    assert len(train) + len(test) == 6000 and not set(test) <= set(train[:0])
    assert train[0].startswith("a ") and " on " in train[0]
    capped = text.corpus_texts("captions", "train", max_chars=500)
    assert sum(len(c) + 1 for c in capped) <= 500 and capped[:-1] == train[: len(capped) - 1]
    assert train[len(capped) - 1].startswith(capped[-1])  # the crossing document is cut


def test_pydocs_identical_across_two_builds_and_cached(tmp_path):
    first, second = pydocs.harvest_pydocs(), pydocs.harvest_pydocs()
    assert text.corpus_digest(first) == text.corpus_digest(second)
    size = sum(len(p) + 1 for p in first)
    assert 700_000 < size <= pydocs.PYDOCS_MAX_CHARS, size
    assert len(set(first)) == len(first)  # de-duplicated
    assert not any(p.startswith(">>>") or "\n" in p for p in first)
    cached = text.corpus_texts("pydocs", "train", cache_dir=tmp_path)
    assert list(tmp_path.glob("pydocs-v*.txt"))
    assert cached == [p for i, p in enumerate(first) if i % text.TEST_EVERY != text.TEST_EVERY - 1]


def test_cleaning_keeps_prose_drops_code_and_duplicates():
    docs = [
        "Return the sum of two numbers.\n\n>>> add(1, 2)\n3",
        "Return the sum of two numbers.",
        "x = f(a, b) # [1, 2] {}",
        "Too short.",
    ]
    assert pydocs.clean_docstrings(docs) == ["Return the sum of two numbers."]


def test_token_blocks_pack_and_refuse_tiny_corpus():
    from engine.data.tokenizers import train_tokenizer

    docs = text.corpus_texts("captions", "train")[:200]
    tok = train_tokenizer("bytebpe", docs, 500)
    blocks = text.token_blocks(docs, tok, 16, tok.eos_token_id)
    assert blocks.shape[1] == 16 and blocks.dtype.is_floating_point is False
    assert (blocks == tok.eos_token_id).any()
    with pytest.raises(DatasetError, match="fewer than one block"):
        text.token_blocks(["a b"], tok, 64, tok.eos_token_id)


def test_token_rows_keep_each_document_in_place_and_split_long_ones():
    from engine.data.tokenizers import train_tokenizer

    docs = text.corpus_texts("captions", "train")[:200]
    tok = train_tokenizer("wordpiece", docs, 500)
    cls, sep, pad = tok.cls_token_id, tok.sep_token_id, tok.pad_token_id
    rows = text.token_rows(docs, tok, 32, cls, sep, pad)
    assert rows.shape[0] == len(docs) and rows.shape[1] <= 32
    for doc, row in zip(docs, rows.tolist()):
        ids = tok(doc, add_special_tokens=False)["input_ids"]
        assert row[: len(ids) + 2] == [cls, *ids, sep]  # the words at their own positions
        assert set(row[len(ids) + 2 :]) <= {pad}
    assert text.fits_in_rows(docs, tok, 32) and not text.fits_in_rows(docs, tok, 6)
    # A document longer than a row goes on in the next row: every token is kept, in order.
    long_doc = " ".join(docs[:5])
    split = text.token_rows([long_doc], tok, 12, cls, sep, pad)
    body = [t for row in split.tolist() for t in row if t not in (cls, sep, pad)]
    assert body == tok(long_doc, add_special_tokens=False)["input_ids"] and len(split) > 1
    with pytest.raises(DatasetError, match="no room"):
        text.token_rows(docs, tok, 2, cls, sep, pad)


def test_bert_reads_captions_in_rows_and_long_text_in_blocks(tmp_path):
    from engine.config import build_config
    from engine.methods.bert import BERT

    def tokens(**params):
        config = build_config(BERT.Config, "quick", dict(vocab_size=500, **params))
        data = BERT.load_data("captions", config, tmp_path / str(len(list(tmp_path.iterdir()))))
        return data.tensors["input_ids"], data.info["tokenizer"]

    rows, tok = tokens(context_length=32)  # auto: nine in ten captions fit -> rows
    assert (rows[:, 0] == tok.cls_token_id).all() and (rows == tok.pad_token_id).any()
    assert ((rows == tok.sep_token_id).sum(dim=1) == 1).all()  # one caption per row
    assert len(rows) == len(text.corpus_texts("captions", "train"))
    blocks, tok = tokens(context_length=32, packing="pack")
    assert blocks.shape[1] == 32 and not (blocks == tok.pad_token_id).any()
    assert ((blocks == tok.sep_token_id).sum(dim=1) > 1).any()  # several captions per block
    forced, tok = tokens(context_length=8, packing="auto")  # captions do not fit in 8 -> pack
    assert forced.shape[1] == 8 and not (forced == tok.pad_token_id).any()


def test_t5_reads_captions_in_rows_ending_with_eos(tmp_path):
    from engine.config import build_config
    from engine.methods.t5 import T5

    config = build_config(T5.Config, "quick", dict(vocab_size=500, context_length=32))
    data = T5.load_data("captions", config, tmp_path / "rows")
    rows, tok = data.tensors["input_ids"], data.info["tokenizer"]
    assert len(rows) == len(text.corpus_texts("captions", "train")) and rows.shape[1] <= 32
    assert ((rows == tok.eos_token_id).sum(dim=1) == 1).all() and (rows == tok.pad_token_id).any()
    first = tok(text.corpus_texts("captions", "train")[0])["input_ids"]  # tokens + </s>
    assert rows[0, : len(first)].tolist() == first
    model = T5(config, data.info)
    loss, logs = model.training_step({"input_ids": rows[:8]})  # padded rows: span_corrupt_rows
    assert torch.isfinite(loss) and 0 <= float(logs["target_token_acc"]) <= 1
    packed = build_config(
        T5.Config, "quick", dict(vocab_size=500, context_length=32, packing="pack")
    )
    blocks = T5.load_data("captions", packed, tmp_path / "pack").tensors["input_ids"]
    assert blocks.shape[1] == 32 and not (blocks == tok.pad_token_id).any()
