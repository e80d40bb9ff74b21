"""Per-element fixed-point formats: the type of a tensor whose elements have their own widths.

Why: a learned-width quantizer (one width per weight or per activation) does not produce values on
one ``ap_fixed`` grid, yet every element still lies exactly on *its own* grid. Cost model and
firmware need exactly that per-element description (EBOPs count each weight's own bits; an RTL
design sizes each constant multiplier from its own value; hls4ml needs one type wide enough for
all of them). :class:`FixedPointGrid` holds it as numpy arrays that broadcast against the tensor,
so a uniform quantizer is simply a grid of scalars (:meth:`FixedPointGrid.uniform`).

Conventions are ``ap_fixed``'s, as in :class:`~hqrun.quantizers.FixedPointType`: ``integer``
counts the sign bit, ``width = integer + fractional``. An element with ``width <= 0`` holds no bit
at all: its value is always 0 (a pruned weight or a silenced activation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hqrun.errors import QuantizerSpecError

from .fixedpoint import OVERFLOW_MODES, ROUNDING_MODES, FixedPointType

__all__ = ["FixedPointGrid"]

def _int_array(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.all(np.mod(arr, 1) == 0)):
        raise QuantizerSpecError(f"FixedPointGrid {name} must hold integer numbers of bits; got {arr!r}.")
    return arr.astype(np.int64)


@dataclass(frozen=True, eq=False)
class FixedPointGrid:
    """Element ``e`` holds ``ap_fixed<integer[e] + fractional[e], integer[e]>`` (signed[e]).

    Args:
        signed: per-element two's-complement flag (bool array or scalar).
        integer: per-element bits left of the binary point, sign included (ap_fixed's I).
        fractional: per-element bits right of the binary point (may be negative).
        rounding, overflow: one mode for every element (see ``FixedPointType``).
    """

    signed: np.ndarray
    integer: np.ndarray
    fractional: np.ndarray
    rounding: str = "RND_CONV"
    overflow: str = "SAT"

    def __post_init__(self) -> None:
        signed = np.asarray(self.signed).astype(bool)
        integer = _int_array("integer", self.integer)
        fractional = _int_array("fractional", self.fractional)
        try:
            np.broadcast_shapes(signed.shape, integer.shape, fractional.shape)
        except ValueError:
            raise QuantizerSpecError(
                f"FixedPointGrid arrays do not broadcast: signed {signed.shape}, integer "
                f"{integer.shape}, fractional {fractional.shape}."
            ) from None
        rounding = str(self.rounding).upper().removeprefix("AP_")
        overflow = str(self.overflow).upper().removeprefix("AP_")
        if rounding not in ROUNDING_MODES or overflow not in OVERFLOW_MODES:
            raise QuantizerSpecError(
                f"FixedPointGrid rounding={self.rounding!r} / overflow={self.overflow!r}: use one of "
                f"{', '.join(ROUNDING_MODES)} and one of {', '.join(OVERFLOW_MODES)}."
            )
        for name, arr in (("signed", signed), ("integer", integer), ("fractional", fractional)):
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "rounding", rounding)
        object.__setattr__(self, "overflow", overflow)

    # ------------------------------------------------------------------ construction
    @classmethod
    def uniform(cls, t: FixedPointType) -> "FixedPointGrid":
        """The grid of a single type (scalars: it broadcasts to any shape)."""
        return cls(np.asarray(t.signed), np.asarray(t.integer), np.asarray(t.fractional),
                   t.rounding, t.overflow)

    # ------------------------------------------------------------------ shape and bits
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(np.broadcast_shapes(self.signed.shape, self.integer.shape, self.fractional.shape))

    def broadcast_to(self, shape: tuple[int, ...]) -> "FixedPointGrid":
        """The same grid with arrays of exactly ``shape`` (e.g. a weight tensor's)."""
        return FixedPointGrid(np.broadcast_to(self.signed, shape), np.broadcast_to(self.integer, shape),
                              np.broadcast_to(self.fractional, shape), self.rounding, self.overflow)

    def flattened(self, shape: tuple[int, ...], channels_last: bool = False) -> "FixedPointGrid":
        """The grid of a tensor of ``shape`` (one sample, channels first) after a Flatten layer:
        in PyTorch's order, or with ``channels_last`` in Keras's (channels moved last first),
        as hqrun's ``Flatten(keras_order=...)`` orders the values."""
        g = self.broadcast_to(tuple(shape))
        order = (lambda a: np.moveaxis(a, 0, -1)) if channels_last and len(shape) > 1 else (lambda a: a)
        return FixedPointGrid(order(g.signed).reshape(-1), order(g.integer).reshape(-1),
                              order(g.fractional).reshape(-1), g.rounding, g.overflow)

    @property
    def width(self) -> np.ndarray:
        """Bits per element, sign included (``<= 0``: the element is always zero)."""
        return self.integer + self.fractional

    def bits(self) -> np.ndarray:
        """Bits each element costs in hardware: ``max(width, 0)``."""
        return np.maximum(self.width, 0)

    @property
    def is_uniform(self) -> bool:
        """True when every element has the same format (one ``FixedPointType`` describes it)."""
        return all(np.unique(a).size <= 1 for a in (self.signed, self.integer, self.fractional))

    # ------------------------------------------------------------------ ranges
    def code_range(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-element (min code, max code) as float64 (0, 0 for empty elements)."""
        w = self.width.astype(np.float64)
        live = w > 0
        signed = np.broadcast_to(self.signed, w.shape)
        wm1 = np.where(live, w - signed, 0.0)
        hi = np.where(live, np.exp2(wm1) - 1.0, 0.0)
        lo = np.where(live & signed, -np.exp2(wm1), 0.0)
        if self.overflow == "SAT_SYM":
            lo = np.where(live & signed, lo + 1.0, lo)
        return lo, hi

    def min_values(self) -> np.ndarray:
        """Smallest value of each element (float64, exact)."""
        lo, _ = self.code_range()
        return np.ldexp(lo, -np.broadcast_to(self.fractional, lo.shape))

    def max_values(self) -> np.ndarray:
        """Largest value of each element (float64, exact)."""
        _, hi = self.code_range()
        return np.ldexp(hi, -np.broadcast_to(self.fractional, hi.shape))

    def union(self) -> FixedPointType:
        """The narrowest single type that holds every value of every element exactly.

        Its LSB is the finest element LSB; its range covers every element's range. This is what a
        backend with one type per tensor (hls4ml) declares; values stay exact because each
        element's grid is a subset of it.
        """
        live = np.broadcast_to(self.width > 0, self.shape)
        if not np.any(live):
            return FixedPointType(1, 1, False, self.rounding, self.overflow)  # holds the zeros
        frac = int(np.max(np.broadcast_to(self.fractional, self.shape)[live]))
        lo = float(np.min(self.min_values()))
        hi = float(np.max(self.max_values()))
        signed = bool(np.any(np.broadcast_to(self.signed, self.shape)[live])) or lo < 0
        nlo, nhi = int(round(math.ldexp(lo, frac))), int(round(math.ldexp(hi, frac)))
        if signed:
            # SAT_SYM drops the most negative code, so the lower bound needs one more step of room
            neg = -nlo if self.overflow == "SAT_SYM" else -nlo - 1
            need = max(max(neg, 0).bit_length(), max(nhi, 0).bit_length()) + 1
        else:
            need = max(nhi.bit_length(), 1)
        return FixedPointType(need, need - frac, signed, self.rounding, self.overflow)

    # ------------------------------------------------------------------ arithmetic
    def quantize(self, x: Any) -> torch.Tensor:
        """Round and overflow each element of ``x`` onto its own grid (float64 arithmetic).

        Returned in x's floating dtype (float64 for other inputs); empty elements become 0.
        Exact for elements of up to 53 bits (the float64 mantissa).
        """
        t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float64))
        out_dtype = t.dtype if t.is_floating_point() else torch.float64
        frac = torch.tensor(self.fractional, dtype=torch.float64)
        y = torch.ldexp(t.to(torch.float64), frac)
        if self.rounding == "RND_CONV":
            n = torch.round(y)
        elif self.rounding == "RND":
            n = torch.floor(y + 0.5)
        else:
            n = torch.floor(y)
        lo, hi = (torch.tensor(a) for a in self.code_range())
        if self.overflow == "WRAP":
            span = torch.exp2(torch.tensor(np.maximum(self.width, 0), dtype=torch.float64))
            n = torch.where(hi > lo, torch.remainder(n - lo, span) + lo, torch.zeros_like(n))
        else:
            n = torch.minimum(torch.maximum(n, lo), hi)
        return torch.ldexp(n, -frac).to(out_dtype)

    def contains(self, x: Any) -> bool:
        """True when every element of ``x`` lies exactly on its own grid and in its range."""
        v = np.asarray(x.detach().cpu().double() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
        y = np.ldexp(v, np.broadcast_to(self.fractional, v.shape))
        lo, hi = self.code_range()
        return bool(np.all(np.floor(y) == y) and np.all((y >= lo) & (y <= hi)))

    def __repr__(self) -> str:
        if self.is_uniform:
            return f"FixedPointGrid(uniform {self.union().hls_name}, shape {self.shape})"
        w = self.bits()
        return (f"FixedPointGrid(shape {self.shape}, bits {int(w.min())}..{int(w.max())}, "
                f"{int((w == 0).sum())} empty, {self.rounding}/{self.overflow})")
