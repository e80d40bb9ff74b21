"""Schema of the ``study`` config node (``hqrun study`` and ``experiment=jet_tagging``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List


@dataclass
class StudyConfig:
    #: Homogeneous baselines trained first, by plan name (``float`` is the reference BF).
    baselines: List[str] = field(default_factory=lambda: ["float", "q6"])
    #: One AutoQ search per goal; its winner is retrained as Q<goal initial> (QE, QB, ...).
    goals: List[str] = field(default_factory=lambda: ["energy", "bits"])
    #: Start the winners' retraining from the float baseline's weights (AutoQKeras transfers too).
    init_from_float: bool = True
    #: Build and verify firmware for every model.
    firmware: bool = True
    #: Front points of each search listed in the report (0 = none).
    pareto_points: int = 5
