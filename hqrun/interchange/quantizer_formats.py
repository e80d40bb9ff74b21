"""hqrun quantizer → QONNX format: each quantizer is asked what it computes, never named.

Why here and not in the quantizers: QONNX is one consumer among several (cost model, firmware),
and the quantizers already answer the questions it needs — ``lowering()`` (the exact integer
operation in an activation slot), ``fixed_point_type()`` / ``fixed_point_grid()`` (where the
values lie), ``operand().kind`` (fixed, po2, binary, binary01, ternary) and ``is_stochastic``.
This module only turns those answers into QONNX nodes, or refuses with the reason.

Activations are *functions* of data, so their node must compute exactly what the quantizer
computes: the quantizer's own lowering (a cast to its grid, after a ReLU for ``quantized_relu``)
or, for a binary quantizer with a fixed scale, QONNX's BipolarQuant (``x >= 0 -> +scale``, which
is QKeras's sign with 0 -> +1). Weights and biases are *constants*: hqrun stores the quantized
values and the node declares their format, so the node maps every stored value to itself — for
any quantizer whose values lie on a fixed-point grid (po2, binary and ternary included), and
per output channel where the quantizer chose power-of-two steps from the data
(``alpha="auto_po2"``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hqrun.errors import FirmwareError, InterchangeError
from hqrun.quantizers.exact_types import exact_param_type
from hqrun.quantizers.fixedpoint import FixedPointType

from .formats import QuantFormat, format_of_type

__all__ = ["activation_format", "param_format"]


def _refuse_stochastic(where: str, q: Any) -> None:
    if getattr(q, "is_stochastic", False):
        raise InterchangeError(
            f"{where} is {q}, a stochastic quantizer: its output is random, which no QONNX node "
            "(and no firmware) reproduces. Use its deterministic counterpart (binary, ternary, "
            "quantized_bits, quantized_relu) and retrain."
        )


def _refuse_per_element(where: str, q: Any) -> None:
    grid = q.fixed_point_grid() if callable(getattr(q, "fixed_point_grid", None)) else None
    if grid is not None and not grid.is_uniform:
        raise InterchangeError(
            f"{where} is {q}, whose elements have their own bit widths ({grid!r}); a QONNX Quant "
            "node has one bit width per tensor, so the per-element formats cannot be written "
            "exactly. Give this slot one format (e.g. quantized_bits(bits,integer,alpha=1))."
        )


def activation_format(where: str, q: Any) -> tuple[bool, QuantFormat]:
    """``(relu_first, format)`` of an activation/input quantizer, or a refusal naming ``where``."""
    _refuse_stochastic(where, q)
    _refuse_per_element(where, q)
    try:
        lowering = q.lowering()
    except FirmwareError as err:
        lowering, reason = None, str(err)
    if lowering is not None:
        return lowering.op == "relu", format_of_type(lowering.grid.union(), where)
    t = q.fixed_point_type()
    if q.operand().kind == "binary" and t is not None:
        return False, QuantFormat("BipolarQuant", 1, np.float64(t.lsb))
    raise InterchangeError(
        f"{where} is {q}, which has no exact QONNX equivalent: {reason} QONNX's Quant computes a "
        "rounded, saturated fixed-point cast and BipolarQuant a sign; hqrun exports "
        "quantized_bits(bits,integer), quantized_relu(bits,integer) and binary activations."
    )


def _channel_format(where: str, values: np.ndarray, bits: int, axis: int) -> QuantFormat:
    """One power-of-two scale per output channel (``axis``) holding that channel's values as
    ``bits``-bit narrow codes: the format of an ``alpha="auto_po2"`` kernel."""
    moved = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
    limit = 2 ** (bits - 1) - 1
    scales = np.ones(moved.shape[0])
    for c, row in enumerate(moved):
        if not np.any(row):
            continue
        frac = 0
        while not np.all(np.ldexp(row, frac) == np.floor(np.ldexp(row, frac))):
            frac += 1
            if frac > 126:
                raise InterchangeError(f"{where}: channel {c} holds values on no power-of-two grid.")
        while frac > -126 and np.all(np.mod(np.ldexp(row, frac - 1), 1.0) == 0):
            frac -= 1
        if np.max(np.abs(np.ldexp(row, frac))) > limit:
            raise InterchangeError(
                f"{where}: channel {c}'s values need more than {bits}-bit codes; the quantizer's "
                "values are not the per-channel power-of-two grid its bits declare."
            )
        scales[c] = np.ldexp(1.0, -frac)
    shape = [1] * values.ndim
    shape[axis] = values.shape[axis]
    return QuantFormat("Quant", bits, scales.reshape(shape), True, True, "ROUND")


def param_format(where: str, q: Any, values: np.ndarray, channel_axis: int) -> QuantFormat:
    """The format of a weight/bias slot whose quantized ``values`` (ONNX layout) are stored.

    ``channel_axis`` is the output-channel axis of ``values`` (per-channel scales lie along it).
    """
    if q is None:
        raise InterchangeError(
            f"{where} is float (no quantizer). A float weight makes the graph's sums depend on "
            "the order of additions, so neither QONNX nor firmware can match the model bit for "
            "bit. Give the slot a quantizer in the plan, e.g. quantized_bits(8,3,alpha=1)."
        )
    _refuse_stochastic(where, q)
    _refuse_per_element(where, q)
    kind = q.operand().kind
    declared = q.fixed_point_type()
    if declared is not None:
        t = exact_param_type(declared, values, False)
        if not t.contains(values):
            raise InterchangeError(f"{where}: the quantized values of {q} are not on its type "
                                   f"{t.hls_name}; please report this as an hqrun bug.")
        if kind == "binary" and t == declared:
            return QuantFormat("BipolarQuant", 1, np.float64(t.lsb))
        # constants already lie on the grid: rounding and overflow never act on them (a type
        # narrowed to the actual values carries HLS's TRN/WRAP defaults, which QONNX lacks)
        t = FixedPointType(t.width, t.integer, t.signed, "RND_CONV",
                           "SAT" if t.overflow == "WRAP" else t.overflow)
        fmt = format_of_type(t, where, max_bits=None)
        if kind == "ternary":  # {-a, 0, a}: the narrow 2-bit range says so
            fmt = QuantFormat("Quant", fmt.bits, fmt.scale, True, True, fmt.rounding)
        return fmt
    if getattr(q, "grid_from_values", False):
        return _channel_format(where, values, max(int(q.operand().bits), 2), channel_axis)
    raise InterchangeError(
        f"{where} is {q}, whose values lie on no fixed-point grid (alpha={getattr(q, 'alpha', None)!r}"
        " gives scales that are not powers of two), so no QONNX Quant with a power-of-two scale "
        "holds them and no firmware reproduces them. Use alpha=1 or alpha=\"auto_po2\" and retrain."
    )
