"""Tokenizers trained on a job's corpus with the `tokenizers` library, saved with the run.

One recipe per model family, each the pipeline of the original tokenizer trained from scratch:
- `wordpiece` (BERT): lowercased, BERT pre-tokenizer, WordPiece with `##` continuations,
  `[CLS] ... [SEP]` added around each text.
- `bytebpe` (GPT-2): byte-level BPE, so any UTF-8 text round-trips exactly; `<|endoftext|>`
  separates documents and is not added automatically.
- `clip` (CLIP): lowercased byte-level BPE, each text wrapped in `<|startoftext|>` and
  `<|endoftext|>` (CLIP pools the text at that last token).
- `sentencepiece` (T5): SentencePiece-style BPE over `▁`-marked words, `</s>` appended, and
  sentinel tokens `<extra_id_0>`, `<extra_id_1>`, ... for span corruption.

The result is a transformers fast tokenizer (`PreTrainedTokenizerFast`) saved with
`save_pretrained`, so `AutoTokenizer.from_pretrained(folder)` and the pipelines load it as is.
A vocabulary of 8k or less keeps small models fast: the output layer is vocabulary x hidden.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from engine.errors import DatasetError, SpecError

KINDS = ("wordpiece", "bytebpe", "clip", "sentencepiece")
NUM_SENTINELS = 100  # T5's <extra_id_0..99>
TOKENIZER_DIR = "tokenizer"  # inside a run folder


def _wordpiece(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(
        texts,
        trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, min_frequency=2),
    )
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def _byte_bpe(
    texts: Iterable[str], vocab_size: int, specials: list[str], lowercase: bool
) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    if lowercase:
        tok.normalizer = normalizers.Sequence(
            [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
        )
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            min_frequency=2,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    return tok


def _gpt(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    tok = _byte_bpe(texts, vocab_size, ["<|endoftext|>"], lowercase=False)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )


def _clip(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    start, end = "<|startoftext|>", "<|endoftext|>"
    tok = _byte_bpe(texts, vocab_size, [start, end], lowercase=True)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{start} $A {end}",
        pair=f"{start} $A {end} $B:1 {end}:1",
        special_tokens=[(start, tok.token_to_id(start)), (end, tok.token_to_id(end))],
    )
    # As in openai/clip-*: padding repeats the end token; the model pools at its first one.
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=start, eos_token=end, unk_token=end, pad_token=end
    )


def _sentencepiece(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    # SentencePiece-style BPE over `▁`-marked words (T5 uses a unigram SentencePiece model;
    # the unigram trainer collapses to characters on a corpus as small as the captions).
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Replace(Regex(r"\s+"), " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=max(vocab_size - NUM_SENTINELS, 64),
            min_frequency=2,
            special_tokens=["<pad>", "</s>", "<unk>"],
        ),
    )
    sentinels = [f"<extra_id_{i}>" for i in range(NUM_SENTINELS)]
    # lstrip: a sentinel typed between words takes the space before it, as t5-small's do;
    # without it "plain <extra_id_0> background" reads as "plain", "▁", sentinel, a token
    # sequence span corruption never produces.
    tok.add_special_tokens([AddedToken(s, special=True, lstrip=True) for s in sentinels])
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>",
        pair="$A </s> $B:1 </s>:1",
        special_tokens=[("</s>", tok.token_to_id("</s>"))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        extra_special_tokens=sentinels,
    )


_BUILDERS = {
    "wordpiece": _wordpiece,
    "bytebpe": _gpt,
    "clip": _clip,
    "sentencepiece": _sentencepiece,
}


def train_tokenizer(
    kind: str, texts: list[str], vocab_size: int = 8000, max_length: int = 512
) -> PreTrainedTokenizerFast:
    """Train a `kind` tokenizer (one of KINDS) on `texts`; deterministic for the same input."""
    if kind not in _BUILDERS:
        raise SpecError(f"unknown tokenizer kind {kind!r}; choose one of {KINDS}")
    if not any(t.strip() for t in texts):
        raise DatasetError("the corpus is empty: a tokenizer needs some text to learn from")
    tokenizer = _BUILDERS[kind](texts, vocab_size)
    tokenizer.model_max_length = max_length
    return tokenizer


def sentinel_ids(tokenizer: PreTrainedTokenizerFast) -> list[int]:
    """Ids of <extra_id_0>, <extra_id_1>, ... in order (T5 span corruption)."""
    ids = [tokenizer.convert_tokens_to_ids(f"<extra_id_{i}>") for i in range(NUM_SENTINELS)]
    if any(i is None or i == tokenizer.unk_token_id for i in ids):
        raise ValueError("this tokenizer has no <extra_id_N> sentinel tokens")
    return ids


def load_or_train(
    run_dir: Path | None, kind: str, texts: list[str], vocab_size: int, max_length: int
) -> PreTrainedTokenizerFast:
    """The run's saved tokenizer when there is one (a resumed job keeps its vocabulary), else a
    new one trained on `texts` and saved in `run_dir / "tokenizer"`."""
    folder = None if run_dir is None else Path(run_dir) / TOKENIZER_DIR
    if folder is not None and (folder / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(folder)
    tokenizer = train_tokenizer(kind, texts, vocab_size, max_length)
    if folder is not None:
        tmp = folder.with_name(f".{TOKENIZER_DIR}-tmp")
        tokenizer.save_pretrained(tmp)
        tmp.rename(folder)
    return tokenizer
