"""Exact fixed-point types of values and of multiply-accumulate results: one definition for all.

Why one module: the cost model prices, and the firmware builds, the accumulator of every dense and
convolution layer. If the two sized it separately they could disagree silently, so both get it
from :func:`exact_mac_types` here (through the type inference of ``hqrun.quantizers.typeinfer``;
the firmware's batch-norm folding, which changes the weights, calls it directly).

"Exact" means: every partial sum of ``b + sum_i w_i x_i``, added in any order, for any input on
the input's grid and in its range, fits the accumulator, whose least significant bit is the finest
of ``lsb_w * lsb_x`` and ``lsb_b`` — so neither rounding nor overflow can happen inside a layer,
and the cheapest HLS modes (TRN, WRAP) are used for these internal types.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

from .fixedpoint import FixedPointType

__all__ = ["internal_type", "fit_type", "type_of_values", "exact_param_type", "exact_mac_types",
           "input_code_bounds", "MAX_PARAM_WIDTH"]

#: Declared weight types wider than this are replaced by the tightest type of the actual values
#: (e.g. quantized_po2(8) declares a grid spanning 2**-64..1; trained values use far less).
MAX_PARAM_WIDTH = 32


def internal_type(width: int, integer: int, signed: bool = True) -> FixedPointType:
    """A product/accumulator type: sized so nothing rounds or overflows, hence HLS's default
    (and cheapest) TRN/WRAP modes."""
    return FixedPointType(int(width), int(integer), signed=bool(signed), rounding="TRN",
                          overflow="WRAP")


def fit_type(lo: Fraction | float | int, hi: Fraction | float | int, frac_bits: int,
             signed: bool | None = None, min_width: int = 1) -> FixedPointType:
    """Narrowest type with ``frac_bits`` fractional bits holding ``[lo, hi]``.

    Signed when ``lo < 0`` (or when ``signed=True`` is forced); integer bits may come out zero or
    negative (ap_fixed allows it); the width is at least ``min_width``.
    """
    lo, hi = Fraction(lo), Fraction(hi)
    scale = Fraction(2) ** frac_bits
    nlo, nhi = math.floor(lo * scale), math.ceil(hi * scale)
    signed = (nlo < 0) if signed is None else (bool(signed) or nlo < 0)
    if signed:
        need = max((-nlo - 1).bit_length(), max(nhi, 0).bit_length()) + 1
    else:
        need = max(nhi.bit_length(), 1)
    width = max(need, 1, int(min_width))
    return internal_type(width, width - frac_bits, signed)


def type_of_values(values: Any, max_width: int = MAX_PARAM_WIDTH) -> FixedPointType | None:
    """Smallest signed type (at least 2 bits) holding every value exactly, or None if none fits.

    For weights whose grid depends on the trained values (``alpha="auto_po2"`` scales, folded
    batch norm) or whose declared grid is needlessly wide. Trailing zero bits common to all codes
    are dropped, so the fractional bits may be negative.
    """
    v = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        return None
    if not np.any(v != 0):
        return internal_type(2, 1, True)
    for frac in range(0, 65):
        scaled = np.ldexp(v, frac)
        if np.all(scaled == np.floor(scaled)):
            break
    else:
        return None
    if np.max(np.abs(np.ldexp(v, frac))) >= 2.0**62:
        return None
    codes = np.ldexp(v, frac).astype(np.int64)
    while frac > -64 and np.all(codes % 2 == 0):
        codes //= 2
        frac -= 1
    lo, hi = int(codes.min()), int(codes.max())
    width = max(max((-lo - 1).bit_length(), max(hi, 0).bit_length()) + 1, 2)
    if width > max_width:
        return None
    return internal_type(width, width - frac, True)


def exact_param_type(declared: FixedPointType | None, values: Any,
                     derive_when_undeclared: bool) -> FixedPointType | None:
    """The type a weight/bias slot is built with: its quantizer's declared type, narrowed to the
    actual values when the declaration is wider than :data:`MAX_PARAM_WIDTH`, or derived from
    the values when the quantizer declares none but its values lie on a power-of-two grid by
    construction (``derive_when_undeclared``, e.g. ``alpha="auto_po2"``)."""
    if declared is None:
        return type_of_values(values) if derive_when_undeclared else None
    if declared.width > MAX_PARAM_WIDTH:
        return type_of_values(values) or declared
    return declared


def input_code_bounds(t: FixedPointType, grid: Any = None,
                      shape: tuple[int, ...] | None = None) -> tuple[Any, Any]:
    """Integer codes (at ``t``'s LSB) bounding a MAC layer's input: per element when a
    per-element ``grid`` of the input ``shape`` is given (a dense layer fed by learned widths),
    else one range for the whole input."""
    if grid is not None and not grid.is_uniform and shape:
        g = grid.broadcast_to(tuple(shape))
        lo = np.round(np.ldexp(g.min_values(), t.fractional)).astype(np.int64)
        hi = np.round(np.ldexp(g.max_values(), t.fractional)).astype(np.int64)
        return lo, hi
    return t.min_code, t.max_code


def _int_codes(values: np.ndarray, frac: int) -> np.ndarray:
    """Integer codes of values that lie on the ``2**-frac`` grid (exact: they are known to)."""
    return np.round(np.ldexp(np.asarray(values, dtype=np.float64), frac)).astype(np.int64)


def exact_mac_types(kernel: np.ndarray, w_type: FixedPointType, bias: np.ndarray | None,
                    b_type: FixedPointType | None, x_lo: Any, x_hi: Any,
                    x_frac: int) -> tuple[FixedPointType, FixedPointType]:
    """Exact (product, accumulator) types of ``b + sum w x`` for these weights and input range.

    ``kernel`` holds the quantized weight *values* in torch layout ``(out, ...)``, every output
    reducing over all other axes; ``bias`` the quantized bias values ``(out,)``. The input is
    bounded by ``x_lo``/``x_hi`` — integer codes at ``2**-x_frac``, scalars or arrays that
    broadcast against ``kernel.shape[1:]`` (one range per input element, e.g. per-element
    learned formats). Each weight's extreme products are summed by sign, which covers every
    partial sum in any order.
    """
    fw = w_type.fractional
    fp = fw + int(x_frac)
    fb = b_type.fractional if (bias is not None and b_type is not None) else None
    facc = fp if fb is None else max(fp, fb)
    n_out = kernel.shape[0]
    w = _int_codes(kernel, fw).reshape(n_out, *kernel.shape[1:])
    lo = np.broadcast_to(np.asarray(x_lo, dtype=np.int64), kernel.shape[1:])[None]
    hi = np.broadcast_to(np.asarray(x_hi, dtype=np.int64), kernel.shape[1:])[None]
    bound = float(np.max(np.abs(w), initial=0)) * float(max(np.max(np.abs(lo)), np.max(np.abs(hi))))
    big = bound * max(w[0].size, 1) * 2.0 ** (facc - fp) >= 2.0**62
    if big:  # Python integers: no silent int64 overflow for very wide operands
        w, lo, hi = w.astype(object), lo.astype(object), hi.astype(object)
    p1, p2 = w * lo, w * hi
    pmax, pmin = np.maximum(p1, p2), np.minimum(p1, p2)
    axes = tuple(range(1, w.ndim))
    up = np.maximum(pmax, 0).sum(axis=axes) * (1 << (facc - fp))
    down = np.minimum(pmin, 0).sum(axis=axes) * (1 << (facc - fp))
    if fb is not None:
        # the bias may enter first or last: bound with its positive / negative part only
        b = _int_codes(bias, fb).reshape(-1).astype(object if big else np.int64) * (1 << (facc - fb))
        up = up + np.maximum(b, 0)
        down = down + np.minimum(b, 0)
    # signed and >= 2 bits, as hls4ml's accum_t
    acc = fit_type(_scaled(int(min(np.min(down), 0)), facc), _scaled(int(max(np.max(up), 0)), facc),
                   facc, signed=True, min_width=2)
    prod = fit_type(_scaled(int(min(np.min(pmin), 0)), fp), _scaled(int(max(np.max(pmax), 0)), fp),
                    fp, signed=True, min_width=2)
    return prod, acc


def _scaled(code: int, frac: int) -> Fraction:
    """The exact value ``code * 2**-frac``."""
    return Fraction(code, 2**frac) if frac >= 0 else Fraction(code * 2**-frac)
