"""Tokenizers trained on the corpus: round trip, special tokens, save and reload."""

import pytest
from transformers import AutoTokenizer

from engine.data import text
from engine.data.tokenizers import load_or_train, sentinel_ids, train_tokenizer

CAPTIONS = None


def captions():
    global CAPTIONS
    CAPTIONS = CAPTIONS or text.corpus_texts("captions", "train")[:2000]
    return CAPTIONS


@pytest.mark.parametrize("kind", ["wordpiece", "bytebpe", "clip", "sentencepiece"])
def test_round_trip_on_the_corpus(kind, tmp_path):
    tok = train_tokenizer(kind, captions(), 8000)
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    for caption in captions()[:200]:
        ids = again(caption, add_special_tokens=False)["input_ids"]
        assert again.decode(ids) == caption  # lowercase captions: every kind is lossless
        assert again.unk_token_id not in ids or kind in ("bytebpe", "clip")
    assert len(again) < 1000  # the captions' language is small


def test_byte_level_round_trips_any_text():
    tok = train_tokenizer("bytebpe", captions(), 1000)
    weird = "Ünïcode — tabs\tand   spaces, émojis 🙂 and CamelCase()"
    assert tok.decode(tok(weird)["input_ids"]) == weird


def test_pydocs_round_trip_bytebpe(tmp_path):
    docs = text.corpus_texts("pydocs", "train", cache_dir=tmp_path)[:1500]
    tok = train_tokenizer("bytebpe", docs, 4000)
    assert len(tok) == 4000
    for doc in docs[:100]:
        assert tok.decode(tok(doc)["input_ids"]) == doc


def test_specials_of_each_kind():
    bert = train_tokenizer("wordpiece", captions(), 8000)
    ids = bert("a red star")["input_ids"]
    assert ids[0] == bert.cls_token_id and ids[-1] == bert.sep_token_id
    clip = train_tokenizer("clip", captions(), 8000)
    ids = clip("a red star")["input_ids"]
    assert ids[0] == clip.bos_token_id and ids[-1] == clip.eos_token_id
    t5 = train_tokenizer("sentencepiece", captions(), 8000)
    assert t5("a red star")["input_ids"][-1] == t5.eos_token_id
    sentinels = sentinel_ids(t5)
    assert len(set(sentinels)) == 100
    assert t5.decode([sentinels[0]]) == "<extra_id_0>"


def test_typed_sentinel_reads_as_span_corruption_writes_it(tmp_path):
    """ "a red <extra_id_0> on" is the tokens of "a red", the sentinel, "on": no stray "▁"."""
    t5 = train_tokenizer("sentencepiece", captions(), 8000)
    t5.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    for tok in (t5, again):
        plain = tok("a red on", add_special_tokens=False)["input_ids"]
        typed = tok("a red <extra_id_0> on", add_special_tokens=False)["input_ids"]
        assert typed == plain[:2] + [sentinel_ids(tok)[0]] + plain[2:]


def test_saved_tokenizer_is_reused(tmp_path):
    first = load_or_train(tmp_path, "wordpiece", captions(), 8000, 64)
    second = load_or_train(tmp_path, "wordpiece", ["completely different text"] * 10, 8000, 64)
    assert first.get_vocab() == second.get_vocab()
