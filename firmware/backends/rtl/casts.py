"""Fixed-point casts in alkaid's tracing API, with hqrun's (ap_fixed's) rounding and overflow.

Why a module: every requantization between layers (accumulator → result type, ReLU's result, a
per-element learned format) goes through these functions, so "the RTL rounds and saturates
exactly as firmware/emulate.py does" is one claim about one place. alkaid's ``quantize`` takes
``(k, i, f)`` with ``i`` excluding the sign bit; hqrun's ``integer`` includes it, as
``ap_fixed``'s does. alkaid's TRN and RND rounding and its WRAP / SAT / SAT_SYM overflow
match :func:`hqrun.firmware.emulate.requantize` (a property test checks it), but two of its
RND_CONV (round half to even) paths do not in alkaid 0.8.2:

- on a variable carrying a power-of-two scale (what its constant-matrix solver returns, e.g.
  ``x @ W`` with half-integer weights) it clears the wrong bit on a tie (-77/128 → -0.625 at 6
  fractional bits instead of -0.59375);
- a *constant* is folded as under RND (0.5625 → 0.625 at 3 fractional bits instead of 0.5).

So RND_CONV is built here from operations that are exact in alkaid: with ``b`` the bit of weight
``2^-f`` (the result's LSB), ``round_half_even(x) = TRN(x + 2^-(f+1) - 2^-F + b·2^-F)`` where
``F`` is x's own fractional bits (ties go up only when the truncated result would be odd), and the
overflow mode is applied afterwards with TRN, exactly the order of ``requantize``: round, then
saturate or wrap. Constants need no hardware and are folded with ``requantize`` itself; a layer
whose weights all quantized to zero (its outputs are its biases) is where that happens.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hqrun.errors import FirmwareError
from hqrun.quantizers.fixedpoint import FixedPointType

from ...emulate import requantize

__all__ = ["cast", "cast_grid", "kif_of", "fold_constant"]


def kif_of(t: FixedPointType) -> tuple[int, int, int]:
    """alkaid's (signed, integer bits without sign, fractional bits) of an hqrun type."""
    k = int(t.signed)
    return k, t.integer - k, t.fractional


def fold_constant(value: float, t: FixedPointType | None) -> float:
    """``value`` (exact float64) cast to ``t`` by hqrun's reference arithmetic (None: 0)."""
    if t is None or value == 0:
        return 0.0
    mantissa, exp = math.frexp(value)
    code, frac = int(mantissa * (1 << 53)), 53 - exp
    while code % 2 == 0:
        code //= 2
        frac -= 1
    if abs(code) >= 1 << 62 or not -1000 < frac < 1000:
        raise FirmwareError(f"constant {value!r} cannot be cast to {t.hls_name} exactly.")
    if frac < 0:
        code, frac = code << -frac, 0
    q = requantize(np.array([code], dtype=np.int64), frac, t)
    return math.ldexp(float(q[0]), -t.fractional)


def _is_constant(v: Any) -> bool:
    return not hasattr(v, "low") or v.low == v.high


def _value(v: Any) -> float:
    return float(v.low) if hasattr(v, "low") else float(v)


def _round_half_even(v: Any, f: int) -> Any:
    """One alkaid variable rounded half-to-even to ``f`` fractional bits, never overflowing."""
    _, _, own_f = (int(a) for a in v.kif)
    if f >= own_f:
        return v
    lsb_bit = v.quantize(0, 1 - f, f, "WRAP", "TRN")  # b · 2^-f: the truncated result's LSB
    shifted = v + (2.0 ** (-f - 1) - 2.0 ** (-own_f)) + lsb_bit * 2.0 ** (f - own_f)
    k, i, _ = (int(a) for a in shifted.kif)
    return shifted.quantize(k, i, f, "WRAP", "TRN")  # its own range: a pure floor


def _quantize(x: Any, k: np.ndarray, i: np.ndarray, f: np.ndarray, overflow: str, rounding: str) -> Any:
    """alkaid's quantize on variables, RND_CONV built from exact steps; constants folded exactly."""
    shape = tuple(x.shape)
    k, i, f = (np.broadcast_to(np.asarray(a, dtype=np.int64), shape) for a in (k, i, f))
    raw = np.asarray(x)
    consts = np.array([_is_constant(v) for v in raw.ravel()], dtype=bool).reshape(shape)
    out = np.empty(shape, dtype=object)
    if not consts.all():
        work = x
        if rounding == "RND_CONV":
            rounded = np.empty(shape, dtype=object)
            for idx in np.ndindex(shape):
                live = not consts[idx] and k[idx] + i[idx] + f[idx] > 0
                rounded[idx] = _round_half_even(raw[idx], int(f[idx])) if live else raw[idx]
            work = type(x)(rounded, x.solver_options, hwconf=x.hwconf)
        out[...] = np.asarray(work.quantize(k, i, f, overflow, "TRN" if rounding == "RND_CONV" else rounding))
    if not consts.any():
        return type(x)(out, x.solver_options, hwconf=x.hwconf)
    for where in np.argwhere(consts):
        idx = tuple(int(j) for j in where)
        width = int(k[idx] + i[idx] + f[idx])
        t = None if width <= 0 else FixedPointType(width, int(k[idx] + i[idx]), bool(k[idx]),
                                                    rounding, overflow)
        out[idx] = fold_constant(_value(raw[idx]), t)
    return type(x)(out, x.solver_options, hwconf=x.hwconf)


def cast(x: Any, t: FixedPointType) -> Any:
    """``x`` (an alkaid FVArray of exact values) cast to ``t`` with ``t``'s rounding and overflow."""
    k, i, f = kif_of(t)
    return _quantize(x, k, i, f, t.overflow, t.rounding)


def cast_grid(x: Any, grid: Any, declared: FixedPointType, where: str) -> Any:
    """Cast each element of ``x`` to its own format of a per-element ``FixedPointGrid``.

    ``declared`` is the layer's one ``out_type``, in whose LSB the layer's codes are counted;
    every element's grid must be no finer than it. Elements of width ``<= 0`` become the
    constant 0.
    """
    g = grid.broadcast_to(tuple(x.shape))
    width = np.asarray(g.width)
    live = width > 0
    if np.any(np.asarray(g.fractional)[live] > declared.fractional):
        raise FirmwareError(
            f"{where}: its per-element output grid has elements with more fractional bits "
            f"({int(np.max(np.asarray(g.fractional)[live]))}) than its declared type "
            f"{declared.hls_name} ({declared.fractional}); the IR must declare the union of the grid "
            "(FixedPointGrid.union()) as the layer's out_type."
        )
    k = np.asarray(g.signed).astype(np.int64)
    i = np.asarray(g.integer) - k
    f = np.asarray(g.fractional)
    return _quantize(x, k, i, f, g.overflow, g.rounding)
