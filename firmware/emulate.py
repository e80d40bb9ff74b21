"""hqrun's exact fixed-point inference of the IR, in integers.

Why: this is the reference the C simulation must equal bit for bit, and it must itself equal the
PyTorch model on the fixed-point grid. Doing it in integer codes (numpy int64; every width is
capped so sums cannot overflow) makes "equal" mean equal, not "close": no float rounding can hide
in it. Rounding and overflow follow ``ap_fixed`` (AP_TRN / AP_RND / AP_RND_CONV, AP_SAT /
AP_SAT_SYM / AP_WRAP), exactly as a cast does in the generated C++.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hqrun.errors import FirmwareError
from hqrun.quantizers.fixedpoint import FixedPointType
from hqrun.quantizers.grid import FixedPointGrid

from .ir import FirmwareIR, IRLayer

__all__ = ["requantize", "requantize_grid", "quantize_input", "emulate", "Emulation"]


def requantize(codes: np.ndarray, frac_from: int, t: FixedPointType) -> np.ndarray:
    """Cast integer codes with ``frac_from`` fractional bits to type ``t`` (its rounding/overflow).

    This is what an ``ap_fixed`` assignment does: drop low bits with the target's rounding mode,
    then fold high bits with its overflow mode.
    """
    n = np.asarray(codes, dtype=np.int64)
    shift = frac_from - t.fractional
    if shift <= 0:
        q = n << (-shift)
    else:
        q = n >> shift  # arithmetic shift: floor
        r = n - (q << shift)
        half = np.int64(1) << (shift - 1)
        if t.rounding == "RND":
            q = q + (r >= half)
        elif t.rounding == "RND_CONV":
            q = q + ((r > half) | ((r == half) & ((q & 1) == 1)))
        elif t.rounding != "TRN":
            raise FirmwareError(f"rounding mode {t.rounding} is not supported by the emulator.")
    lo, hi = t.min_code, t.max_code
    if t.overflow == "WRAP":
        span = np.int64(1) << t.width
        base = np.int64(-(1 << (t.width - 1))) if t.signed else np.int64(0)
        q = ((q - base) % span) + base
    else:
        q = np.clip(q, lo, hi)
    return q.astype(np.int64)


def requantize_grid(codes: np.ndarray, frac_from: int, grid: FixedPointGrid, declared: FixedPointType,
                    where: str) -> np.ndarray:
    """Cast each element to its own format of a per-element grid (``FixedPointGrid``).

    The result is counted in ``declared``'s LSB (the layer's one ``out_type``, the grid's union),
    so the next layer reads one fixed-point array as before; elements of width ``<= 0`` are 0.
    """
    # C order on both sides: a conv's codes arrive as a transposed view, and zeros_like would
    # copy that layout, so the flat view written below would be a copy and the casts lost
    n = np.ascontiguousarray(codes, dtype=np.int64)
    g = grid.broadcast_to(tuple(n.shape[1:]))
    out = np.zeros(n.shape, dtype=np.int64)
    keys = np.stack([np.asarray(g.signed, dtype=np.int64), np.asarray(g.integer, dtype=np.int64),
                     np.asarray(g.fractional, dtype=np.int64)], axis=-1).reshape(-1, 3)
    flat_in, flat_out = n.reshape(n.shape[0], -1), out.reshape(n.shape[0], -1)
    for signed, integer, frac in np.unique(keys, axis=0):
        if integer + frac <= 0:
            continue  # an empty element: always 0
        if frac > declared.fractional:
            raise FirmwareError(f"{where}: an element of its per-element grid has {frac} fractional "
                                f"bits, more than its declared type {declared.hls_name}; declare the "
                                "grid's union as the layer's out_type.")
        cols = np.flatnonzero(np.all(keys == (signed, integer, frac), axis=1))
        t = FixedPointType(int(integer + frac), int(integer), bool(signed), grid.rounding, grid.overflow)
        flat_out[:, cols] = requantize(flat_in[:, cols], frac_from, t) << (declared.fractional - int(frac))
    return flat_out.reshape(n.shape)


def _cast_result(codes: np.ndarray, frac_from: int, layer: IRLayer) -> np.ndarray:
    """The layer's result cast: its ``out_type``, or element by element its ``out_grid``."""
    if layer.out_grid is None:
        return requantize(codes, frac_from, layer.out_type)
    return requantize_grid(codes, frac_from, layer.out_grid, layer.out_type, f"layer {layer.name!r}")


def quantize_input(x: np.ndarray, t: FixedPointType, grid: FixedPointGrid | None = None) -> np.ndarray:
    """Float inputs → integer codes of ``t`` (the cast hls4ml's bridge performs on its inputs);
    with a per-element ``grid`` each feature is first put on its own format."""
    v = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        raise FirmwareError("input samples contain NaN or inf; clean the data before export.")
    if grid is not None:
        values = grid.broadcast_to(v.shape[1:]).quantize(v).numpy()
        return np.round(np.ldexp(values, t.fractional)).astype(np.int64)
    scaled = np.ldexp(v, t.fractional)
    if t.rounding == "RND_CONV":
        n = np.round(scaled)
    elif t.rounding == "RND":
        n = np.floor(scaled + 0.5)
    else:
        n = np.floor(scaled)
    return requantize(n.astype(np.int64), t.fractional, t)


def to_values(codes: np.ndarray, t: FixedPointType) -> np.ndarray:
    """Float64 values of codes (exact for widths ≤ 53, which the IR enforces)."""
    return np.ldexp(np.asarray(codes, dtype=np.float64), -t.fractional)


@dataclass
class Emulation:
    """Per-layer outputs of one emulation: integer codes (fixed-point layers) or floats (softmax)."""

    ir: FirmwareIR
    codes: dict[str, np.ndarray]
    floats: dict[str, np.ndarray]

    def values(self, name: str) -> np.ndarray:
        """Output values of layer ``name`` as float64."""
        if name in self.floats:
            return self.floats[name]
        layer = next(layer for layer in self.ir.layers if layer.name == name)
        return to_values(self.codes[name], layer.out_type)  # type: ignore[arg-type]

    def last_quantized(self) -> np.ndarray:
        """Codes at the bit-exact check point (output of the last fixed-point layer)."""
        return self.codes[self.ir.last_quantized().name]


def _linear(x: np.ndarray, layer: IRLayer, frac_x: int) -> np.ndarray:
    """Dense or conv: exact products, exact bias, summed in the (never-overflowing) accumulator."""
    acc_t = layer.accum_type
    w_t = layer.weight_type
    f_prod = frac_x + w_t.fractional
    if acc_t.fractional < f_prod:
        raise FirmwareError(f"layer {layer.name!r}: accumulator {acc_t.hls_name} would round "
                            "products; the IR must size it exactly.")
    w = layer.weight
    if layer.op == "dense":
        acc = x @ w.T
        extra: tuple[int, ...] = ()
    else:
        nd = w.ndim - 2
        stride = layer.attrs.get("stride", [1] * nd)
        kernel = w.shape[2:]
        win = np.lib.stride_tricks.sliding_window_view(x, kernel, axis=tuple(range(2, 2 + nd)))
        sl = (slice(None), slice(None)) + tuple(slice(None, None, s) for s in stride)
        win = win[sl]  # (N, C, *out_spatial, *kernel)
        axes_x = [1] + list(range(2 + nd, 2 + 2 * nd))
        axes_w = [1] + list(range(2, 2 + nd))
        acc = np.tensordot(win, w, axes=(axes_x, axes_w))  # (N, *out_spatial, O)
        acc = np.moveaxis(acc, -1, 1)
        extra = (1,) * nd
    acc = acc << (acc_t.fractional - f_prod)
    if layer.bias is not None:
        b = layer.bias << (acc_t.fractional - layer.bias_type.fractional)
        acc = acc + b.reshape((1, -1) + extra)
    acc = requantize(acc, acc_t.fractional, acc_t)
    return _cast_result(acc, acc_t.fractional, layer)


def emulate(ir: FirmwareIR, x: np.ndarray) -> Emulation:
    """Run the IR on a batch ``x`` (float values, channels-first, shape ``(N, *input_shape)``)."""
    x = np.asarray(x, dtype=np.float64)
    if tuple(x.shape[1:]) != tuple(ir.input_shape):
        raise FirmwareError(f"samples have shape {tuple(x.shape[1:])}, the model expects "
                            f"{tuple(ir.input_shape)}.")
    codes: dict[str, np.ndarray] = {}
    floats: dict[str, np.ndarray] = {}
    cur = quantize_input(x, ir.input_type, ir.input_grid)
    cur_t: FixedPointType = ir.input_type
    codes[ir.layers[0].name] = cur
    for layer in ir.layers[1:]:
        if layer.op in ("dense", "conv1d", "conv2d"):
            cur = _linear(cur, layer, cur_t.fractional)
        elif layer.op == "relu":
            cur = _cast_result(np.maximum(cur, 0), cur_t.fractional, layer)
        elif layer.op == "flatten":
            if layer.attrs.get("channels_last") and cur.ndim > 2:
                cur = np.moveaxis(cur, 1, -1)
            cur = cur.reshape(cur.shape[0], -1)
        elif layer.op == "avgpool2d":
            ph, pw = layer.attrs["pool"]
            n, c, h, w = cur.shape
            ho, wo = h // ph, w // pw
            blocks = cur[:, :, : ho * ph, : wo * pw].reshape(n, c, ho, ph, wo, pw)
            total = blocks.sum(axis=(3, 5))  # exact; dividing by the po2 area = more frac bits
            k = (ph * pw).bit_length() - 1
            cur = _cast_result(total, cur_t.fractional + k, layer)
        elif layer.op in ("zeropad1d", "zeropad2d"):
            cur = np.pad(cur, [(0, 0), (0, 0)] + [tuple(p) for p in layer.attrs["pads"]])
        elif layer.op == "softmax":
            v = to_values(cur, cur_t)
            e = np.exp(v - v.max(axis=-1, keepdims=True))
            floats[layer.name] = e / e.sum(axis=-1, keepdims=True)
            continue
        else:
            raise FirmwareError(f"IR op {layer.op!r} of layer {layer.name!r} has no emulation.")
        cur_t = layer.out_type  # type: ignore[assignment]
        codes[layer.name] = cur
    return Emulation(ir, codes, floats)
