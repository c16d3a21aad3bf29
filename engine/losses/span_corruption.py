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


def span_counts(
    length: int, noise_density: float = 0.15, mean_span_length: float = 3.0
) -> tuple[int, int]:
    """(noise tokens, spans) for a sequence of `length` tokens."""
    num_noise = min(max(round(length * noise_density), 1), length - 1)
    num_spans = max(round(num_noise / mean_span_length), 1)
    return num_noise, num_spans


def _random_segmentation(total: int, parts: int, generator: torch.Generator) -> Tensor:
    """`total` split into `parts` positive lengths, uniformly over the compositions."""
    cuts = torch.randperm(total - 1, generator=generator)[: parts - 1].sort().values + 1
    bounds = torch.cat([torch.tensor([0]), cuts, torch.tensor([total])])
    return bounds.diff()


def noise_mask(
    length: int,
    noise_density: float = 0.15,
    mean_span_length: float = 3.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """(length,) bool, True on corrupted tokens; always starts with a kept run."""
    generator = generator or torch.Generator().manual_seed(0)
    num_noise, num_spans = span_counts(length, noise_density, mean_span_length)
    num_spans = min(num_spans, length - num_noise)
    noise = _random_segmentation(num_noise, num_spans, generator)
    kept = _random_segmentation(length - num_noise, num_spans, generator)
    runs = torch.stack([kept, noise], dim=1).reshape(-1)  # kept, noise, kept, noise, ...
    flags = torch.tensor([False, True]).repeat(num_spans)
    return flags.repeat_interleave(runs)


def corrupt_row(
    row: Tensor, mask: Tensor, sentinel_ids: list[int], eos_id: int
) -> tuple[Tensor, Tensor]:
    """One row (L,) and its noise mask (L,) -> (input, target), both ending with eos.

    input: the kept tokens with each span replaced by its sentinel. target: each sentinel
    followed by its span, then the next unused sentinel (as in T5)."""
    starts = mask & ~torch.cat([torch.tensor([False]), mask[:-1]])  # first token of a span
    span_index = starts.cumsum(0) - 1  # (L,): which span each noise token belongs to
    sentinels = torch.tensor(sentinel_ids)
    source = torch.where(starts, sentinels[span_index.clamp(min=0)], row)
    source = torch.cat([source[~mask | starts], torch.tensor([eos_id])])
    num_spans = int(starts.sum())
    pieces = []
    for k, span in enumerate(torch.tensor_split(row[mask], starts[mask].nonzero()[1:, 0])):
        pieces += [sentinels[k : k + 1], span]
    pieces += [sentinels[num_spans : num_spans + 1], torch.tensor([eos_id])]
    return source, torch.cat(pieces)


def span_corrupt(
    tokens: Tensor,
    sentinel_ids: list[int],
    eos_id: int,
    noise_density: float = 0.15,
    mean_span_length: float = 3.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """tokens (B, L) -> (inputs (B, L - noise + spans + 1), targets (B, noise + spans + 2)).

    inputs: the kept tokens with each span replaced by its sentinel, then eos. targets: each
    sentinel followed by its span, then the next unused sentinel and eos (as in T5).
    """
    generator = generator or torch.Generator().manual_seed(0)
    inputs, targets = [], []
    for row in tokens.cpu():
        mask = noise_mask(len(row), noise_density, mean_span_length, generator)
        source, target = corrupt_row(row, mask, sentinel_ids, eos_id)
        inputs.append(source)
        targets.append(target)
    return torch.stack(inputs).to(tokens.device), torch.stack(targets).to(tokens.device)


def row_noise_mask(
    length: int, noise_density: float, mean_span_length: float, generator: torch.Generator
) -> Tensor:
    """(length,) bool noise mask of one short document, spans anywhere in it.

    `noise_mask` fixes the counts by the length and always ends with a span: for a 13-token
    caption that is the same two tokens at the end every time. Here the number of hidden tokens
    is binomial(length, noise_density), kept within 1 and length - 1, so its share stays about
    `noise_density`; the spans are a random split of them, and the kept tokens are split
    into runs before, between (non-empty) and after them (either may be empty)."""
    drawn = int((torch.rand(length, generator=generator) < noise_density).sum())
    num_noise = min(max(drawn, 1), length - 1)
    num_kept = length - num_noise
    num_spans = min(max(round(num_noise / mean_span_length), 1), num_kept + 1)
    noise = _random_segmentation(num_noise, num_spans, generator)
    # Kept runs: num_spans + 1 of them, the inner num_spans - 1 at least one token long.
    free = num_kept - (num_spans - 1)
    bars = torch.randperm(free + num_spans, generator=generator)[:num_spans].sort().values
    edges = torch.cat([torch.tensor([-1]), bars, torch.tensor([free + num_spans])])
    kept = edges.diff() - 1  # stars and bars: num_spans + 1 counts summing to `free`
    kept[1:-1] += 1
    runs = torch.stack([kept[:-1], noise], dim=1).reshape(-1)
    runs = torch.cat([runs, kept[-1:]])
    flags = torch.cat([torch.tensor([False, True]).repeat(num_spans), torch.tensor([False])])
    return flags.repeat_interleave(runs)


def span_corrupt_rows(
    tokens: Tensor,
    pad_id: int,
    sentinel_ids: list[int],
    eos_id: int,
    noise_density: float = 0.15,
    mean_span_length: float = 3.0,
    generator: torch.Generator | None = None,
    ignore_index: int = -100,
) -> tuple[Tensor, Tensor, Tensor]:
    """Span corruption of one document per row: tokens (B, L), each row its document's tokens
    (ending with eos) padded with `pad_id` -> (inputs (B, I) padded with `pad_id`, their
    attention mask (B, I), targets (B, T) padded with `ignore_index`).

    Each row is corrupted alone over its own length (`row_noise_mask`), never its padding.
    A row of one token hides nothing."""
    generator = generator or torch.Generator().manual_seed(0)
    inputs, targets = [], []
    for row in tokens.cpu():
        body = row[row != pad_id]
        body = body[:-1] if len(body) and body[-1] == eos_id else body
        if len(body) < 2:
            inputs.append(torch.cat([body, torch.tensor([eos_id])]))
            targets.append(torch.tensor([sentinel_ids[0], eos_id]))
            continue
        mask = row_noise_mask(len(body), noise_density, mean_span_length, generator)
        source, target = corrupt_row(body, mask, sentinel_ids, eos_id)
        inputs.append(source)
        targets.append(target)
    width = max(len(x) for x in inputs)
    out = torch.full((len(inputs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(inputs), width), dtype=torch.long)
    target_out = torch.full(
        (len(targets), max(len(t) for t in targets)), ignore_index, dtype=torch.long
    )
    for i, (source, target) in enumerate(zip(inputs, targets)):
        out[i, : len(source)], mask[i, : len(source)] = source, 1
        target_out[i, : len(target)] = target
    device = tokens.device
    return out.to(device), mask.to(device), target_out.to(device)
