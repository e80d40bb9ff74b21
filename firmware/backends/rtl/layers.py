"""One function per IR op: the layer's integer arithmetic, traced with alkaid's array API.

Why traced rather than written as Verilog here: alkaid turns each ``x @ W`` with constant
integer weights into a shared adder graph (distributed arithmetic, no multipliers) and keeps the
exact interval of every intermediate value, so the generated adders are only as wide as the
numbers need. hqrun writes no constant-multiplication optimiser of its own: these functions only
state *what* each layer computes, in the same order and with the same casts as
:mod:`hqrun.firmware.emulate` (exact sum, accumulator cast, result cast with the result type's
rounding and overflow; ReLU = max(x, 0) then the cast; average = exact sum shifted right).

Arrays are alkaid ``FVArray`` objects holding exact values (``code * 2**-fractional``), shaped
like the IR's tensors for one sample (channels first).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from hqrun.errors import FirmwareError
from hqrun.quantizers.fixedpoint import FixedPointType

from ...ir import IRLayer
from .casts import cast, cast_grid

__all__ = ["LOWERINGS", "lower_layer", "cast_result"]


def _values(codes: np.ndarray, t: FixedPointType) -> np.ndarray:
    """Exact float64 values of integer codes (widths are ≤ 53 bits in the IR)."""
    return np.ldexp(np.asarray(codes, dtype=np.float64), -t.fractional)


def cast_result(x: Any, layer: IRLayer) -> Any:
    """The layer's result cast: its ``out_type``, or element by element its ``out_grid``."""
    grid = getattr(layer, "out_grid", None)
    if grid is None:
        return cast(x, layer.out_type)
    return cast_grid(x, grid, layer.out_type, f"layer {layer.name!r}")


def _rewrap(fv: Any, like: Any) -> Any:
    """An object array of alkaid variables/constants as an FVArray with ``like``'s settings."""
    return type(like)(fv, like.solver_options, hwconf=like.hwconf)


def _sum_bias_cast(acc: Any, layer: IRLayer) -> Any:
    if layer.bias is not None:
        b = _values(layer.bias, layer.bias_type)
        acc = acc + b.reshape((-1,) + (1,) * (acc.ndim - 1))
    acc = cast(acc, layer.accum_type)  # never rounds or overflows (the IR sizes it): a no-op
    return cast_result(acc, layer)


def _dense(layer: IRLayer, x: Any) -> Any:
    w = _values(layer.weight, layer.weight_type)  # (out, in)
    return _sum_bias_cast(x @ w.T, layer)


def _conv(layer: IRLayer, x: Any) -> Any:
    """Each output position is one constant-matrix product over its input window (im2col)."""
    w = _values(layer.weight, layer.weight_type)  # (O, C, *kernel)
    nd = w.ndim - 2
    kernel = tuple(w.shape[2:])
    stride = tuple(layer.attrs.get("stride", [1] * nd))
    index = np.arange(x.size).reshape(x.shape)
    win = np.lib.stride_tricks.sliding_window_view(index, kernel, axis=tuple(range(1, 1 + nd)))
    win = win[(slice(None),) + tuple(slice(None, None, s) for s in stride)]  # (C, *out, *kernel)
    out_spatial = win.shape[1:1 + nd]
    win = np.moveaxis(win, 0, nd)  # (*out, C, *kernel): rows ordered like the flattened kernel
    rows = win.reshape(int(np.prod(out_spatial)), -1)
    flat = np.asarray(x).ravel()
    patches = _rewrap(flat[rows], x)  # (positions, C * prod(kernel))
    acc = patches @ w.reshape(w.shape[0], -1).T  # (positions, O)
    acc = acc.T.reshape((w.shape[0],) + out_spatial)
    return _sum_bias_cast(acc, layer)


def _relu(layer: IRLayer, x: Any) -> Any:
    return cast_result(np.maximum(x, 0.0), layer)


def _flatten(layer: IRLayer, x: Any) -> Any:
    if layer.attrs.get("channels_last") and x.ndim > 1:
        x = np.moveaxis(x, 0, -1)
    return x.reshape(-1)


def _zeropad(layer: IRLayer, x: Any) -> Any:
    pads = [tuple(int(v) for v in p) for p in layer.attrs["pads"]]
    shape = (x.shape[0],) + tuple(s + a + b for s, (a, b) in zip(x.shape[1:], pads))
    out = np.full(shape, 0.0, dtype=object)
    inner = (slice(None),) + tuple(slice(a, a + s) for s, (a, _) in zip(x.shape[1:], pads))
    out[inner] = np.asarray(x)
    return _rewrap(out, x)


def _avgpool2d(layer: IRLayer, x: Any) -> Any:
    """Exact sum of each non-overlapping block, then × 2^-log2(area) (a free shift), then cast."""
    ph, pw = (int(v) for v in layer.attrs["pool"])
    c, h, w = x.shape
    ho, wo = h // ph, w // pw
    raw = np.asarray(x)
    out = np.empty((c, ho, wo), dtype=object)
    for ci in range(c):
        for i in range(ho):
            for j in range(wo):
                block = raw[ci, i * ph:(i + 1) * ph, j * pw:(j + 1) * pw].ravel()
                total = block[0]
                for v in block[1:]:
                    total = total + v
                out[ci, i, j] = total
    return cast_result(_rewrap(out, x) * (1.0 / (ph * pw)), layer)


#: IR op → lowering. The input layer is the traced input itself; softmax is never lowered (the
#: RTL outputs the logits of the last fixed-point layer, as trigger designs do).
LOWERINGS: dict[str, Callable[[IRLayer, Any], Any]] = {
    "dense": _dense,
    "conv1d": _conv,
    "conv2d": _conv,
    "relu": _relu,
    "flatten": _flatten,
    "zeropad1d": _zeropad,
    "zeropad2d": _zeropad,
    "avgpool2d": _avgpool2d,
}


def lower_layer(layer: IRLayer, x: Any) -> Any:
    """Trace one IR layer on the traced array ``x``; refuse an op the RTL backend cannot build."""
    fn = LOWERINGS.get(layer.op)
    if fn is None:
        raise FirmwareError(
            f"layer {layer.name!r} (IR op {layer.op!r}) is not supported by the RTL backend, which "
            f"builds {', '.join(sorted(LOWERINGS))} layers (a final softmax is left out of the RTL: "
            "the design outputs the logits). Remove or replace that layer, or use the hls4ml "
            "backend."
        )
    y = fn(layer, x)
    if tuple(y.shape) != tuple(layer.out_shape):
        raise FirmwareError(f"layer {layer.name!r}: the RTL lowering produced shape {tuple(y.shape)}, "
                            f"the IR declares {tuple(layer.out_shape)}; please report this as an hqrun bug.")
    return y
