"""T5 span corruption: the promised share in spans, consistent sentinels, lossless."""
import torch

from engine.losses.span_corruption import noise_mask, span_corrupt, span_counts

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
        assert used_out == SENTINELS[:spans + 1]  # plus the closing sentinel
        assert i[-1] == EOS and t[-1] == EOS
        assert reconstruct(i, t) == tokens[row].tolist()
