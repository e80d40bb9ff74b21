"""Fixed-point IR: a trained hqrun model as a list of integer-arithmetic layers.

Why an IR: the emulator (hqrun's own exact inference), the hls4ml writer and the report must all
read *the same* numbers — integer weight codes, their types, accumulator and result types — so
they cannot drift apart. The IR is built once from the model (weights read through the layers'
``quantized_*()`` methods, types asked of the quantizers and of the shared type inference), then
handed to every later stage. Anything that cannot be expressed on a fixed-point grid is refused
here with a :class:`~hqrun.errors.FirmwareError` naming the layer and the fix, before any file is
written.

Layout follows PyTorch: activations channels-first, dense weights ``(out, in)``, conv weights
``(out, in, *kernel)``. Values of a tensor of type ``t`` are ``codes * 2**-t.fractional``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from hqrun.errors import FirmwareError
from hqrun.quantizers.fixedpoint import FixedPointType

__all__ = ["IRLayer", "FirmwareIR", "build_ir", "exact_type_of_values", "DEFAULT_INPUT_TYPE"]

#: Input type used when the model has no input quantizer (hls4ml's customary default).
DEFAULT_INPUT_TYPE = FixedPointType(16, 6, True, "RND_CONV", "SAT")

#: Widest accumulator accepted: its values must survive the float64 trace of the C simulation.
MAX_ACCUM_WIDTH = 53

#: Declared weight types wider than this are replaced by the tightest type of the actual values.
MAX_PARAM_WIDTH = 32


@dataclass
class IRLayer:
    """One layer of the fixed-point IR.

    ``op`` is one of ``input``, ``dense``, ``conv1d``, ``conv2d``, ``relu``, ``flatten``,
    ``avgpool2d``, ``zeropad1d``, ``zeropad2d``, ``softmax``. ``name`` is the hqrun layer name (hls4ml keeps it,
    so traces line up); ``sources`` lists every hqrun layer folded into this one.
    """

    name: str
    op: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    out_type: FixedPointType | None
    in_type: FixedPointType | None = None
    weight: np.ndarray | None = None  # int64 codes
    bias: np.ndarray | None = None  # int64 codes
    weight_type: FixedPointType | None = None
    bias_type: FixedPointType | None = None
    accum_type: FixedPointType | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (types by HLS name, no weight arrays)."""
        out: dict[str, Any] = {"name": self.name, "op": self.op, "in_shape": list(self.in_shape),
                               "out_shape": list(self.out_shape), "sources": list(self.sources)}
        for key in ("in_type", "weight_type", "bias_type", "accum_type", "out_type"):
            t = getattr(self, key)
            out[key] = None if t is None else t.hls_name
        if self.weight is not None:
            out["n_weights"] = int(self.weight.size)
            out["n_zero_weights"] = int((self.weight == 0).sum())
        out.update({k: v for k, v in self.attrs.items() if isinstance(v, (int, float, str, list, tuple))})
        return out


@dataclass
class FirmwareIR:
    """The whole model: layers in order; ``layers[0]`` is the input layer."""

    layers: list[IRLayer]
    policy: str = "exact"

    @property
    def input_type(self) -> FixedPointType:
        return self.layers[0].out_type  # type: ignore[return-value]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.layers[0].out_shape

    def last_quantized(self) -> IRLayer:
        """The last layer whose output lies on a fixed-point grid (the bit-exact check point)."""
        for layer in reversed(self.layers):
            if layer.out_type is not None:
                return layer
        raise FirmwareError("the model has no fixed-point layer at all; nothing to verify.")

    def has_softmax(self) -> bool:
        return any(layer.op == "softmax" for layer in self.layers)

    def to_dict(self) -> list[dict[str, Any]]:
        return [layer.to_dict() for layer in self.layers]


# ----------------------------------------------------------------------------- type helpers
def _quantizer_name(q: Any) -> str:
    return str(q).split("(")[0].strip()


def exact_type_of_values(values: np.ndarray, max_width: int = 32) -> FixedPointType | None:
    """Smallest signed ``ap_fixed`` that holds every value exactly, or None if none ≤ max_width.

    Used for power-of-two scaled weights (``alpha="auto_po2"``) whose grid depends on the trained
    values rather than on the quantizer's arguments.
    """
    v = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        return None
    nz = v[v != 0]
    if nz.size == 0:
        return FixedPointType(2, 1, True, "TRN", "WRAP")
    frac = 0
    while frac <= 64:
        scaled = np.ldexp(v, frac)
        if np.all(scaled == np.floor(scaled)):
            break
        frac += 1
    else:
        return None
    # Allow negative fractional bits: strip trailing zero bits common to all codes.
    codes = np.ldexp(v, frac).astype(np.int64)
    while frac > -64 and np.all(codes % 2 == 0) and np.any(codes != 0):
        codes //= 2
        frac -= 1
    lo, hi = int(codes.min()), int(codes.max())
    width = 1
    while not (-(2 ** (width - 1)) <= lo and hi <= 2 ** (width - 1) - 1):
        width += 1
    width = max(width, 2)
    if width > max_width:
        return None
    return FixedPointType(width, width - frac, True, "TRN", "WRAP")


def to_codes(values: Any, t: FixedPointType, what: str) -> np.ndarray:
    """Integer codes of values that must already lie on ``t``'s grid (else refuse: not exact)."""
    v = values.detach().to(torch.float64).cpu().numpy() if isinstance(values, torch.Tensor) \
        else np.asarray(values, dtype=np.float64)
    scaled = np.ldexp(v, t.fractional)
    if scaled.size and np.max(np.abs(scaled)) >= 2.0**62:
        raise FirmwareError(f"{what} needs more than 62 bits in type {t.hls_name}; use a narrower "
                            "quantizer.")
    if not np.all(np.isfinite(scaled)) or not np.all(scaled == np.round(scaled)):
        raise FirmwareError(
            f"{what} has values that are not on the grid of its type {t.hls_name}, so no firmware "
            "can reproduce them exactly. Give it a quantizer whose outputs lie on one fixed-point "
            "grid (e.g. quantized_bits(bits,integer,alpha=1))."
        )
    codes = np.round(scaled).astype(np.int64)
    if codes.size and (codes.min() < t.min_code or codes.max() > t.max_code):
        raise FirmwareError(
            f"{what} has values outside the range of its type {t.hls_name}; widen the quantizer."
        )
    return codes


def _param_type(layer_name: str, slot: str, q: Any, values: torch.Tensor) -> FixedPointType:
    """Fixed-point type of a weight/bias slot, or a refusal naming what to change."""
    where = f"layer {layer_name!r} ({slot} quantizer {q})"
    if q is None:
        raise FirmwareError(
            f"layer {layer_name!r} has a float {slot} (no {slot} quantizer), which firmware cannot "
            f"reproduce bit for bit. Give '{slot}' a quantizer in the plan, e.g. "
            f"{layer_name}: {{{slot}: \"quantized_bits(8,3,alpha=1)\"}}."
        )
    if getattr(q, "is_stochastic", False):
        raise FirmwareError(
            f"{where} is stochastic; its inference output is random and cannot be frozen into "
            "firmware. Use its deterministic counterpart (binary, ternary, quantized_bits)."
        )
    t = q.fixed_point_type() if hasattr(q, "fixed_point_type") else None
    if t is None:
        alpha = getattr(q, "alpha", None)
        derived = exact_type_of_values(values.detach().to(torch.float64).cpu().numpy())
        if alpha == "auto_po2" and derived is not None:
            return derived
        raise FirmwareError(
            f"{where} has no fixed-point grid (alpha={alpha!r} gives per-channel scales that are "
            "not powers of two), so the firmware cannot reproduce it exactly. Use alpha=1 or "
            "alpha=\"auto_po2\" in the plan for this layer and retrain."
        )
    if t.width > MAX_PARAM_WIDTH:
        # e.g. quantized_po2(4): its declared grid spans 2^-64..1, the trained values far less.
        tight = exact_type_of_values(values.detach().to(torch.float64).cpu().numpy())
        if tight is not None:
            return tight
    return t


def _stochastic_guard(layer_name: str, q: Any) -> None:
    if q is not None and getattr(q, "is_stochastic", False):
        raise FirmwareError(
            f"layer {layer_name!r} uses the stochastic quantizer {q}; its inference output is "
            "random and cannot be frozen into firmware. Use a deterministic quantizer instead "
            "(e.g. quantized_relu / quantized_bits)."
        )


# ----------------------------------------------------------------------------- accumulators
def exact_accum_type(x_type: FixedPointType, w: np.ndarray, w_type: FixedPointType,
                     b: np.ndarray | None, b_type: FixedPointType | None,
                     reduce_axes: tuple[int, ...]) -> FixedPointType:
    """Narrowest accumulator that can never overflow for these weights and this input range.

    Sized from the actual weight codes (Σ max(w·x) over the input range per output), not just
    from widths — the 'exact' policy of the shared type inference.
    """
    frac = x_type.fractional + w_type.fractional
    if b is not None and b_type is not None:
        frac = max(frac, b_type.fractional)
    xmin, xmax = x_type.min_code, x_type.max_code
    shift = frac - (x_type.fractional + w_type.fractional)
    pos = np.where(w > 0, w, 0).sum(axis=reduce_axes).astype(object)
    neg = np.where(w < 0, w, 0).sum(axis=reduce_axes).astype(object)
    hi = (pos * xmax + neg * xmin) * (1 << shift)
    lo = (pos * xmin + neg * xmax) * (1 << shift)
    if b is not None and b_type is not None:
        bs = b.astype(object) * (1 << (frac - b_type.fractional))
        hi = hi + bs
        lo = lo + bs
    hmax = max(int(np.max(hi)), 0) if hi.size else 0
    lmin = min(int(np.min(lo)), 0) if lo.size else 0
    width = 1
    while not (-(1 << (width - 1)) <= lmin and hmax <= (1 << (width - 1)) - 1):
        width += 1
    width = max(width, 2)
    return FixedPointType(width, width - frac, True, "TRN", "WRAP")


def _fits(inner: FixedPointType, outer: FixedPointType) -> bool:
    """True when every value of ``inner`` is exactly representable in ``outer``."""
    if outer.fractional < inner.fractional:
        return False
    shift = outer.fractional - inner.fractional
    return (inner.min_code << shift) >= outer.min_code and (inner.max_code << shift) <= outer.max_code


def _check_accum(layer: IRLayer, exact: FixedPointType, given: FixedPointType | None) -> FixedPointType:
    """Prefer the shared type inference's accumulator when it is exact and not over-wide.

    The IR's own sizing (from the weight codes actually exported) is the fallback, and the
    source is recorded in ``attrs['accum_source']`` so the report says which one was built.
    """
    layer.attrs["accum_source"] = "ir"
    if given is None or given.width > MAX_ACCUM_WIDTH:
        return exact
    if not _fits(exact, given):
        raise FirmwareError(
            f"layer {layer.name!r}: the shared type inference gave accumulator {given.hls_name}, "
            f"which cannot hold every sum of this layer exactly (needs {exact.hls_name}). "
            "Use the type inference's policy='exact' for firmware."
        )
    layer.attrs["accum_source"] = "typeinfer"
    # Same value set, but keep HLS's cheap default modes: no rounding/overflow ever happens.
    return FixedPointType(given.width, given.integer, given.signed, "TRN", "WRAP")


# ----------------------------------------------------------------------------- model walk
def _children(model: nn.Module) -> list[tuple[str, nn.Module]]:
    kids = list(model.named_children())
    if not kids:
        raise FirmwareError(
            f"{type(model).__name__} has no child layers; firmware export expects an "
            "hqrun.models.QSequential (or nn.Sequential) of hqrun quantized layers."
        )
    return kids


def _typeinfer(model: nn.Module, input_type: FixedPointType) -> dict[str, Any]:
    """Per-layer types from the shared type inference (``hqrun.quantizers.typeinfer``), if present."""
    try:
        from hqrun.quantizers import typeinfer  # type: ignore[attr-defined]
    except ImportError:
        return {}
    try:
        rows = typeinfer.infer_types(model, input_type, policy="exact")
    except Exception:  # noqa: BLE001 - IR computes its own exact types and checks them
        return {}
    out = {}
    for row in rows:
        name = getattr(row, "name", None) or getattr(row, "layer", None)
        if name is not None:
            out[str(name)] = row
    return out


def _input_quant_type(layer_name: str, q: Any) -> FixedPointType:
    _stochastic_guard(layer_name, q)
    t = q.fixed_point_type() if hasattr(q, "fixed_point_type") else None
    if t is None:
        raise FirmwareError(
            f"input quantizer {q} of layer {layer_name!r} has no fixed-point type; use "
            "quantized_bits(bits,integer) for the input."
        )
    return t


def _act_layer(name: str, act: Any, shape: tuple[int, ...], prev: IRLayer,
               is_last: bool) -> IRLayer | None:
    """IR for an activation (a quantizer or a float function); None when it is a no-op."""
    if act is None:
        return None
    cls = type(act).__name__
    if isinstance(act, nn.ReLU):
        return IRLayer(name, "relu", shape, shape, prev.out_type, prev.out_type, sources=[name])
    if isinstance(act, nn.Softmax):
        if not is_last:
            raise FirmwareError(
                f"layer {name!r} is a softmax in the middle of the model; hls4ml approximates "
                "softmax with tables, so only a final softmax is accepted (it is checked separately)."
            )
        return IRLayer(name, "softmax", shape, shape, None, prev.out_type, sources=[name])
    if not hasattr(act, "fixed_point_type"):
        raise FirmwareError(
            f"layer {name!r} applies the float activation {cls}, which firmware cannot reproduce "
            "exactly. Quantize it (quantized_relu for ReLU) or remove it."
        )
    _stochastic_guard(name, act)
    qname = _quantizer_name(act)
    t = act.fixed_point_type()
    if qname == "quantized_relu":
        if getattr(act, "negative_slope", 0) not in (0, 0.0, None) or getattr(act, "use_sigmoid", 0):
            raise FirmwareError(
                f"layer {name!r} uses {act}; a leaky or sigmoid-shaped quantized_relu is not "
                "reproduced exactly by hls4ml. Use quantized_relu(bits,integer) without "
                "negative_slope/use_sigmoid."
            )
        if t is None:
            raise FirmwareError(f"layer {name!r}: {act} reports no fixed-point type; cannot export.")
        return IRLayer(name, "relu", shape, shape, t, prev.out_type, sources=[name])
    if qname == "quantized_bits":
        if t is None:
            raise FirmwareError(
                f"layer {name!r}: activation {act} has no fixed-point grid (alpha scale); use "
                "alpha=1 for activation quantizers."
            )
        if prev.op not in ("dense", "conv1d", "conv2d") or prev.out_type != prev.accum_type:
            raise FirmwareError(
                f"layer {name!r}: a quantized_bits activation is only exported right after a "
                "dense/conv layer (it becomes that layer's result type); here it follows "
                f"{prev.name!r}. Move it or use quantized_relu."
            )
        return IRLayer(name, "quant", shape, shape, t, prev.out_type, sources=[name])
    raise FirmwareError(
        f"layer {name!r} uses the activation quantizer {act}, which hls4ml implements with lookup "
        "tables or cannot express, so it would not be bit-exact. Use quantized_relu(bits,integer) "
        "or quantized_bits(bits,integer) for this layer."
    )


def _dense_like(name: str, layer: nn.Module, prev: IRLayer, op: str, shape_in: tuple[int, ...],
                inferred: Any) -> IRLayer:
    kq = getattr(layer, "kernel_quantizer", None)
    bq = getattr(layer, "bias_quantizer", None)
    _stochastic_guard(name, kq)
    _stochastic_guard(name, bq)
    with torch.no_grad():
        kernel = layer.quantized_kernel()
        bias = layer.quantized_bias() if hasattr(layer, "quantized_bias") else None
    w_type = _param_type(name, "kernel", kq, kernel)
    w = to_codes(kernel, w_type, f"kernel of layer {name!r}")
    b = b_type = None
    if bias is not None:
        b_type = _param_type(name, "bias", bq, bias)
        b = to_codes(bias, b_type, f"bias of layer {name!r}")
    x_type = prev.out_type
    if x_type is None:
        raise FirmwareError(f"layer {name!r} follows a layer with no fixed-point output.")
    reduce_axes = tuple(range(1, w.ndim))
    layer_ir = IRLayer(name, op, shape_in, (), None, x_type, w, b, w_type, b_type, sources=[name])
    exact = exact_accum_type(x_type, w, w_type, b, b_type, reduce_axes)
    given = getattr(inferred, "accumulator", None) if inferred is not None else None
    layer_ir.accum_type = _check_accum(layer_ir, exact, given)
    if layer_ir.accum_type.width > MAX_ACCUM_WIDTH:
        raise FirmwareError(
            f"layer {name!r} needs a {layer_ir.accum_type.width}-bit accumulator "
            f"({layer_ir.accum_type.hls_name}); hqrun's firmware supports at most "
            f"{MAX_ACCUM_WIDTH} bits. Use narrower input/kernel quantizers."
        )
    layer_ir.out_type = layer_ir.accum_type
    return layer_ir


def _conv_attrs(name: str, layer: nn.Module, nd: int) -> dict[str, Any]:
    def get(*names: str, default: Any = None) -> Any:
        for n in names:
            if hasattr(layer, n):
                return getattr(layer, n)
        return default

    def tup(v: Any) -> tuple[int, ...]:
        return (int(v),) * nd if isinstance(v, (int, np.integer)) else tuple(int(u) for u in v)

    stride = tup(get("strides", "stride", default=1))
    dilation = tup(get("dilation_rate", "dilation", default=1))
    padding = get("padding", default="valid")
    groups = int(get("groups", default=1) or 1)
    if groups != 1:
        raise FirmwareError(f"layer {name!r} is a grouped convolution; hls4ml's PyTorch front end "
                            "supports groups=1 only.")
    if any(d != 1 for d in dilation):
        raise FirmwareError(f"layer {name!r} uses dilation {dilation}; hls4ml supports dilation 1 "
                            "only. Use dilation_rate=1.")
    return {"stride": stride, "padding": padding}


def _pads(padding: Any, size: tuple[int, ...], kernel: tuple[int, ...],
          stride: tuple[int, ...]) -> list[tuple[int, int]]:
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return [(0, 0)] * len(size)
        if mode != "same":
            raise FirmwareError(f"padding {padding!r} is not supported; use 'valid' or 'same'.")
        pads = []
        for s, k, st in zip(size, kernel, stride):
            out = -(-s // st)
            total = max((out - 1) * st + k - s, 0)
            pads.append((total // 2, total - total // 2))
        return pads
    p = (int(padding),) * len(size) if isinstance(padding, (int, np.integer)) else tuple(padding)
    return [(int(v), int(v)) for v in p]


def _conv(name: str, layer: nn.Module, prev: IRLayer, nd: int, inferred: Any) -> list[IRLayer]:
    attrs = _conv_attrs(name, layer, nd)
    out: list[IRLayer] = []
    shape = prev.out_shape
    if len(shape) != nd + 1:
        raise FirmwareError(f"layer {name!r} ({nd}-D conv) got input shape {shape}; expected "
                            f"(channels, {'length' if nd == 1 else 'height, width'}).")
    ir = _dense_like(name, layer, prev, f"conv{nd}d", shape, inferred)
    kernel = tuple(ir.weight.shape[2:])
    pads = _pads(attrs["padding"], shape[1:], kernel, attrs["stride"])
    if any(p != (0, 0) for p in pads):
        padded = (shape[0],) + tuple(s + a + b for s, (a, b) in zip(shape[1:], pads))
        pad_layer = IRLayer(f"{name}_pad", f"zeropad{nd}d", shape, padded, prev.out_type,
                            prev.out_type, attrs={"pads": pads}, sources=[name])
        out.append(pad_layer)
        shape = padded
    spatial = tuple((s - k) // st + 1 for s, k, st in zip(shape[1:], kernel, attrs["stride"]))
    ir.in_shape = shape
    ir.out_shape = (ir.weight.shape[0],) + spatial
    ir.attrs.update({"stride": list(attrs["stride"]), "kernel": list(kernel)})
    out.append(ir)
    return out


def _bn_fold(name: str, bn: nn.Module, prev: IRLayer) -> None:
    """Fold an eval-mode batch norm into the previous dense/conv layer, only when exact.

    BN in eval is per-channel affine ``y = s·x + t``; ``s`` and ``t`` are read off the layer
    itself (so any parameterisation works). Folding is exact only when every ``s`` is a power
    of two and ``t`` lies on a short fixed-point grid; anything else is refused — the exact way
    to deploy BN is QDenseBatchnorm, whose folded weights are themselves quantized.
    """
    if prev.op not in ("dense", "conv1d", "conv2d") or prev.out_type != prev.accum_type:
        raise FirmwareError(
            f"batch norm {name!r} follows {prev.name!r}; it can only be folded into a directly "
            "preceding dense/conv layer. Use QDenseBatchnorm for deployable batch norm."
        )
    c = prev.weight.shape[0]
    shape = (2, c) + (1,) * (len(prev.out_shape) - 1)
    probe = torch.zeros(shape, dtype=torch.float32)
    probe[1] = 1.0
    was = bn.training
    bn.eval()
    with torch.no_grad():
        y = bn(probe).to(torch.float64).cpu().numpy().reshape(2, c, -1)[:, :, 0]
    bn.train(was)
    t, s = y[0], y[1] - y[0]
    s_exp = np.round(np.log2(np.abs(s) + (s == 0))).astype(int)
    po2 = np.all(np.abs(s) == np.ldexp(1.0, s_exp)) and np.all(s > 0)
    t_type = exact_type_of_values(t, max_width=24)
    if not po2 or t_type is None:
        raise FirmwareError(
            f"batch norm {name!r} has scales gamma/sqrt(var+eps) that are not powers of two (or "
            "an offset off any short fixed-point grid), so folding it into "
            f"{prev.name!r} would change the results. Use QDenseBatchnorm (batch norm folded into "
            "the quantized kernel, as QKeras deploys it) for this layer."
        )
    # New weights w·s (exact: power of two), bias b·s + t, on a common grid.
    shift = s_exp.reshape((c,) + (1,) * (prev.weight.ndim - 1))
    wf = prev.weight.astype(np.float64) * np.ldexp(1.0, -prev.weight_type.fractional) * np.ldexp(1.0, shift)
    bf = np.zeros(c) if prev.bias is None else prev.bias * np.ldexp(1.0, -prev.bias_type.fractional)
    bf = bf * np.ldexp(1.0, s_exp) + t
    w_type = exact_type_of_values(wf, max_width=40)
    b_type = exact_type_of_values(bf, max_width=40)
    if w_type is None or b_type is None:
        raise FirmwareError(f"batch norm {name!r} cannot be folded exactly into {prev.name!r}; "
                            "use QDenseBatchnorm.")
    prev.weight = to_codes(wf, w_type, f"folded kernel of {prev.name!r}")
    prev.bias = to_codes(bf, b_type, f"folded bias of {prev.name!r}")
    prev.weight_type, prev.bias_type = w_type, b_type
    prev.accum_type = exact_accum_type(prev.in_type, prev.weight, w_type, prev.bias, b_type,
                                       tuple(range(1, prev.weight.ndim)))
    prev.out_type = prev.accum_type
    prev.sources.append(name)


def _avgpool(name: str, layer: nn.Module, prev: IRLayer) -> IRLayer:
    """Average pooling is exact when the pool area is a power of two: sum, then shift.

    hls4ml sums in its accumulator type and divides by the area in that type; giving it
    log2(area) more fractional bits makes the division exact, which is what the model computes
    (float mean, times ``area * Q(1/area)`` = 1 when the average quantizer holds 1/area exactly).
    """
    area = int(np.prod(layer.pool_size))
    k = area.bit_length() - 1
    if area != 1 << k:
        raise FirmwareError(
            f"layer {name!r} averages over {area} values, not a power of two, so its division is "
            "not exact in fixed point. Use a 2x2 (or 4x4...) pool_size."
        )
    with torch.no_grad():
        r = float(layer.quantized_reciprocal())
    if r != 1.0 / area:
        raise FirmwareError(
            f"layer {name!r}: its average quantizer turns 1/{area} into {r}, which hls4ml's "
            "average pooling does not reproduce. Use an average_quantizer that holds 1/area "
            "exactly (or none)."
        )
    if tuple(layer.strides) != tuple(layer.pool_size):
        raise FirmwareError(f"layer {name!r}: strides {tuple(layer.strides)} differ from pool_size "
                            f"{tuple(layer.pool_size)}; hqrun exports non-overlapping pooling only.")
    x_t = prev.out_type
    c, h, w = prev.out_shape
    ph, pw = layer.pool_size
    out_shape = (c, h // ph, w // pw)
    # Sum of `area` inputs needs k more integer bits; the division k more fractional bits.
    acc = FixedPointType(x_t.width + 2 * k, x_t.integer + k, x_t.signed, "TRN", "WRAP")
    out = FixedPointType(x_t.width + k, x_t.integer, x_t.signed, "TRN", "WRAP")
    return IRLayer(name, "avgpool2d", prev.out_shape, out_shape, out, x_t, accum_type=acc,
                   attrs={"pool": [ph, pw]}, sources=[name])


_SUPPORTED = ("QDense", "QDenseBatchnorm", "QConv1D", "QConv2D", "QActivation", "QInput",
              "QBatchNormalization", "QAveragePooling2D", "Flatten")


def precheck(model: nn.Module) -> list[str]:
    """Every quantizer/layer problem of the model at once (the walk itself stops at the first).

    A searched plan can hold several non-deployable choices; naming them all in one error saves
    the user one retrain per problem.
    """
    problems: list[str] = []
    dummy_t = FixedPointType(16, 6)
    for name, layer in model.named_children():
        cls = type(layer).__name__
        if cls not in _SUPPORTED and not isinstance(
                layer, (nn.ReLU, nn.Softmax, nn.Flatten, nn.Identity, nn.Dropout,
                        nn.modules.batchnorm._BatchNorm)):
            problems.append(f"layer {name!r} ({cls}) is not supported")
            continue
        try:
            if hasattr(layer, "quantized_kernel") and cls != "QBatchNormalization":
                with torch.no_grad():
                    _param_type(name, "kernel", getattr(layer, "kernel_quantizer", None),
                                layer.quantized_kernel())
                    bias = layer.quantized_bias() if hasattr(layer, "quantized_bias") else None
                    if bias is not None:
                        _param_type(name, "bias", getattr(layer, "bias_quantizer", None), bias)
            act = getattr(layer, "activation", None)
            if cls == "QInput":
                if act is not None:
                    _input_quant_type(name, act)
            elif act is not None and not (cls == "QActivation" and getattr(layer, "float_function", None) == "softmax"):
                fake = IRLayer("prev", "dense", (1,), (1,), dummy_t, accum_type=dummy_t)
                _act_layer(name, act, (1,), fake, is_last=True)
        except FirmwareError as err:
            problems.append(str(err))
    return problems


def build_ir(model: nn.Module, input_shape: Sequence[int],
             input_type: FixedPointType | None = None) -> FirmwareIR:
    """Read a trained hqrun model into the fixed-point IR, refusing whatever is not exact.

    Args:
        model: an ``hqrun.models.QSequential`` (or any ``nn.Sequential`` of hqrun layers).
        input_shape: one sample's shape, channels-first (e.g. ``(16,)`` or ``(1, 8, 8)``).
        input_type: fixed-point type of the (already quantized) inputs when the model's own
            input layer has no quantizer; default ``ap_fixed<16,6,AP_RND_CONV,AP_SAT>``.
    """
    model.eval()
    kids = _children(model)
    problems = precheck(model)
    if len(problems) > 1:
        listed = " ".join(f"({i}) {p}" for i, p in enumerate(problems, 1))
        raise FirmwareError(f"the model has {len(problems)} layers the firmware cannot reproduce "
                            f"exactly: {listed}")
    shape = tuple(int(s) for s in input_shape)
    in_t = input_type or DEFAULT_INPUT_TYPE
    start = 0
    first_name, first = kids[0]
    if type(first).__name__ == "QInput" or first_name == "input":
        q = getattr(first, "activation", None)
        if q is not None:
            in_t = _input_quant_type(first_name, q)
        start = 1
    layers: list[IRLayer] = [IRLayer("input", "input", shape, shape, in_t, sources=[first_name] if start else [])]
    inferred = _typeinfer(model, in_t)
    n = len(kids)
    for idx in range(start, n):
        name, layer = kids[idx]
        prev = layers[-1]
        cls = type(layer).__name__
        is_last = idx == n - 1
        shape = prev.out_shape
        if cls in ("QDense", "QDenseBatchnorm") or isinstance(layer, nn.Linear) and hasattr(layer, "quantized_kernel"):
            if len(shape) != 1:
                raise FirmwareError(f"layer {name!r} (dense) got a {len(shape)}-D input {shape}; "
                                    "add a Flatten layer before it.")
            ir = _dense_like(name, layer, prev, "dense", shape, inferred.get(name))
            ir.out_shape = (int(ir.weight.shape[0]),)
            if ir.weight.shape[1] != shape[0]:
                raise FirmwareError(f"layer {name!r} expects {ir.weight.shape[1]} inputs, gets {shape[0]}.")
            layers.append(ir)
            act = _act_layer(f"{name}_act", getattr(layer, "activation", None), ir.out_shape, ir, is_last)
            _append_act(layers, act)
        elif cls in ("QConv1D", "QConv2D"):
            nd = 1 if cls == "QConv1D" else 2
            convs = _conv(name, layer, prev, nd, inferred.get(name))
            layers.extend(convs)
            act = _act_layer(f"{name}_act", getattr(layer, "activation", None), convs[-1].out_shape,
                             convs[-1], is_last)
            _append_act(layers, act)
        elif cls == "QActivation" or isinstance(layer, (nn.ReLU, nn.Softmax)):
            act = getattr(layer, "activation", layer) if cls == "QActivation" else layer
            if act is None:
                continue
            if isinstance(act, nn.Softmax) or (cls == "QActivation" and getattr(layer, "float_function", None) == "softmax" and not hasattr(act, "fixed_point_type")):
                act = nn.Softmax(dim=-1) if not isinstance(act, nn.Softmax) else act
            ir_act = _act_layer(name, act, shape, prev, is_last)
            _append_act(layers, ir_act)
        elif cls in ("QBatchNormalization",) or isinstance(layer, nn.modules.batchnorm._BatchNorm):
            _bn_fold(name, layer, prev)
        elif isinstance(layer, nn.Flatten) or cls == "Flatten":
            flat = (int(np.prod(shape)),)
            keras = bool(getattr(layer, "keras_order", False)) and len(shape) > 1
            layers.append(IRLayer(name, "flatten", shape, flat, prev.out_type, prev.out_type,
                                  attrs={"channels_last": keras}, sources=[name]))
        elif cls == "QAveragePooling2D":
            layers.append(_avgpool(name, layer, prev))
            act = _act_layer(f"{name}_act", getattr(layer, "activation", None), layers[-1].out_shape,
                             layers[-1], is_last)
            _append_act(layers, act)
        elif isinstance(layer, (nn.Identity, nn.Dropout)):
            continue
        else:
            hint = {
                "QDepthwiseConv2D": "hls4ml's PyTorch front end has no depthwise convolution; use "
                                    "QConv2D",
            }.get(cls, "replace it by one of QDense, QDenseBatchnorm, QConv1D, QConv2D, "
                       "QActivation(quantized_relu/quantized_bits), Flatten or a final softmax")
            raise FirmwareError(
                f"layer {name!r} ({cls}) is not supported by hqrun's bit-exact firmware export: "
                f"{hint}."
            )
    if len(layers) < 2:
        raise FirmwareError("the model has no layers after the input; nothing to export.")
    return FirmwareIR(layers)


def _append_act(layers: list[IRLayer], act: IRLayer | None) -> None:
    """Add an activation; a quantized_bits activation becomes the previous layer's result type."""
    if act is None:
        return
    if act.op == "quant":
        prev = layers[-1]
        prev.out_type = act.out_type
        prev.sources.append(act.name)
        return
    layers.append(act)


def fixed_point_str(t: FixedPointType | None) -> str:
    return "float" if t is None else t.hls_name
