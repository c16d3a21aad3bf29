"""GPT: next-token prediction.

Radford, Narasimhan, Salimans, Sutskever 2018, "Improving Language Understanding by Generative
Pre-Training", and Radford et al. 2019 (GPT-2). A causal transformer predicts every token from
the ones before it. The model is transformers' `GPT2LMHeadModel` with a byte-level BPE
tokenizer trained on the corpus, so `pipeline("text-generation", model=<checkpoint>/pretrained)`
loads a run as it is. Every `sample_every` steps a short generated text goes to the run's
samples.jsonl, which the Train tab shows under the curves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from transformers import GPT2Config, GPT2LMHeadModel

from engine.config import adam_beta2_param, param
from engine.losses.next_token import next_token_loss
from engine.methods._text import StepCounter, TextConfig, load_corpus, pack, write_sample
from engine.methods.base import TINY_PRESET, MethodCard, SSLMethod, TrainData
from engine.models.text import text_dims
from engine.registry import register_method


@dataclass
class GPTConfig(TextConfig):
    sample_tokens: int = param(32, "Length of the generated sample, in tokens.", min=1, max=512)
    sample_temperature: float = param(
        0.8,
        "Sampling temperature of the generated sample (lower is more conservative).",
        min=0.0,
        exclusive_min=True,
    )

    # GPT-3 (the paper presets follow its table 2.1), appendix B: Adam beta2 0.95.
    adam_beta2: float = adam_beta2_param(0.95)

    PRESETS = {
        # fp32: bf16 autocast was 0.61x the speed of fp32 here (bench/train_step.py).
        "quick": dict(
            grad_clip=1.0,  # as bench/RESULTS.md measured the quick runs
            backbone="tiny",
            steps=200,
            batch_size=32,
            lr=1e-3,
            warmup_steps=20,
            weight_decay=0.1,
            dropout=0.0,
            checkpoint_every=100,
            precision="fp32",
        ),
        # GPT-2 small (Radford et al. 2019; details from GPT-3's table 2.1): 12 layers, 768
        # wide, 1024 tokens, batch 512, Adam lr 6e-4, weight decay 0.1, 50k BPE vocabulary.
        "paper": dict(
            backbone="base",
            context_length=1024,
            batch_size=512,
            lr=6e-4,
            warmup_steps=2000,
            weight_decay=0.1,
            steps=600_000,
            vocab_size=50_257,
            grad_clip=1.0,  # GPT-3 appendix B: the global gradient norm clipped at 1.0
            checkpoint_every=10_000,
        ),
        # Seconds on a CPU (the registry walk trains it): a smoke test, not a recipe.
        "tiny": dict(
            TINY_PRESET, backbone="tiny", depth=1, lr=1e-3, dropout=0.0, context_length=32
        ),
    }


@register_method("gpt")
class GPT(SSLMethod):
    description = "Causal language model: predict the next token (Radford et al. 2018/2019)"
    paper = "Radford et al. 2019, Language Models are Unsupervised Multitask Learners"
    modality = "text"
    default_dataset = "captions"
    Config = GPTConfig
    card = MethodCard(
        title="GPT",
        authors="Radford, Wu, Child, Luan, Amodei, Sutskever",
        year=2019,
        paper="OpenAI technical report (GPT-2); GPT: Radford et al. 2018",
        idea="Read text left to right and predict each next token. Every position is a "
        "training example, and the same model then writes text by sampling its own "
        "predictions.",
        good_at="Generation and anything phrased as continuing a text; the loss is an honest "
        "measure of how well the corpus is modelled (perplexity).",
        hyperparameters="Context length (longer sees more, costs quadratically in attention); "
        "model size against corpus size (small data overfits); vocabulary; "
        "learning rate and weight decay.",
    )

    @classmethod
    def load_data(
        cls,
        dataset: str,
        config: GPTConfig,
        run_dir: Path | None = None,
        cache_dir: Path | None = None,
    ) -> TrainData:
        texts, tokenizer = load_corpus(cls, dataset, config, run_dir, cache_dir, "bytebpe")
        return pack(texts, tokenizer, config, dataset, run_dir, tokenizer.eos_token_id)

    def __init__(self, config: GPTConfig, data_info: dict | None = None) -> None:
        super().__init__(config, data_info)
        self.tokenizer = self.data_info.get("tokenizer")
        eos = self.tokenizer.eos_token_id if self.tokenizer is not None else 0
        hidden, layers, heads = text_dims(config.backbone, config.depth)
        self.model = GPT2LMHeadModel(
            GPT2Config(
                vocab_size=self.data_info["vocab_size"],
                n_positions=config.context_length,
                n_embd=hidden,
                n_layer=layers,
                n_head=heads,
                resid_pdrop=config.dropout,
                embd_pdrop=config.dropout,
                attn_pdrop=config.dropout,
                bos_token_id=eos,
                eos_token_id=eos,
                pad_token_id=eos,
            )
        )
        self.counter = StepCounter()

    def training_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        input_ids = batch["input_ids"]  # (B, T)
        logits = self.model(input_ids=input_ids).logits  # (B, T, V)
        loss = next_token_loss(logits, input_ids)
        step = self.counter.next_step
        if step % self.config.sample_every == 0 or step == self.config.steps:
            write_sample(
                self.data_info.get("samples_path"), {"step": step, "text": self.sample(seed=step)}
            )
        return loss, {"perplexity": loss.detach().exp()}

    @torch.no_grad()
    def sample(self, prompt: str = "", seed: int = 0) -> str:
        """A short generated text (the training RNG is left untouched)."""
        if self.tokenizer is None:
            return ""
        was_training = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device
        ids = [self.tokenizer.eos_token_id] + self.tokenizer(prompt)["input_ids"]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            prompt_ids = torch.tensor([ids], device=device)  # (1, P)
            out = self.model.generate(
                prompt_ids,
                attention_mask=torch.ones_like(prompt_ids),
                do_sample=True,
                top_k=50,
                temperature=self.config.sample_temperature,
                max_new_tokens=min(
                    self.config.sample_tokens, self.config.context_length - len(ids)
                ),
                pad_token_id=self.tokenizer.eos_token_id,
            )
        self.model.train(was_training)
        return self.tokenizer.decode(out[0, 1:], skip_special_tokens=False)

    def after_step(self, step: int, total_steps: int) -> None:
        self.counter.set(step)

    @torch.no_grad()
    def embed(self, input_ids: Tensor) -> Tensor:
        """(B, T) token ids -> (B, hidden) mean of the last layer's states."""
        return self.model.transformer(input_ids=input_ids).last_hidden_state.mean(dim=1).float()

    def export(self, out_dir: Path) -> None:
        self.model.save_pretrained(out_dir / "pretrained")
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(out_dir / "pretrained")
