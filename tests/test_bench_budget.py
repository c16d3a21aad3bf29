"""bench/budget.py: the steps a CPU-time budget buys, probes included."""

from __future__ import annotations

from bench import budget


def test_budget_pays_for_the_probes():
    costs = budget.Costs(step=1.0, knn=6.0, health=2.0)
    # 100 steps, k-NN every 50 (steps 0, 50 and 100), health every 25 (25, 50, 75, 100)
    assert budget.probe_points(100, 50, True) == 3
    assert budget.probe_points(100, 25, False) == 4
    assert budget.probe_points(110, 25, False) == 5  # and at the last step
    assert budget.probe_points(40, 50, True) == 0  # a run shorter than knn_every has none
    assert budget.run_cost(100, costs, 50, 25) == 100 + 3 * 6 + 4 * 2
    # 126 CPU s buy those 100 steps exactly, one second less buys fewer
    assert budget.steps_for(126, costs, 50, 25) == 100
    assert budget.steps_for(125, costs, 50, 25) == 99
    assert budget.run_cost(99, costs, 50, 25) == 99 + 3 * 6 + 4 * 2
    # without probes the budget is steps alone
    assert budget.steps_for(126, budget.Costs(1.0, 0.0, 0.0), 0, 0) == 126
