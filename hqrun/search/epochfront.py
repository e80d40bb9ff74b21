"""The Pareto set of one training's epochs: (validation accuracy, EBOPs) with the weights kept.

Why: a learned-bit-width training does not converge to one model. Under the cost penalty its
widths keep falling while accuracy wanders, so epoch 180 may be cheaper *and* as good as the
last epoch, and epoch 90 may be the most accurate one of all. A β sweep therefore keeps, per
trial, every epoch that no other epoch beats on both axes (the candidates), not just the last
or the "best" one. Epochs arrive one at a time during training; this keeps the running front
and a copy of each front epoch's weights, dropping an epoch's copy as soon as a later epoch
dominates it, so memory stays at the front's size, not the training's length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from hqrun.search.pareto import dominates

__all__ = ["EpochPoint", "EpochFront"]


@dataclass
class EpochPoint:
    """One front epoch: its number (0-based), validation accuracy, EBOPs and saved payload."""

    epoch: int
    accuracy: float
    cost: float
    payload: Any = field(default=None, repr=False)

    @property
    def point(self) -> tuple[float, float]:
        return (self.accuracy, self.cost)


class EpochFront:
    """Running non-dominated set of epochs (maximise accuracy, minimise cost).

    An epoch equal on both axes to a kept one is not added (the earlier epoch stands for that
    point), and an epoch with a non-finite coordinate never joins. ``snapshot`` is called only
    for an epoch that joins the front, so copying weights costs nothing for the others.
    """

    def __init__(self) -> None:
        self._points: list[EpochPoint] = []

    def offer(self, epoch: int, accuracy: float, cost: float,
              snapshot: Callable[[], Any] | None = None) -> bool:
        """Add the epoch if no kept epoch dominates or equals it; return whether it joined."""
        if not (math.isfinite(accuracy) and math.isfinite(cost)):
            return False
        new = (float(accuracy), float(cost))
        if any(p.point == new or dominates(p.point, new) for p in self._points):
            return False
        self._points = [p for p in self._points if not dominates(new, p.point)]
        self._points.append(EpochPoint(int(epoch), new[0], new[1],
                                       snapshot() if snapshot is not None else None))
        return True

    @property
    def points(self) -> list[EpochPoint]:
        """The front, cheapest first."""
        return sorted(self._points, key=lambda p: (p.cost, -p.accuracy, p.epoch))

    def __len__(self) -> int:
        return len(self._points)
