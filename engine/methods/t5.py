"""T5: span corruption.

Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
Transformer" (arXiv:1910.10683). About 15% of the tokens, in spans of mean length 3, are each
replaced by a sentinel; an encoder-decoder reads the corrupted text and writes the missing spans
after their sentinels. The model is transformers' `T5ForConditionalGeneration` with a
SentencePiece-style tokenizer (sentinels <extra_id_N>) trained on the corpus; a run's
`pretrained/` folder loads with `T5ForConditionalGeneration.from_pretrained` and
`AutoTokenizer.from_pretrained` and fills sentinels with `generate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import T5Config, T5ForConditionalGeneration

from engine.config import param
from engine.data.tokenizers import sentinel_ids
from engine.errors import SpecError
from engine.losses.span_corruption import span_corrupt, span_corrupt_rows, span_counts
from engine.methods._text import (
    StepCounter,
    TextConfig,
    load_corpus,
    packing_param,
    rows_or_pack,
    write_sample,
)
from engine.methods.base import TINY_PRESET, MethodCard, SSLMethod, TrainData
from engine.models.text import text_dims
from engine.registry import register_method


@dataclass
class T5SpanConfig(TextConfig):
    noise_density: float = param(
        0.15, "Share of tokens hidden in spans (the paper's 15%).", min=0.01, max=0.5, main=True
    )
    mean_span_length: float = param(
        3.0,
        "Mean length of a hidden span, in tokens (3 in the "
        "paper; 1 is BERT-like single-token masking).",
        min=1.0,
        max=20.0,
    )
    packing: str = packing_param()

    PRESETS = {
        # fp32, as for bert and gpt (bf16 autocast gave no reliable gain at this size here).
        # On captions, 600 steps of batch 32 filled a hidden shape or colour word with a word of
        # the right kind 40 times in 80, batch 64 64 times (bench/RESULTS-text.md).
        "quick": dict(
            grad_clip=1.0,  # as bench/RESULTS.md measured the quick runs
            backbone="tiny",
            steps=800,
            batch_size=64,
            lr=1e-3,
            warmup_steps=40,
            weight_decay=0.01,
            dropout=0.0,
            checkpoint_every=100,
            precision="fp32",
        ),
        # Paper, section 3.1: T5-base, 512 input tokens, batch 128, 2^19 steps on C4, a 32k
        # SentencePiece vocabulary; AdaFactor with inverse-sqrt lr 0.01 (AdamW stands in).
        "paper": dict(
            packing="pack",
            backbone="base",
            context_length=512,
            batch_size=128,
            lr=1e-3,
            warmup_steps=10_000,
            weight_decay=0.0,
            steps=524_288,
            vocab_size=32_000,
            checkpoint_every=10_000,
        ),
        # Seconds on a CPU (the registry walk trains it): a smoke test, not a recipe.
        "tiny": dict(
            TINY_PRESET, backbone="tiny", depth=1, lr=1e-3, dropout=0.0, context_length=32
        ),
    }


@register_method("t5")
class T5(SSLMethod):
    description = "Span corruption: fill 15% of tokens hidden in spans (Raffel et al. 2020)"
    paper = "arXiv:1910.10683"
    modality = "text"
    default_dataset = "captions"
    Config = T5SpanConfig
    card = MethodCard(
        title="T5",
        authors="Raffel, Shazeer, Roberts, Lee, Narang, Matena, Zhou, Li, Liu",
        year=2020,
        paper="arXiv:1910.10683",
        idea="Cut a few short spans out of a text, leave a numbered placeholder for each, and "
        "have an encoder-decoder write the missing pieces. Inputs and targets are both "
        "text, so every later task can be phrased the same way.",
        good_at="A pretrained encoder-decoder for text-to-text tasks (translation, "
        "summarisation, question answering); the targets are short, so pretraining is "
        "cheaper per token than BERT's.",
        hyperparameters="Corruption rate (15%) and mean span length (3); input length; "
        "model size; vocabulary (needs the sentinel tokens).",
    )

    @classmethod
    def check_config(cls, config: T5SpanConfig) -> None:
        noise, spans = span_counts(
            config.context_length, config.noise_density, config.mean_span_length
        )
        if spans >= config.context_length - noise:
            raise SpecError(
                "context_length is too short for this noise_density and "
                "mean_span_length; raise context_length"
            )

    @classmethod
    def load_data(
        cls,
        dataset: str,
        config: T5SpanConfig,
        run_dir: Path | None = None,
        cache_dir: Path | None = None,
    ) -> TrainData:
        texts, tokenizer = load_corpus(cls, dataset, config, run_dir, cache_dir, "sentencepiece")
        return rows_or_pack(
            texts, tokenizer, config, dataset, run_dir, tokenizer.eos_token_id, None
        )

    def __init__(self, config: T5SpanConfig, data_info: dict | None = None) -> None:
        super().__init__(config, data_info)
        self.tokenizer = self.data_info.get("tokenizer")
        tokenizer = self.tokenizer
        hidden, layers, heads = text_dims(config.backbone, config.depth)
        self.pad_id = tokenizer.pad_token_id if tokenizer is not None else 0
        self.eos_id = tokenizer.eos_token_id if tokenizer is not None else 1
        self.sentinels = sentinel_ids(tokenizer) if tokenizer is not None else [2] * 100
        self.model = T5ForConditionalGeneration(
            T5Config(
                vocab_size=self.data_info["vocab_size"],
                d_model=hidden,
                d_kv=hidden // heads,
                d_ff=4 * hidden,
                num_layers=layers,
                num_decoder_layers=layers,
                num_heads=heads,
                dropout_rate=config.dropout,
                feed_forward_proj="relu",
                pad_token_id=self.pad_id,
                eos_token_id=self.eos_id,
                decoder_start_token_id=self.pad_id,
                tie_word_embeddings=True,
            )
        )
        self.counter = StepCounter()

    def training_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        tokens = batch["input_ids"]
        generator = torch.Generator().manual_seed(int(torch.randint(1 << 30, ())))
        options = (
            self.sentinels,
            self.eos_id,
            self.config.noise_density,
            self.config.mean_span_length,
            generator,
        )
        if self.data_info.get("rows"):  # one padded document per row
            inputs, mask, targets = span_corrupt_rows(tokens, self.pad_id, *options)
        else:  # packed blocks
            (inputs, targets), mask = span_corrupt(tokens, *options), None
        # inputs (B, L_in), targets (B, L_out) with -100 after a row's end; the model shifts
        # targets right internally (-100 read as pad).
        logits = self.model(input_ids=inputs, attention_mask=mask, labels=targets).logits
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=-100
        )
        with torch.no_grad():
            real = targets != -100
            accuracy = (logits.argmax(-1) == targets)[real].float().mean()
        step = self.counter.next_step
        if step % self.config.sample_every == 0 or step == self.config.steps:
            first = inputs[0] if mask is None else inputs[0][mask[0].bool()]
            example = self.example(first[None], targets[0][targets[0] != -100][None])
            write_sample(self.data_info.get("samples_path"), {"step": step, **example})
        return loss, {"target_token_acc": accuracy}

    @torch.no_grad()
    def example(self, inputs: Tensor, targets: Tensor) -> dict[str, str]:
        """One corrupted input, its true target and the model's greedy fill, decoded."""
        if self.tokenizer is None:
            return {}
        was_training = self.model.training
        self.model.eval()
        predicted = self.model.generate(
            input_ids=inputs,
            attention_mask=torch.ones_like(inputs),
            max_new_tokens=targets.shape[1],
            do_sample=False,
        )
        self.model.train(was_training)
        decode = self.tokenizer.decode
        return {
            "input": decode(inputs[0]),
            "target": decode(targets[0]),
            "prediction": decode(predicted[0], skip_special_tokens=False),
        }

    def after_step(self, step: int, total_steps: int) -> None:
        self.counter.set(step)

    @torch.no_grad()
    def embed(self, input_ids: Tensor) -> Tensor:
        """(B, T) token ids -> (B, hidden) mean of the encoder's last layer."""
        return self.model.encoder(input_ids=input_ids).last_hidden_state.mean(dim=1).float()

    def export(self, out_dir: Path) -> None:
        self.model.save_pretrained(out_dir / "pretrained")
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(out_dir / "pretrained")
