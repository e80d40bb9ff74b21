"""Bit-level description of a value slot, as the cost models (QTools energy, size, EBOPs) need it.

Why a separate, tiny module: every quantizer describes its own output here
(:meth:`hqrun.quantizers.Quantizer.operand`), and the type inference builds the rest of a layer's
operands from those descriptions. Keeping the class out of the type inference lets a quantizer
answer for itself without importing the pass that consumes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Operand", "OPERAND_KINDS", "float_operand", "fixed_operand"]

#: ``fixed`` (one fixed-point grid), ``po2`` (signed or unsigned powers of two), ``binary`` (+-1),
#: ``binary01`` (0/1), ``ternary`` (-1/0/+1), ``float`` (no grid).
OPERAND_KINDS = ("fixed", "po2", "binary", "binary01", "ternary", "float")


@dataclass(frozen=True)
class Operand:
    """How one value slot is stored.

    ``kind`` is one of :data:`OPERAND_KINDS`. ``bits`` is the storage / datapath width.
    ``int_bits`` follows QTools's convention (integer bits *excluding* the sign; -1 for float) so
    QTools's width rules can be replayed exactly; ``fixed`` is the exact
    :class:`~hqrun.quantizers.FixedPointType` when the values lie on one fixed-point grid.
    ``max_value`` is the po2 quantizer's ``max_value`` argument (None = unbounded), ``n_values`` the
    number of distinct values actually used (known only when computed from weights). ``grid`` is
    the per-element :class:`~hqrun.quantizers.grid.FixedPointGrid` when elements differ (learned
    widths); ``fixed`` is then the grid's union.
    """

    kind: str
    bits: int
    int_bits: int
    signed: bool
    fixed: Any = None
    max_value: float | None = None
    n_values: int | None = None
    grid: Any = None

    @property
    def is_float(self) -> bool:
        return self.kind == "float"


def float_operand(bits: int = 32) -> Operand:
    """A floating-point value of ``bits`` bits (QTools knows fp16 and fp32)."""
    return Operand("float", int(bits), -1, True)


def fixed_operand(t: Any, grid: Any = None) -> Operand:
    """The operand of a value of FixedPointType ``t`` (and per-element ``grid`` when given)."""
    return Operand("fixed", int(t.width), int(t.integer) - int(t.signed), bool(t.signed), t,
                   grid=grid)
