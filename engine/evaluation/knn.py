"""Weighted k-nearest-neighbour classification on cosine similarity.

Wu, Xiong, Yu, Lin 2018, "Unsupervised Feature Learning via Non-Parametric Instance
Discrimination" (arXiv:1805.01978), section 3.4, as DINO uses it (Caron et al. 2021,
`eval_knn.py`): the k most similar training features vote for their class with weight
exp(similarity / T); k = 20 and T = 0.07 by default.

Memory: queries go in chunks, and each query chunk scans the bank in chunks keeping a running
top-k, so the peak is one (query_chunk, k + bank_chunk) block, never the (Q, N) matrix: a
50,000-image bank with 10,000 queries needs tens of megabytes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.errors import SpecError

QUERY_CHUNK = 1024
BANK_CHUNK = 8192


@torch.no_grad()
def knn_scores(
    bank: Tensor,
    bank_labels: Tensor,
    queries: Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    query_chunk: int = QUERY_CHUNK,
    bank_chunk: int = BANK_CHUNK,
) -> Tensor:
    """Class scores (Q, num_classes): for each query, the sum of exp(cos / T) over its k
    nearest bank rows, per class of those rows.

    bank: (N, D) features, bank_labels: (N,) ints in [0, num_classes), queries: (Q, D).
    """
    if k < 1 or temperature <= 0:
        raise SpecError(f"k must be at least 1 and temperature positive, got {k}, {temperature}")
    bank = F.normalize(bank.float(), dim=1)
    queries = F.normalize(queries.float(), dim=1)
    bank_labels = bank_labels.long()
    k = min(k, bank.shape[0])
    out = torch.zeros(queries.shape[0], num_classes)
    for start in range(0, queries.shape[0], query_chunk):
        chunk = queries[start : start + query_chunk]  # (q, D)
        top_sim = torch.empty(chunk.shape[0], 0)
        top_idx = torch.empty(chunk.shape[0], 0, dtype=torch.long)
        for b0 in range(0, bank.shape[0], bank_chunk):
            # float64 products rounded to float32: the same value whatever the chunk shapes
            # (BLAS sums in a shape-dependent order), so chunking never changes a vote.
            sim = (chunk.double() @ bank[b0 : b0 + bank_chunk].double().T).float()  # (q, b)
            idx = torch.arange(b0, b0 + sim.shape[1]).expand_as(sim)
            sim, idx = torch.cat([top_sim, sim], 1), torch.cat([top_idx, idx], 1)  # (q, k + b)
            top_sim, pos = sim.topk(min(k, sim.shape[1]), dim=1)  # (q, k)
            top_idx = idx.gather(1, pos)
        weights = (top_sim / temperature).exp()  # (q, k)
        votes = torch.zeros(chunk.shape[0], num_classes)
        votes.scatter_add_(1, bank_labels[top_idx], weights)
        out[start : start + chunk.shape[0]] = votes
    return out


def topk_accuracy(scores: Tensor, labels: Tensor, k: int, voted_only: bool = False) -> float:
    """Share of rows whose label is among the `k` highest scores (k capped at the classes).

    With `voted_only` (k-NN votes, all >= 0) a class whose score is 0 never counts: with
    k = 20 neighbours from two classes, top-5 would otherwise "find" any label among the
    unvoted classes that happen to fill the remaining places.
    """
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1)
    hits = top.indices == labels.long()[:, None]  # (Q, k)
    if voted_only:
        hits &= top.values > 0
    return hits.any(dim=1).float().mean().item()


def knn_evaluate(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    query_chunk: int = QUERY_CHUNK,
    bank_chunk: int = BANK_CHUNK,
) -> dict[str, float]:
    """Top-1 and top-5 accuracy of the k-NN classifier of `train` on `test`."""
    scores = knn_scores(
        train_x, train_y, test_x, num_classes, k, temperature, query_chunk, bank_chunk
    )
    return {
        "top1": topk_accuracy(scores, test_y, 1, voted_only=True),
        "top5": topk_accuracy(scores, test_y, 5, voted_only=True),
    }
