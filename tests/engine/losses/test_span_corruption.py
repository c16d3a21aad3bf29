"""T5 span corruption: the promised share in spans, consistent sentinels, lossless."""

import torch

from engine.losses.span_corruption import (
    noise_mask,
    row_noise_mask,
    span_corrupt,
    span_corrupt_rows,
    span_counts,
)

SENTINELS = list(range(1000, 1100))
EOS = 1


def reconstruct(inputs: list[int], targets: list[int]) -> list[int]:
    """Put each sentinel's span from the target back into the input."""
    spans, current = {}, None
    for token in targets:
        if token in SENTINELS:
            current = token
            spans[current] = []
        elif token != EOS:
            spans[current].append(token)
    out = []
    for token in inputs:
        if token in SENTINELS:
            out += spans[token]
        elif token != EOS:
            out.append(token)
    return out


def test_share_and_span_lengths():
    g = torch.Generator().manual_seed(0)
    lengths = []
    for _ in range(200):
        mask = noise_mask(128, 0.15, 3.0, g)
        assert mask.sum().item() == span_counts(128)[0] == round(128 * 0.15)
        assert not mask[0]  # starts with kept tokens
        edges = torch.diff(mask.long(), prepend=torch.tensor([0]), append=torch.tensor([0]))
        starts, ends = (edges == 1).nonzero()[:, 0], (edges == -1).nonzero()[:, 0]
        assert len(starts) == span_counts(128)[1]
        lengths += (ends - starts).tolist()
    assert abs(sum(lengths) / len(lengths) - 19 / 6) < 0.01  # 19 tokens in 6 spans exactly


def test_sentinels_consistent_and_text_reconstructed():
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(2, 900, (16, 64), generator=g)
    inputs, targets = span_corrupt(tokens, SENTINELS, EOS, generator=g)
    noise, spans = span_counts(64)
    assert inputs.shape == (16, 64 - noise + spans + 1)
    assert targets.shape == (16, noise + spans + 2)
    for row in range(16):
        i, t = inputs[row].tolist(), targets[row].tolist()
        used_in = [x for x in i if x in SENTINELS]
        used_out = [x for x in t if x in SENTINELS]
        assert used_in == SENTINELS[:spans]  # in order, each once
        assert used_out == SENTINELS[: spans + 1]  # plus the closing sentinel
        assert i[-1] == EOS and t[-1] == EOS
        assert reconstruct(i, t) == tokens[row].tolist()


def test_row_masks_keep_the_share_and_put_spans_anywhere():
    g = torch.Generator().manual_seed(2)
    masks = torch.stack([row_noise_mask(13, 0.15, 3.0, g) for _ in range(3000)])
    counts = masks.sum(1)
    assert counts.min() >= 1 and counts.max() <= 12
    # binomial(13, 0.15) lifted to at least 1: mean 13 * 0.15 + P(0) = 1.95 + 0.12
    assert abs(counts.float().mean().item() - 2.07) < 0.08
    by_position = masks.float().mean(0)
    assert by_position[0] > 0.04 and by_position[-1] > 0.04  # a span may start or end a row
    assert (by_position[1:-1] > 0.1).all()  # and sit anywhere between
    assert not masks[:, -1].all()  # `noise_mask` would always end with a span


def test_rows_of_different_lengths_corrupt_only_their_own_tokens():
    pad = 0
    g = torch.Generator().manual_seed(3)
    lengths = [14, 9, 2, 1, 20]
    tokens = torch.full((len(lengths), 21), pad)
    for row, n in enumerate(lengths):
        tokens[row, :n] = torch.randint(2, 900, (n,), generator=g)
        tokens[row, n] = EOS  # each document ends with eos, then padding
    inputs, mask, targets = span_corrupt_rows(tokens, pad, SENTINELS, EOS, generator=g)
    assert inputs.shape == mask.shape and targets.shape[0] == len(lengths)
    for row, n in enumerate(lengths):
        kept = inputs[row][mask[row].bool()].tolist()
        assert pad not in kept and kept[-1] == EOS
        assert (inputs[row][~mask[row].bool()] == pad).all()
        target = [t for t in targets[row].tolist() if t != -100]
        assert target[-1] == EOS and (targets[row][len(target) :] == -100).all()
        assert reconstruct(kept, target) == tokens[row, :n].tolist()  # lossless, eos aside
        hidden = len(target) - 2 - sum(t in SENTINELS for t in target[:-1]) + 1
        assert (n < 2 and hidden == 0) or 1 <= hidden <= n - 1
