"""Which trials learned something: the accuracy floor below which a trial is *failed to learn*.

Why: a quantized model whose weights all round to zero (e.g. a 2-bit kernel with one integer
bit applied to small float weights) predicts one class whatever its input. Its validation
accuracy is the chance level, and because such models are also cheap, a plain accuracy/cost
Pareto front keeps them as its cheapest points: in the quickstart 3 of 8 trials sat at 0.2000
(chance for 5 balanced classes) and the report listed them as front points, and the plot's
y-axis ran down to 0.2. A model at chance is not a trade-off, it is a failure.

The floor: *chance* is the accuracy of always answering the most frequent class of the
validation split (1/5 for the balanced jet classes). A classifier that learned nothing scores
chance plus binomial noise, whose standard deviation on ``n`` validation samples is
``sqrt(p (1 - p) / n)``. A trial is failed-to-learn when its accuracy is NaN or not more than
``z`` = 3 such standard deviations above chance (a guesser exceeds that once in ~700 trials), and
never by less than one point of accuracy (0.01), so a tiny validation split does not admit
near-guessers. On the quickstart's 3,200 validation jets the floor is 0.2 + 0.021 = 0.221; on
the 16,000 of the larger set, 0.2 + 0.01.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np

#: Standard deviations of a guesser's accuracy above chance that still count as guessing.
Z_SIGMA = 3.0
#: The smallest margin above chance, in accuracy.
MIN_MARGIN = 0.01


@dataclass(frozen=True)
class LearningFloor:
    """Chance level of one validation split and the accuracy a trial must exceed."""

    chance: float
    n_samples: int
    margin: float

    @property
    def threshold(self) -> float:
        return self.chance + self.margin

    def learned(self, accuracy: Any) -> bool:
        """Whether a trial with this validation accuracy learned anything (NaN/None: no)."""
        try:
            value = float(accuracy)
        except (TypeError, ValueError):
            return False
        return math.isfinite(value) and value > self.threshold

    def describe(self) -> str:
        return (f"validation accuracy NaN or at most {self.threshold:.3f}, i.e. chance "
                f"{self.chance:.3f} + {Z_SIGMA:g} binomial sigma ({self.margin:.3f}) on "
                f"{self.n_samples:,} samples")

    def to_dict(self) -> dict:
        return {**asdict(self), "threshold": self.threshold, "rule": self.describe()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "LearningFloor | None":
        if not data:
            return None
        try:
            return cls(float(data["chance"]), int(data["n_samples"]), float(data["margin"]))
        except (KeyError, TypeError, ValueError):
            return None


def learning_floor(labels: Sequence[int] | np.ndarray) -> LearningFloor:
    """The floor for a validation split with these class labels."""
    y = np.asarray(labels).reshape(-1)
    n = int(y.size)
    if n == 0:
        return LearningFloor(0.0, 0, MIN_MARGIN)
    chance = float(np.bincount(y.astype(np.int64)).max()) / n
    sigma = math.sqrt(chance * (1.0 - chance) / n)
    return LearningFloor(chance, n, max(MIN_MARGIN, Z_SIGMA * sigma))
