"""The generation lens: a causal language model continues a prompt.

Radford et al. 2019 (GPT-2): text is sampled one token at a time from the model's next-token
distribution, sharpened or flattened by a temperature and cut to the `top_k` most probable
tokens (temperature 0: always the most probable, greedy). A seed makes a sample repeatable.
Like the GPT method's own samples, the prompt follows the model's begin-of-text token, which
is how every training text started.

    lm = load_lens_model("11", GENERATE, home)
    out = generate(lm, "a small red", max_new_tokens=20, temperature=0.8, top_k=50, seed=0)
    out["continuation"]   # the new text only; out["text"] is prompt + continuation
"""

from __future__ import annotations

import threading
import time
from typing import Any

from engine import checks
from engine.inference.models import Lens, LensError, LensModel

GENERATE = Lens(
    "generate",
    "generation",
    model_types=("gpt2",),
    wants="a causal language model: a GPT run, or a Hub id such as gpt2",
    suggestions=("gpt2",),
)
MAX_NEW_TOKENS = 512
MAX_TOP_K = 1000
# Sampling draws from torch's global generator: one seeded sample at a time in the process.
_SAMPLING = threading.Lock()


def check_settings(
    max_new_tokens: Any, temperature: Any, top_k: Any, seed: Any
) -> tuple[int, float, int, int]:
    max_new_tokens = checks.whole_number(max_new_tokens, "max new tokens", error=LensError)
    temperature = checks.number(temperature, "temperature", error=LensError)
    top_k = checks.whole_number(top_k, "top-k", error=LensError)
    seed = checks.whole_number(seed, "seed", 0, checks.MAX_SEED, LensError)
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise LensError(f"max new tokens must be from 1 to {MAX_NEW_TOKENS}, got {max_new_tokens}")
    if not 0.0 <= temperature <= 10.0:
        raise LensError(f"temperature must be from 0 (greedy) to 10, got {temperature}")
    if not 0 <= top_k <= MAX_TOP_K:
        raise LensError(f"top-k must be from 0 (no limit) to {MAX_TOP_K}, got {top_k}")
    return max_new_tokens, temperature, top_k, seed


def generate(
    lm: LensModel,
    prompt: str,
    max_new_tokens: int = 40,
    temperature: float = 0.8,
    top_k: int = 50,
    seed: int = 0,
) -> dict[str, Any]:
    """Continue `prompt` (may be empty) by up to `max_new_tokens` tokens.

    Returns {"prompt", "continuation" (the new text), "text" (prompt + continuation),
    "new_tokens", "stopped" ("end of text", "max new tokens" or "context full"),
    "greedy", "seconds", "model"}. The same seed and settings give the same text.
    """
    import torch

    max_new_tokens, temperature, top_k, seed = check_settings(
        max_new_tokens, temperature, top_k, seed
    )
    tokenizer = lm.processor
    if tokenizer is None:
        raise LensError(f"{lm.label} has no tokenizer saved with it")
    config = lm.model.config
    prompt = str(prompt or "")
    start = config.bos_token_id if config.bos_token_id is not None else tokenizer.bos_token_id
    with lm.lock:  # a fast tokenizer's truncation state is shared by the requests
        ids = ([start] if start is not None else []) + tokenizer(prompt)["input_ids"]
    if not ids:
        raise LensError("type a prompt: the model needs at least one token to continue")
    context = int(getattr(config, "n_positions", 1024))
    room = context - len(ids)
    if room < 1:
        raise LensError(
            f"the prompt is {len(ids)} tokens and {lm.label} reads at most {context}; shorten it"
        )
    budget = min(max_new_tokens, room)
    eos = config.eos_token_id if config.eos_token_id is not None else tokenizer.eos_token_id
    sampling = (
        dict(do_sample=True, temperature=temperature, top_k=top_k, top_p=1.0)
        if temperature > 0
        else dict(do_sample=False)
    )
    prompt_ids = torch.tensor([ids])  # (1, P)
    tick = time.perf_counter()
    with _SAMPLING, lm.lock, torch.random.fork_rng(devices=[]), torch.inference_mode():
        torch.manual_seed(seed)
        out = lm.model.generate(
            prompt_ids,
            attention_mask=torch.ones_like(prompt_ids),
            max_new_tokens=budget,
            pad_token_id=eos,
            eos_token_id=eos,
            **sampling,
        )
    new_ids = out[0, len(ids) :].tolist()
    ended = eos is not None and bool(new_ids) and new_ids[-1] == eos
    continuation = tokenizer.decode(new_ids, skip_special_tokens=True)
    if ended:
        stopped = "end of text"
    elif budget < max_new_tokens and len(new_ids) == budget:
        stopped = "context full"
    else:
        stopped = "max new tokens"
    return {
        "prompt": prompt,
        "continuation": continuation,
        "text": prompt + continuation,
        "new_tokens": len(new_ids),
        "stopped": stopped,
        "greedy": temperature == 0,
        "seconds": round(time.perf_counter() - tick, 3),
        "model": lm.label,
    }
