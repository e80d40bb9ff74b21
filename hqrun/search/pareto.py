"""Non-dominated set of (accuracy, cost) points: maximise accuracy, minimise cost.

AutoQKeras returns one scalarised winner; hqrun also returns every trial that no other trial
beats on both axes, so the user can pick the trade-off after the search instead of before it.
"""

from __future__ import annotations

import math
from typing import Sequence


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """True if ``a`` = (acc, cost) is at least as good as ``b`` on both axes and better on one."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points, sorted by increasing cost.

    Points with a NaN coordinate never belong to the front. Exact duplicates are all kept
    (none dominates the other). O(n log n): sort by cost then by accuracy descending and keep
    each point that beats the best accuracy seen at strictly lower cost.
    """
    idx = [i for i, (acc, cost) in enumerate(points)
           if not (math.isnan(acc) or math.isnan(cost))]
    idx.sort(key=lambda i: (points[i][1], -points[i][0]))
    front: list[int] = []
    best = -math.inf          # best accuracy among strictly cheaper points
    group_cost = None
    group_best = -math.inf    # best accuracy among points of the current cost
    for i in idx:
        acc, cost = points[i]
        if cost != group_cost:
            best = max(best, group_best)
            group_cost, group_best = cost, -math.inf
        if acc > best and acc >= group_best:
            front.append(i)
        group_best = max(group_best, acc)
    return front
