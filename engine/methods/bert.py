"""BERT: masked language modelling.

Devlin, Chang, Lee, Toutanova 2019, "BERT: Pre-training of Deep Bidirectional Transformers for
Language Understanding" (arXiv:1810.04805). 15% of the tokens are chosen and corrupted
(80% [MASK], 10% random, 10% kept) and a bidirectional transformer predicts the originals.
The model is transformers' `BertForMaskedLM` with a WordPiece tokenizer trained on the corpus,
so `pipeline("fill-mask", model=<checkpoint>/pretrained)` loads a run as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import BertConfig, BertForMaskedLM

from engine.config import adam_beta2_param, param
from engine.losses.mlm import IGNORE, mask_tokens
from engine.methods._text import StepCounter, TextConfig, load_corpus, packing_param, rows_or_pack
from engine.methods.base import TINY_PRESET, MethodCard, SSLMethod, TrainData
from engine.models.text import text_dims
from engine.registry import register_method


@dataclass
class BERTConfig(TextConfig):
    mask_prob: float = param(
        0.15,
        "Share of tokens chosen for prediction (the paper's 15%); of "
        "them 80% become [MASK], 10% a random token, 10% stay.",
        min=0.01,
        max=0.9,
        main=True,
    )
    whole_word_masking: bool = param(
        False,
        "Choose whole words: all pieces of a word are "
        "masked together (harder, better for WordPiece).",
    )
    packing: str = packing_param()

    # BERT, appendix A.2: Adam beta1 = 0.9, beta2 = 0.999.
    adam_beta2: float = adam_beta2_param(0.999)

    PRESETS = {
        # fp32: bf16 autocast was only 1.27x faster here at this size (bench/train_step.py,
        # noisy on a shared CPU), and a 30k vocabulary got slower in bf16.
        "quick": dict(
            grad_clip=1.0,  # as bench/RESULTS.md measured the quick runs
            backbone="tiny",
            steps=200,
            batch_size=32,
            lr=1e-3,
            warmup_steps=20,
            weight_decay=0.01,
            dropout=0.0,
            checkpoint_every=100,
            precision="fp32",
        ),
        # Paper, appendix A.2: BERT-base, 256 sequences of 512 tokens (128 for 90% of the
        # steps), Adam lr 1e-4, 10k warmup, weight decay 0.01, 1M steps, 30k WordPiece vocab.
        "paper": dict(
            packing="pack",
            backbone="base",
            context_length=128,
            batch_size=256,
            lr=1e-4,
            warmup_steps=10_000,
            weight_decay=0.01,
            steps=1_000_000,
            vocab_size=30_000,
            grad_clip=1.0,  # google-research/bert optimization.py: clip_by_global_norm 1.0
            checkpoint_every=10_000,
        ),
        # Seconds on a CPU (the registry walk trains it): a smoke test, not a recipe.
        "tiny": dict(
            TINY_PRESET, backbone="tiny", depth=1, lr=1e-3, dropout=0.0, context_length=32
        ),
    }


@register_method("bert")
class BERT(SSLMethod):
    description = "Masked language model: predict 15% corrupted tokens (Devlin et al. 2019)"
    paper = "arXiv:1810.04805"
    modality = "text"
    default_dataset = "captions"
    Config = BERTConfig
    card = MethodCard(
        title="BERT",
        authors="Devlin, Chang, Lee, Toutanova",
        year=2019,
        paper="arXiv:1810.04805",
        idea="Hide some words of a sentence and guess them from the words on both sides. "
        "Reading in both directions at once gives each token a representation of its "
        "whole context.",
        good_at="Understanding tasks (classification, tagging, retrieval) after fine-tuning; "
        "fill-in-the-blank probing of what it learned. It does not generate text.",
        hyperparameters="Mask rate (15%: more is harder and slower to learn); whole-word "
        "masking; vocabulary size (cost of the output layer); context length; "
        "learning rate with warmup.",
    )

    @classmethod
    def load_data(
        cls,
        dataset: str,
        config: BERTConfig,
        run_dir: Path | None = None,
        cache_dir: Path | None = None,
    ) -> TrainData:
        texts, tokenizer = load_corpus(cls, dataset, config, run_dir, cache_dir, "wordpiece")
        return rows_or_pack(
            texts,
            tokenizer,
            config,
            dataset,
            run_dir,
            tokenizer.sep_token_id,
            tokenizer.cls_token_id,
        )

    def __init__(self, config: BERTConfig, data_info: dict | None = None) -> None:
        super().__init__(config, data_info)
        self.tokenizer = self.data_info.get("tokenizer")
        hidden, layers, heads = text_dims(config.backbone, config.depth)
        tokenizer = self.tokenizer
        self.model = BertForMaskedLM(
            BertConfig(
                vocab_size=self.data_info["vocab_size"],
                hidden_size=hidden,
                num_hidden_layers=layers,
                num_attention_heads=heads,
                intermediate_size=4 * hidden,
                max_position_embeddings=config.context_length,
                hidden_dropout_prob=config.dropout,
                attention_probs_dropout_prob=config.dropout,
                pad_token_id=tokenizer.pad_token_id if tokenizer is not None else 0,
            )
        )
        vocab = self.data_info["vocab_size"]
        special = torch.zeros(vocab, dtype=torch.bool)
        continuation = torch.zeros(vocab, dtype=torch.bool)
        if tokenizer is not None:
            special[tokenizer.all_special_ids] = True
            for token, index in tokenizer.get_vocab().items():
                continuation[index] = token.startswith("##")
        self.register_buffer("is_special", special, persistent=False)
        self.register_buffer("is_continuation", continuation, persistent=False)
        # Random replacements come from the ordinary tokens, which follow the specials.
        self.first_ordinary = int(special.nonzero().max()) + 1 if special.any() else 0
        self.mask_token_id = tokenizer.mask_token_id if tokenizer is not None else 0
        self.pad_token_id = tokenizer.pad_token_id if tokenizer is not None else 0
        self.counter = StepCounter()

    def training_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        input_ids = batch["input_ids"]  # (B, T) int64, [CLS] first
        special = self.is_special[input_ids]
        word_starts = ~self.is_continuation[input_ids] if self.config.whole_word_masking else None
        corrupted, labels = mask_tokens(
            input_ids,
            special,
            self.mask_token_id,
            (self.first_ordinary, self.data_info["vocab_size"]),
            self.config.mask_prob,
            word_starts,
        )
        attention = (input_ids != self.pad_token_id).long()  # rows are padded; blocks are not
        logits = self.model(input_ids=corrupted, attention_mask=attention).logits  # (B, T, V)
        chosen = labels != IGNORE
        loss = F.cross_entropy(logits[chosen].float(), labels[chosen])
        with torch.no_grad():
            accuracy = (logits[chosen].argmax(-1) == labels[chosen]).float().mean()
        return loss, {"masked_acc": accuracy, "perplexity": loss.detach().exp()}

    def after_step(self, step: int, total_steps: int) -> None:
        self.counter.set(step)

    @torch.no_grad()
    def embed(self, input_ids: Tensor) -> Tensor:
        """(B, T) token ids -> (B, hidden) mean of the last layer's states."""
        real = (input_ids != self.pad_token_id).long()
        hidden = self.model.bert(input_ids=input_ids, attention_mask=real).last_hidden_state
        weights = real[..., None].to(hidden.dtype)  # the mean over real tokens, not padding
        return ((hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)).float()

    def export(self, out_dir: Path) -> None:
        self.model.save_pretrained(out_dir / "pretrained")
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(out_dir / "pretrained")
