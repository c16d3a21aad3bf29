"""Linear probe on separable features; few-shot draws balanced and reproducible; sampling."""

import torch

from engine.evaluation.fewshot import few_shot
from engine.evaluation.linear import linear_probe, standardise
from engine.evaluation.sampling import few_shot_indices, stratified_fraction, stratified_split


def separable(n_per_class=60, num_classes=4, dim=20, seed=0, scale=1.0):
    """Classes at distinct corners, linearly separable, plus nuisance dimensions."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=g) * 5
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    x = centres[labels] + 0.3 * torch.randn(len(labels), dim, generator=g)
    return x * scale, labels


def test_linear_probe_reaches_100_percent_on_separable_features():
    train_x, train_y = separable(seed=0)
    g = torch.Generator().manual_seed(5)
    test_x = train_x + 0.05 * torch.randn(train_x.shape, generator=g)
    # Huge, shifted raw scale: standardisation must make this irrelevant.
    result = linear_probe(train_x * 1000 + 50, train_y, test_x * 1000 + 50, train_y, 4)
    assert result["top1"] == 1.0 and result["train_top1"] == 1.0
    assert result["weight_decay"] in (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def test_standardise_uses_train_statistics_only():
    train, test = torch.tensor([[0.0], [2.0]]), torch.tensor([[4.0]])
    train_s, test_s = standardise(train, test)
    assert torch.allclose(train_s.mean(0), torch.zeros(1))
    assert torch.allclose(test_s, (test - 1.0) / train.std(0))


def test_few_shot_draws_are_balanced_and_seeded():
    labels = torch.arange(5).repeat_interleave(30)[torch.randperm(150)]
    for shots in (1, 5, 10):
        a = few_shot_indices(labels, shots, torch.Generator().manual_seed(3))
        b = few_shot_indices(labels, shots, torch.Generator().manual_seed(3))
        c = few_shot_indices(labels, shots, torch.Generator().manual_seed(4))
        assert torch.equal(a, b) and not torch.equal(a, c)
        assert torch.bincount(labels[a], minlength=5).tolist() == [shots] * 5
    # A class with fewer examples than shots gives all it has.
    small = torch.tensor([0, 0, 0, 1])
    assert torch.bincount(small[few_shot_indices(small, 2, torch.Generator())]).tolist() == [2, 1]


def test_few_shot_result_is_reproducible_and_reports_mean_and_std():
    x, y = separable(n_per_class=40, num_classes=5, seed=2)
    first = few_shot(x, y, x, y, 5, shots=(1, 5), draws=4, seed=7)
    again = few_shot(x, y, x, y, 5, shots=(1, 5), draws=4, seed=7)
    assert first == again
    assert set(first) == {"1", "5"} and len(first["5"]["runs"]) == 4
    assert first["5"]["mean"] == 1.0 and first["5"]["std"] == 0.0


def test_stratified_fraction_keeps_one_per_class_and_split_is_disjoint():
    labels = torch.cat([torch.zeros(500), torch.ones(30), torch.full((5,), 2)]).long()
    g = torch.Generator().manual_seed(0)
    idx = stratified_fraction(labels, 0.01, g)
    assert torch.bincount(labels[idx]).tolist() == [5, 1, 1]
    fit, val = stratified_split(labels, 0.2, torch.Generator().manual_seed(0))
    assert len(set(fit.tolist()) & set(val.tolist())) == 0
    assert len(fit) + len(val) == len(labels)
    assert torch.bincount(labels[val]).tolist() == [100, 6, 1]
