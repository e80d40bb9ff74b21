"""Fixed-point number formats: the one place where hqrun defines what a bit pattern means.

`FixedPointType` mirrors Vivado/Vitis HLS ``ap_fixed<W, I, Q, O>``: ``width`` bits in total,
``integer`` of them to the left of the binary point *including the sign bit* (unlike QKeras's
``integer``), a rounding mode applied to bits below the LSB and an overflow mode applied above the
MSB. Every other package (layers, cost model, firmware writer) asks this class for ranges and
HLS names rather than re-deriving them, which is what keeps software and firmware in agreement.

Arithmetic is done in float64 on integer codes, so ``quantize`` is exact for widths up to 53 bits
(values are ``code * 2**(integer - width)``; float64 holds every such code exactly).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hqrun.errors import QuantizerSpecError

__all__ = ["FixedPointType", "ROUNDING_MODES", "OVERFLOW_MODES"]

ROUNDING_MODES = ("RND_CONV", "RND", "TRN")
OVERFLOW_MODES = ("SAT", "SAT_SYM", "WRAP")

# Modes hls4ml/HLS also spell with an ``AP_`` prefix; accept both.
_HLS_NAME_RE = re.compile(
    r"^\s*(ap_fixed|ap_ufixed|ap_int|ap_uint)\s*<\s*(-?\d+)\s*(?:,\s*(-?\d+)\s*)?"
    r"(?:,\s*(AP_\w+)\s*)?(?:,\s*(AP_\w+)\s*)?(?:,\s*\d+\s*)?>\s*$"
)


def _as_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


@dataclass(frozen=True)
class FixedPointType:
    """An ``ap_fixed``-style number format.

    Args:
        width: total number of bits W (> 0).
        integer: bits left of the binary point, sign bit included (ap_fixed's I). May exceed
            ``width`` (the LSB is then > 1) or be negative (all bits are fractional), as in HLS.
        signed: two's complement when True, unsigned otherwise.
        rounding: ``"RND_CONV"`` (half to even, as ``tf.round``/``torch.round``), ``"RND"``
            (half toward +inf, HLS ``AP_RND``) or ``"TRN"`` (floor, HLS ``AP_TRN``).
        overflow: ``"SAT"`` (clamp to [min, max]), ``"SAT_SYM"`` (clamp to [-max, max] when
            signed) or ``"WRAP"`` (two's-complement wrap-around, HLS default).
    """

    width: int
    integer: int
    signed: bool = True
    rounding: str = "RND_CONV"
    overflow: str = "SAT"

    def __post_init__(self) -> None:
        for arg in ("width", "integer"):
            value = getattr(self, arg)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise QuantizerSpecError(
                    f"FixedPointType argument {arg}={value!r} must be an integer number of bits."
                )
            object.__setattr__(self, arg, int(value))
        if self.width <= 0:
            raise QuantizerSpecError(
                f"FixedPointType argument width={self.width} must be at least 1 bit."
            )
        object.__setattr__(self, "signed", bool(self.signed))
        rounding = str(self.rounding).upper().removeprefix("AP_")
        if rounding not in ROUNDING_MODES:
            raise QuantizerSpecError(
                f"FixedPointType argument rounding={self.rounding!r} is not supported; use one of "
                f"{', '.join(ROUNDING_MODES)} (optionally prefixed with AP_)."
            )
        overflow = str(self.overflow).upper().removeprefix("AP_")
        if overflow not in OVERFLOW_MODES:
            raise QuantizerSpecError(
                f"FixedPointType argument overflow={self.overflow!r} is not supported; use one of "
                f"{', '.join(OVERFLOW_MODES)} (optionally prefixed with AP_)."
            )
        object.__setattr__(self, "rounding", rounding)
        object.__setattr__(self, "overflow", overflow)

    # ------------------------------------------------------------------ ranges
    @property
    def fractional(self) -> int:
        """Bits right of the binary point (may be negative when ``integer > width``)."""
        return self.width - self.integer

    @property
    def lsb(self) -> float:
        """Value of one code step, ``2**(integer - width)``."""
        return math.ldexp(1.0, self.integer - self.width)

    @property
    def min_code(self) -> int:
        if not self.signed:
            return 0
        if self.overflow == "SAT_SYM":
            return -(2 ** (self.width - 1)) + 1
        return -(2 ** (self.width - 1))

    @property
    def max_code(self) -> int:
        return 2 ** (self.width - 1) - 1 if self.signed else 2**self.width - 1

    @property
    def min_value(self) -> float:
        """Smallest representable value (``-2**(I-1)`` signed, ``+lsb`` more under SAT_SYM)."""
        return math.ldexp(float(self.min_code), self.integer - self.width)

    @property
    def max_value(self) -> float:
        """Largest representable value, ``2**(I-1) - lsb`` signed or ``2**I - lsb`` unsigned."""
        return math.ldexp(float(self.max_code), self.integer - self.width)

    # ------------------------------------------------------------------ naming
    @property
    def hls_name(self) -> str:
        """The HLS C++ type: ``ap_fixed<W,I,AP_RND_CONV,AP_SAT>``, ``ap_ufixed<...>``,
        ``ap_int<W>``/``ap_uint<W>`` for plain integers with HLS's default TRN/WRAP modes."""
        default_modes = self.rounding == "TRN" and self.overflow == "WRAP"
        if default_modes and self.integer == self.width:
            return f"ap_int<{self.width}>" if self.signed else f"ap_uint<{self.width}>"
        base = "ap_fixed" if self.signed else "ap_ufixed"
        if default_modes:
            return f"{base}<{self.width},{self.integer}>"
        return f"{base}<{self.width},{self.integer},AP_{self.rounding},AP_{self.overflow}>"

    @classmethod
    def from_hls_name(cls, name: str) -> "FixedPointType":
        """Parse ``ap_fixed<W,I[,Q[,O]]>``, ``ap_ufixed<...>``, ``ap_int<W>`` or ``ap_uint<W>``;
        omitted modes take HLS's defaults (AP_TRN, AP_WRAP)."""
        match = _HLS_NAME_RE.match(name)
        if not match:
            raise QuantizerSpecError(
                f"Cannot parse HLS type {name!r}; expected e.g. 'ap_fixed<16,6,AP_RND_CONV,AP_SAT>',"
                " 'ap_ufixed<8,0>', 'ap_int<8>' or 'ap_uint<4>'."
            )
        kind, w, i, q, o = match.groups()
        width = int(w)
        if kind in ("ap_int", "ap_uint"):
            if i is not None:
                raise QuantizerSpecError(f"HLS type {name!r}: {kind} takes only a width.")
            return cls(width, width, kind == "ap_int", "TRN", "WRAP")
        if i is None:
            raise QuantizerSpecError(f"HLS type {name!r}: {kind} needs <width,integer>.")
        return cls(width, int(i), kind == "ap_fixed", q or "TRN", o or "WRAP")

    def __str__(self) -> str:
        return self.hls_name

    # ------------------------------------------------------------ arithmetic
    def _codes(self, x: torch.Tensor) -> torch.Tensor:
        """Integer codes of x (float64 tensor holding integers) after rounding and overflow."""
        y = x.to(torch.float64) * math.ldexp(1.0, self.fractional)
        if self.rounding == "RND_CONV":
            n = torch.round(y)
        elif self.rounding == "RND":
            n = torch.floor(y + 0.5)
        else:
            n = torch.floor(y)
        lo, hi = float(self.min_code), float(self.max_code)
        if self.overflow == "WRAP":
            span = float(2**self.width)
            n = torch.remainder(n - lo, span) + lo
        else:
            n = torch.clamp(n, lo, hi)
        return n

    def quantize(self, x: Any) -> torch.Tensor:
        """Round and overflow ``x`` onto this type's grid.

        Computed in float64 (exact for width <= 53) and returned in x's floating dtype (float64 for
        non-float inputs). Note a float32 result is exact only while width <= 24.
        """
        t = _as_tensor(x)
        out_dtype = t.dtype if t.is_floating_point() else torch.float64
        n = self._codes(t)
        return (n * self.lsb).to(out_dtype)

    def to_int(self, x: Any) -> torch.Tensor:
        """Integer codes (int64) of ``x`` after quantization: the bit pattern as a number."""
        return self._codes(_as_tensor(x)).to(torch.int64)

    def from_int(self, n: Any) -> torch.Tensor:
        """Values (float64) of integer codes ``n``; codes outside the range are not checked."""
        codes = _as_tensor(n).to(torch.float64)
        return codes * self.lsb

    def contains(self, x: Any) -> bool:
        """True when every element of ``x`` is exactly representable (on the grid and in range)."""
        t = _as_tensor(x).to(torch.float64)
        y = t * math.ldexp(1.0, self.fractional)
        on_grid = torch.all(torch.floor(y) == y)
        in_range = torch.all((y >= self.min_code) & (y <= self.max_code))
        return bool(on_grid and in_range)
