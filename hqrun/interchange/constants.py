"""Which constant a weight's Quant node reads: the float (shadow) weights, or their quantized values.

Why: a quantized layer keeps float weights and quantizes them on every forward pass (QKeras's
and Brevitas's quantization-aware training). A QONNX graph can say the same — the float weights
as an initializer, the Quant node computing the quantized weights from them — and then a model
imported back (or into Brevitas/FINN) starts from the very same float weights, so fine-tuning
continues where training stopped and the quantizer (say ``alpha="auto_po2"``) finds the same
values again. That is only right when the node computes *exactly* the quantizer's values, which
depends on the quantizer (QKeras's ternary threshold or power-of-two rounding are no Quant node),
so it is checked value for value with qonnx's own operator implementation; otherwise the graph
holds the quantized values, which its node maps to themselves.
"""

from __future__ import annotations

import numpy as np

from .formats import QuantFormat

__all__ = ["qonnx_values", "stored_constant"]

#: Rounding modes tried for a node reading float weights: QKeras's tf.round (half to even) and
#: the ``floor(|x|/s + 0.5)`` of its ``alpha="auto_po2"`` scales (half away from zero).
_ROUNDINGS = ("ROUND", "HALF_UP")


def qonnx_values(raw: np.ndarray, fmt: QuantFormat) -> np.ndarray:
    """What qonnx's executor computes for ``fmt`` applied to the float32 constant ``raw``."""
    from qonnx.custom_op.general.bipolar_quant import binary_quant
    from qonnx.custom_op.general.intquant import int_quant

    x = np.asarray(raw, dtype=np.float32)
    scale = fmt.scale.astype(np.float32)
    if fmt.op == "BipolarQuant":
        return np.asarray(binary_quant(x, scale))
    return np.asarray(int_quant(x, scale, np.float32(0.0), np.float32(fmt.bits), int(fmt.signed),
                                int(fmt.narrow), fmt.rounding))


def _with(fmt: QuantFormat, rounding: str, scale: np.ndarray | None = None) -> QuantFormat:
    return QuantFormat(fmt.op, fmt.bits, fmt.scale if scale is None else scale, fmt.signed,
                       fmt.narrow, rounding)


def _channel_scales(fmt: QuantFormat, values: np.ndarray, raw: np.ndarray,
                    rounding: str) -> np.ndarray | None:
    """Per-channel scales (each the finest-step format's or a finer power of two that still
    holds the channel's codes) under which the node computes ``values`` from ``raw``."""
    axis = int(np.argmax(fmt.scale.shape))
    flat = fmt.scale.reshape(-1).copy()  # one axis is not 1: flattening keeps channel order
    for c in range(flat.size):
        v, w = np.take(values, [c], axis=axis), np.take(raw, [c], axis=axis)
        s = float(flat[c])
        for _ in range(64):
            trial = QuantFormat(fmt.op, fmt.bits, np.float64(s), fmt.signed, fmt.narrow, rounding)
            if np.array_equal(qonnx_values(w, trial).astype(np.float64), v):
                flat[c] = s
                break
            s /= 2
            if np.max(np.abs(v)) / s > fmt.max_code:
                return None
        else:
            return None
    return flat.reshape(fmt.scale.shape)


def stored_constant(fmt: QuantFormat, values: np.ndarray, raw: np.ndarray | None
                    ) -> tuple[np.ndarray, QuantFormat, bool]:
    """``(initializer, format, is_float)``: ``raw`` when a node computes ``values`` from it."""
    if raw is not None and raw.shape == values.shape:
        for rounding in _ROUNDINGS if fmt.op == "Quant" else ("ROUND",):
            trial = _with(fmt, rounding)
            if np.array_equal(qonnx_values(raw, trial).astype(np.float64), values):
                return raw, trial, True
            if fmt.op == "Quant" and not fmt.is_scalar:
                scales = _channel_scales(fmt, values, raw, rounding)
                if scales is not None:
                    return raw, _with(fmt, rounding, scales), True
    return values, fmt, False
