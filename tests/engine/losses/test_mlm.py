"""BERT masking statistics over many tokens: 15% chosen, 80/10/10, specials never touched."""

import torch

from engine.losses.mlm import IGNORE, mask_tokens

VOCAB, SPECIALS, MASK = 1000, 5, 4


def corrupt(word_starts=None, seed=0, prob=0.15):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(SPECIALS, VOCAB, (256, 128), generator=g)
    ids[:, 0], ids[:, -1], ids[:, 60:64] = 2, 3, 0  # [CLS], [SEP], some [PAD]
    special = ids < SPECIALS
    out, labels = mask_tokens(
        ids,
        special,
        MASK,
        (SPECIALS, VOCAB),
        prob,
        word_starts,
        generator=torch.Generator().manual_seed(seed + 1),
    )
    return ids, special, out, labels


def test_rates_and_labels():
    ids, special, out, labels = corrupt()
    chosen = labels != IGNORE
    ordinary = (~special).sum().item()
    assert abs(chosen.sum().item() / ordinary - 0.15) < 0.01
    n = chosen.sum().item()
    masked = (out[chosen] == MASK).sum().item() / n
    same = (out[chosen] == ids[chosen]).sum().item() / n
    random = 1 - masked - same
    assert abs(masked - 0.8) < 0.02 and abs(same - 0.1) < 0.02 and abs(random - 0.1) < 0.02
    # Labels: the original id where chosen, IGNORE everywhere else; unchosen tokens unchanged.
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(out[~chosen], ids[~chosen])
    # Random replacements are ordinary tokens.
    replaced = chosen & (out != MASK) & (out != ids)
    assert (out[replaced] >= SPECIALS).all()


def test_specials_never_chosen():
    ids, special, out, labels = corrupt(prob=0.9)
    assert (labels[special] == IGNORE).all()
    assert torch.equal(out[special], ids[special])


def test_whole_word_masking_takes_all_pieces_of_a_word():
    g = torch.Generator().manual_seed(3)
    word_starts = torch.rand(256, 128, generator=g) < 0.5
    word_starts[:, 0] = True
    ids, special, out, labels = corrupt(word_starts=word_starts)
    chosen = (labels != IGNORE) | special
    word = word_starts.long().cumsum(1)
    for row in range(0, 256, 17):
        for w in word[row].unique():
            members = (word[row] == w) & ~special[row]
            picked = labels[row][members] != IGNORE
            assert picked.all() or not picked.any()
    ordinary = ~special
    assert 0.10 < (labels != IGNORE).sum().item() / ordinary.sum().item() < 0.20
    assert chosen.any()
