"""k-NN: against a brute-force reference, on a toy set with a known answer, chunked == unchunked."""

import math

import pytest
import torch

from engine.evaluation.knn import knn_evaluate, knn_scores, topk_accuracy


def brute_force(bank, bank_labels, queries, num_classes, k, temperature):
    """One query at a time, in plain Python over the full similarity list."""
    out = []
    for q in queries:
        sims = [(float(torch.dot(q, b) / (q.norm() * b.norm())), i) for i, b in enumerate(bank)]
        sims.sort(key=lambda s: -s[0])
        votes = [0.0] * num_classes
        for sim, i in sims[:k]:
            votes[int(bank_labels[i])] += math.exp(sim / temperature)
        out.append(votes)
    return torch.tensor(out)


@pytest.mark.parametrize("k, temperature", [(20, 0.07), (5, 0.5), (1, 1.0)])
def test_matches_brute_force_on_random_data(k, temperature):
    g = torch.Generator().manual_seed(0)
    bank = torch.randn(300, 16, generator=g)
    labels = torch.randint(0, 7, (300,), generator=g)
    queries = torch.randn(40, 16, generator=g)
    ours = knn_scores(bank, labels, queries, 7, k, temperature)
    reference = brute_force(bank, labels, queries, 7, k, temperature)
    assert torch.equal(ours.argmax(1), reference.argmax(1))
    assert torch.allclose(ours, reference, rtol=1e-4)


def test_toy_set_with_a_known_answer():
    # Two clusters on either side of the origin; every query sits next to one of them.
    bank = torch.tensor(
        [[1.0, 0.1], [1.0, -0.1], [0.9, 0.0], [-1.0, 0.1], [-1.0, -0.1], [-0.9, 0.0]]
    )
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    queries = torch.tensor([[2.0, 0.0], [-3.0, 0.5], [0.5, 0.01]])
    result = knn_evaluate(bank, labels, queries, torch.tensor([0, 1, 0]), 2, k=3)
    assert result == {"top1": 1.0, "top5": 1.0}
    # Wrong labels give zero top-1, and zero top-5 too: each query's three neighbours are all
    # of its cluster's class, so the other class got no vote (only voted classes count).
    wrong = knn_evaluate(bank, labels, queries, torch.tensor([1, 0, 1]), 2, k=3)
    assert wrong["top1"] == 0.0 and wrong["top5"] == 0.0


def test_chunking_gives_identical_results():
    g = torch.Generator().manual_seed(1)
    bank = torch.randn(1000, 32, generator=g)
    labels = torch.randint(0, 10, (1000,), generator=g)
    queries = torch.randn(130, 32, generator=g)
    whole = knn_scores(bank, labels, queries, 10, query_chunk=10_000, bank_chunk=10_000)
    for query_chunk, bank_chunk in [(7, 64), (64, 19), (1, 1000), (130, 21)]:
        chunked = knn_scores(
            bank, labels, queries, 10, query_chunk=query_chunk, bank_chunk=bank_chunk
        )
        assert torch.equal(chunked, whole), (query_chunk, bank_chunk)


def test_k_larger_than_the_bank_and_topk_accuracy():
    bank, labels = torch.eye(3), torch.tensor([0, 1, 2])
    scores = knn_scores(bank, labels, torch.eye(3), 3, k=20)
    assert scores.argmax(1).tolist() == [0, 1, 2]
    assert topk_accuracy(torch.tensor([[0.1, 0.9, 0.0]]), torch.tensor([0]), 1) == 0.0
    assert topk_accuracy(torch.tensor([[0.1, 0.9, 0.0]]), torch.tensor([0]), 2) == 1.0


def test_top5_never_counts_a_class_without_a_vote():
    # Five classes; the bank holds only classes 0 and 1, so every query's votes go to those
    # two. A query labelled 2, 3 or 4 got no vote for its class: a miss at top-5 too (scores
    # 0 tie for the remaining three places and used to count as hits).
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    queries = torch.tensor([[1.0, 0.1], [0.1, 1.0], [1.0, 0.5]])
    result = knn_evaluate(bank, labels, queries, torch.tensor([2, 3, 4]), 5, k=2)
    assert result == {"top1": 0.0, "top5": 0.0}
    result = knn_evaluate(bank, labels, queries, torch.tensor([1, 0, 1]), 5, k=2)
    assert result == {"top1": 0.0, "top5": 1.0}  # voted for, in second place
    scores = torch.tensor([[2.0, 0.0, 0.0]])
    assert topk_accuracy(scores, torch.tensor([2]), 3) == 1.0
    assert topk_accuracy(scores, torch.tensor([2]), 3, voted_only=True) == 0.0
