"""Few-shot classification on frozen features: n labelled images per class.

SimpleShot (Wang, Chao, Weinberger, van der Maaten 2019, arXiv:1911.04623): centre the features
on the mean of the (unlabelled) training set, l2-normalise them ("CL2N"), and classify a test
image by its nearest class mean. No hyperparameter to tune on a handful of labels, and as good
as a logistic regression at 1-10 shots. Each shot count is repeated over several random draws
of the labelled examples; the mean and standard deviation are reported.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.evaluation.sampling import few_shot_indices


def nearest_mean_accuracy(
    support_x: Tensor, support_y: Tensor, test_x: Tensor, test_y: Tensor, num_classes: int
) -> float:
    """Accuracy of the nearest-class-mean (cosine) classifier; features already CL2N."""
    means = torch.zeros(num_classes, support_x.shape[1])
    means.index_add_(0, support_y.long(), support_x)
    counts = torch.bincount(support_y.long(), minlength=num_classes).clamp_min(1)
    means = F.normalize(means / counts[:, None], dim=1)  # (C, D)
    scores = test_x @ means.T  # (Q, C)
    missing = torch.bincount(support_y.long(), minlength=num_classes) == 0
    scores[:, missing] = float("-inf")  # a class with no example is never predicted
    return (scores.argmax(dim=1) == test_y.long()).float().mean().item()


def few_shot(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    num_classes: int,
    shots: Sequence[int] = (1, 5, 10),
    draws: int = 5,
    seed: int = 0,
) -> dict[str, dict[str, object]]:
    """{"1": {"mean", "std", "runs": [...]}, "5": ..., ...}: accuracy per shot count."""
    centre = train_x.float().mean(dim=0)
    train_n = F.normalize(train_x.float() - centre, dim=1)
    test_n = F.normalize(test_x.float() - centre, dim=1)
    out: dict[str, dict[str, object]] = {}
    for n in shots:
        generator = torch.Generator().manual_seed(seed * 1000 + int(n))
        runs = []
        for _ in range(draws):
            idx = few_shot_indices(train_y, int(n), generator)
            runs.append(
                nearest_mean_accuracy(train_n[idx], train_y[idx], test_n, test_y, num_classes)
            )
        values = torch.tensor(runs)
        std = values.std().item() if len(runs) > 1 else 0.0
        out[str(int(n))] = {"mean": values.mean().item(), "std": std, "runs": runs}
    return out
