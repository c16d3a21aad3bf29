"""BERT's masked-language-model corruption.

Devlin, Chang, Lee, Toutanova 2019, "BERT: Pre-training of Deep Bidirectional Transformers for
Language Understanding" (arXiv:1810.04805), section 3.1: 15% of the tokens are chosen; of
those 80% become [MASK], 10% a random token and 10% stay as they are. The loss is taken on the
chosen tokens only. With whole-word masking (the later BERT release) a word's pieces are chosen
together.
"""

from __future__ import annotations

import torch
from torch import Tensor

IGNORE = -100  # label of tokens that carry no loss (cross_entropy's ignore_index)


def mask_tokens(
    input_ids: Tensor,
    special_mask: Tensor,
    mask_token_id: int,
    random_token_range: tuple[int, int],
    mask_prob: float = 0.15,
    word_starts: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """input_ids, special_mask (B, T) -> (corrupted input_ids, labels), both (B, T).

    `special_mask` is True where a token must never be chosen ([CLS], [SEP], [PAD]);
    random replacements are drawn uniformly from `random_token_range` = [low, high) (ordinary
    tokens only). `word_starts` (B, T) bool, True on the first piece of each word, turns on
    whole-word masking. labels hold the original id on chosen tokens and IGNORE elsewhere.
    """
    device = input_ids.device

    def uniform(shape) -> Tensor:
        return torch.rand(shape, generator=generator, device="cpu").to(device)

    draw = uniform(input_ids.shape)
    if word_starts is None:
        chosen = draw < mask_prob
    else:
        # Choose at each word's first piece, then copy the choice to its other pieces.
        positions = torch.arange(input_ids.shape[1], device=device).expand_as(input_ids)
        start_of = torch.where(word_starts, positions, torch.zeros_like(positions))
        start_of = start_of.cummax(dim=1).values  # (B, T): index of each token's word start
        chosen = (draw < mask_prob).gather(1, start_of)
    chosen &= ~special_mask
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE))

    action = uniform(input_ids.shape)
    to_mask = chosen & (action < 0.8)
    to_random = chosen & (action >= 0.8) & (action < 0.9)
    low, high = random_token_range
    random_ids = torch.randint(low, high, input_ids.shape, generator=generator).to(device)
    corrupted = torch.where(to_mask, torch.full_like(input_ids, mask_token_id), input_ids)
    corrupted = torch.where(to_random, random_ids, corrupted)
    return corrupted, labels
