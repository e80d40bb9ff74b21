"""How an activation quantizer becomes fixed-point firmware: the answer a quantizer gives itself.

Why here and not in ``firmware/``: the firmware must not keep a table of quantizer names (a new
quantizer would mean editing it). Instead every quantizer says what exact integer operation it
is — :meth:`hqrun.quantizers.Quantizer.lowering` returns a :class:`Lowering` or refuses with a
:class:`~hqrun.errors.FirmwareError` that says why and what to use instead — and the firmware
maps the two operations below onto its IR.
"""

from __future__ import annotations

from dataclasses import dataclass

from .grid import FixedPointGrid

__all__ = ["Lowering", "LOWERING_OPS"]

#: ``relu``: ``max(x, 0)`` then each element cast to its grid; ``quant``: each element cast to its
#: grid (rounding and overflow of the grid), no ReLU.
LOWERING_OPS = ("relu", "quant")


@dataclass(frozen=True)
class Lowering:
    """An exact firmware operation: ``op`` (one of :data:`LOWERING_OPS`) onto ``grid``."""

    op: str
    grid: FixedPointGrid

    def __post_init__(self) -> None:
        if self.op not in LOWERING_OPS:
            raise ValueError(f"Lowering op {self.op!r} is not one of {LOWERING_OPS}")
