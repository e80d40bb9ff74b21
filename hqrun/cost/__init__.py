"""Cost model: per-layer fixed-point types -> energy (QTools's Horowitz model), size in bits
(AutoQKeras's counting) and an FPGA resource/latency estimate. See docs/cost.md.

``from hqrun.cost import estimate``; the heavy parts import lazily so that importing
``hqrun.cost.config`` (Hydra schema validation) stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["estimate", "CostConfig", "CostReport", "make_config"]


def __getattr__(name: str) -> Any:
    if name in ("estimate", "energy", "size_bits"):
        from hqrun.cost import api

        return getattr(api, name)
    if name == "CostReport":
        from hqrun.cost.report import CostReport

        return CostReport
    if name in ("CostConfig", "make_config", "NOTEBOOK_SETTINGS"):
        from hqrun.cost import config

        return getattr(config, name)
    raise AttributeError(name)
