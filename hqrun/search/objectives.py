"""Objectives: AutoQKeras's forgiving factor and the multi-objective (Pareto) view.

AutoQKeras folds cost into accuracy so that one scalar can be maximised by any tuner:
``score = accuracy * (1 + delta)`` where ``delta`` grows by ``delta_p`` percent every time the
trial is ``rate`` times cheaper than the reference and shrinks by ``delta_n`` percent every
time it is ``rate`` times dearer. The reference is ``stress`` x the reference model's cost, so
stress < 1 pushes the search towards smaller models. The same formula is used here for every
goal (bits, energy in pJ, EBOPs, LUTs of the RTL build); only the cost number differs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from hqrun.errors import SearchError

#: goal -> key of the cost totals a trial reports. ``lut``: the RTL (distributed-arithmetic)
#: build's LUTs, hqrun.cost's estimate calibrated against Yosys (hqrun.cost.lut_model).
GOAL_KEYS = {"bits": "bits", "energy": "energy", "ebops": "ebops", "lut": "lut"}

#: Axis and column wording of each goal's cost as the search prices it (QTools's convention)
GOAL_UNITS = {"energy": "energy (pJ, QTools)", "bits": "size (bits, AutoQKeras)", "ebops": "EBOPs",
              "lut": "LUTs (RTL build, calibrated estimate)"}


@dataclass(frozen=True)
class ForgivingFactor:
    """AutoQKeras's forgiving factor with its defaults (delta_p = delta_n = 8 %, rate = 2)."""

    delta_p: float = 8.0
    delta_n: float = 8.0
    rate: float = 2.0
    stress: float = 1.0

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.rate == 1:
            raise SearchError(f"search.goal.rate={self.rate} must be positive and != 1 (it is "
                              "the cost ratio that earns delta_p percent; AutoQKeras uses 2).")
        if self.stress <= 0:
            raise SearchError(f"search.goal.stress={self.stress} must be > 0 (1 = the reference "
                              "model's cost, < 1 asks for smaller models).")

    def reference(self, reference_cost: float) -> float:
        """The cost a trial is compared with: stress x the reference model's cost."""
        return self.stress * float(reference_cost)

    def delta(self, reference_cost: float, trial_cost: float) -> float:
        """Relative accuracy bonus (> 0 when the trial is cheaper than the stressed reference)."""
        ref = self.reference(reference_cost)
        trial = float(trial_cost)
        if not (ref > 0 and trial > 0) or math.isnan(ref) or math.isnan(trial):
            return float("nan")
        k = math.log(ref / trial) / math.log(self.rate)
        d = self.delta_p if trial < ref else self.delta_n
        return d / 100.0 * k

    def score(self, accuracy: float, reference_cost: float, trial_cost: float) -> float:
        return float(accuracy) * (1.0 + self.delta(reference_cost, trial_cost))


def forgiving_from_config(goal: Any) -> ForgivingFactor:
    get = goal.get if isinstance(goal, Mapping) else (lambda k, d=None: getattr(goal, k, d))
    gtype = get("type", "energy")
    if gtype not in GOAL_KEYS:
        raise SearchError(f"search.goal.type={gtype!r}; use one of {', '.join(GOAL_KEYS)}.")
    return ForgivingFactor(float(get("delta_p", 8.0)), float(get("delta_n", 8.0)),
                           float(get("rate", 2.0)), float(get("stress", 1.0)))


def score_rule(objective: str, goal: Any) -> ForgivingFactor:
    """The trial score of ``search.objective``.

    ``accuracy`` is for capped searches (``goal.max_cost``): every trial already fits the budget,
    and within it the user wants the most accurate model, not the cheapest one that the forgiving
    factor would trade accuracy for. It is the forgiving factor with zero bonus and penalty, so
    the score is the validation accuracy itself and every tuner and scheduler works unchanged.
    """
    ff = forgiving_from_config(goal)
    if objective == "accuracy":
        return ForgivingFactor(0.0, 0.0, ff.rate, ff.stress)
    return ff


def cost_of(totals: Mapping[str, float], goal: str) -> float:
    """Pick the goal's number out of a trial's cost totals."""
    key = GOAL_KEYS[goal]
    if key not in totals:
        raise SearchError(f"the cost model reported no {key!r} total (it reported "
                          f"{', '.join(totals)}); choose search.goal.type among those.")
    return float(totals[key])
