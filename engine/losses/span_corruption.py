"""T5's span-corruption objective.

Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
Transformer" (arXiv:1910.10683), section 3.1.4: about 15% of the tokens, in spans of mean
length 3, are each replaced in the input by one sentinel (<extra_id_0>, <extra_id_1>, ...);
the target lists each sentinel followed by the tokens it hid, and ends with a final sentinel.
Span lengths are drawn as in the reference `random_spans_noise_mask`: a random split of the
noise tokens into `num_spans` non-empty runs, and of the kept tokens likewise, interleaved.
With the counts fixed by the length, every row of a batch has the same input and target length.
"""
from __future__ import annotations

import torch
from torch import Tensor


def span_counts(length: int, noise_density: float = 0.15,
                mean_span_length: float = 3.0) -> tuple[int, int]:
    """(noise tokens, spans) for a sequence of `length` tokens."""
    num_noise = min(max(round(length * noise_density), 1), length - 1)
    num_spans = max(round(num_noise / mean_span_length), 1)
    return num_noise, num_spans


def _random_segmentation(total: int, parts: int, generator: torch.Generator) -> Tensor:
    """`total` split into `parts` positive lengths, uniformly over the compositions."""
    cuts = torch.randperm(total - 1, generator=generator)[:parts - 1].sort().values + 1
    bounds = torch.cat([torch.tensor([0]), cuts, torch.tensor([total])])
    return bounds.diff()


def noise_mask(length: int, noise_density: float = 0.15, mean_span_length: float = 3.0,
               generator: torch.Generator | None = None) -> Tensor:
    """(length,) bool, True on corrupted tokens; always starts with a kept run."""
    generator = generator or torch.Generator().manual_seed(0)
    num_noise, num_spans = span_counts(length, noise_density, mean_span_length)
    num_spans = min(num_spans, length - num_noise)
    noise = _random_segmentation(num_noise, num_spans, generator)
    kept = _random_segmentation(length - num_noise, num_spans, generator)
    runs = torch.stack([kept, noise], dim=1).reshape(-1)  # kept, noise, kept, noise, ...
    flags = torch.tensor([False, True]).repeat(num_spans)
    return flags.repeat_interleave(runs)


def span_corrupt(tokens: Tensor, sentinel_ids: list[int], eos_id: int,
                 noise_density: float = 0.15, mean_span_length: float = 3.0,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """tokens (B, L) -> (inputs (B, L - noise + spans + 1), targets (B, noise + spans + 2)).

    inputs: the kept tokens with each span replaced by its sentinel, then eos. targets: each
    sentinel followed by its span, then the next unused sentinel and eos (as in T5).
    """
    generator = generator or torch.Generator().manual_seed(0)
    inputs, targets = [], []
    for row in tokens.cpu():
        mask = noise_mask(len(row), noise_density, mean_span_length, generator)
        starts = mask & ~torch.cat([torch.tensor([False]), mask[:-1]])  # first token of a span
        span_index = starts.cumsum(0) - 1  # (L,): which span each noise token belongs to
        sentinels = torch.tensor(sentinel_ids)
        # Input: kept tokens, and a sentinel where each span starts.
        source = torch.where(starts, sentinels[span_index.clamp(min=0)], row)
        inputs.append(torch.cat([source[~mask | starts], torch.tensor([eos_id])]))
        # Target: the sentinel of each span, then its tokens.
        num_spans = int(starts.sum())
        pieces = []
        for k, span in enumerate(torch.tensor_split(row[mask], starts[mask].nonzero()[1:, 0])):
            pieces += [sentinels[k:k + 1], span]
        pieces += [sentinels[num_spans:num_spans + 1], torch.tensor([eos_id])]
        targets.append(torch.cat(pieces))
    return torch.stack(inputs).to(tokens.device), torch.stack(targets).to(tokens.device)
