"""Fixed-point type inference over a built hqrun model: the one pass cost model and firmware share.

Why one pass: the price the search optimises must be the price of the hardware that gets built,
so ``hqrun.cost`` (energy, bits, FPGA estimate) and ``hqrun.firmware`` (hls4ml precisions) both
read the per-layer types from :func:`infer_types` instead of re-deriving them.

Two accumulator policies (every consumer must say which one it used):

``"exact"``  (what the firmware builds)
    Products and accumulators are sized from the layer's *actual* quantized weights and biases and
    from the range of its input type: every partial sum of ``b + sum_i w_i x_i``, in any order, for
    any input on the input grid, fits the accumulator, and the accumulator is the narrowest type
    with that property (least significant bit = the finest of ``lsb_w * lsb_x`` and ``lsb_b``).
``"qtools"`` (QKeras QTools's width-only rule, needed to reproduce its energies)
    multiplier width = ``b_in + b_w`` (or QTools's mux/shifter/xor rules for binary, ternary and
    power-of-two operands) and accumulator width = ``ceil(log2(fan_in + 1)) + multiplier width``,
    whatever the weights are (e.g. 6-bit weights x 8-bit inputs over 16 inputs -> 19 bits).

Each layer yields a :class:`LayerTypes`. Its ``input``/``weight``/``bias``/``product``/
``accumulator``/``output`` fields are :class:`~hqrun.quantizers.FixedPointType` or ``None`` when
that value is not on one fixed-point grid (float, ``alpha="auto"`` scales, softmax); ``None`` always
comes with an entry in ``flags``. ``operands`` holds the bit-level description of the same slots
(:class:`Operand`: kind, bits, QTools-style integer bits, sign) that energy and size models need
even for float values.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from hqrun.errors import CostModelError

from .bn_fold import batchnorm_affine, fold_affine
from .grid import FixedPointGrid
from .exact_types import (exact_mac_types, exact_param_type, fit_type, input_code_bounds,
                          internal_type, type_of_values)
from .layer_kinds import MAC_KINDS, layer_kind
from .layers_core import QLayer, float_function_of
from .operand import Operand, fixed_operand, float_operand

__all__ = [
    "Operand",
    "LayerTypes",
    "QToolsOptions",
    "infer_types",
    "fit_type",
    "operand_from_quantizer",
    "qtools_multiplier",
    "POLICIES",
]

POLICIES = ("exact", "qtools")


_SLOTS = ("input", "weight", "bias", "product", "accumulator", "output")


# --------------------------------------------------------------------------------------------
# Bit-level operand descriptions
# --------------------------------------------------------------------------------------------
def _quantizer_operand(q: Any) -> Operand:
    """A quantizer's own description of its outputs (every hqrun quantizer has ``operand()``)."""
    fn = getattr(q, "operand", None)
    if not callable(fn):
        raise CostModelError(
            f"{q!s} ({type(q).__name__}) is not an hqrun quantizer: it cannot say what its outputs "
            "are. Quantizers derive from hqrun.quantizers.Quantizer and implement operand()."
        )
    return fn()


def named_operand(name: str) -> Operand:
    """QTools's named default types: ``fp32 fp16 int8 int16 int32`` or a quantized_bits spec."""
    key = str(name).replace(" ", "").lower()
    table = {
        "fp32": float_operand(32),
        "fp16": float_operand(16),
        "int8": _qbits_operand(8, 0, True),
        "int16": _qbits_operand(16, 7, True),
        "int32": _qbits_operand(32, 10, True),
    }
    if key in table:
        return table[key]
    m = re.fullmatch(r"quantized_(bits|relu)\((\d+),?(-?\d+)?(?:,.*)?\)", key)
    if m and (m.group(1) == "relu" or "keep_negative" not in key):
        # the common defaults, parsed here so cost settings do not depend on a quantizer build
        return _qbits_operand(int(m.group(2)), int(m.group(3) or 0), m.group(1) == "bits")
    from hqrun import quantizers as _q  # late: typeinfer is imported by quantizers' users

    try:
        return operand_from_quantizer(_q.get(name))
    except Exception as err:  # noqa: BLE001 - turned into a user error
        raise CostModelError(
            f"unknown data type {name!r} in the cost settings. Use fp32, fp16, int8, int16, int32 "
            f"or a quantizer spec such as 'quantized_bits(8,0,alpha=1)' ({err})."
        ) from None


def _qbits_operand(bits: int, integer: int, signed: bool) -> Operand:
    ftype = internal_type(bits, integer + int(signed), signed)
    return Operand("fixed", int(bits), int(integer), bool(signed), ftype)


def operand_from_quantizer(q: Any) -> Operand | None:
    """Describe what a quantizer produces; ``None`` for no quantizer (float).

    The quantizer answers for itself (:meth:`hqrun.quantizers.Quantizer.operand`): no table of
    quantizer names lives here, so a new quantizer needs no edit of this module.
    """
    if q is None or isinstance(q, str):
        return None
    return _quantizer_operand(q)


# --------------------------------------------------------------------------------------------
# Exact fixed-point arithmetic helpers
# --------------------------------------------------------------------------------------------
def _frac_bits(ftype) -> int:
    return int(ftype.width - ftype.integer)


# --------------------------------------------------------------------------------------------
# QTools's multiplier / accumulator width rules
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Multiplier:
    """How QTools implements one multiplication: ``impl`` in mul|shifter|mux|xor|and|add|fmul."""

    impl: str
    output: Operand
    gate_factor: float
    gate_bits: float


def _po2_exps(op: Operand) -> tuple[int, int]:
    """QTools's (−min_exp, max_exp) of a po2 operand."""
    non_sign = op.bits - 1 if op.signed else op.bits
    min_exp = -(2 ** (non_sign - 1))
    max_orig = 2 ** (non_sign - 1) - 1
    max_exp = max_orig
    if op.max_value is not None:
        if op.max_value <= 0:
            max_exp = 0
        else:
            max_exp = min(math.ceil(math.log2(op.max_value)), max_orig)
    return -min_exp, max(0, max_exp)


def _mode(op: Operand) -> int:
    return {"fixed": 0, "po2": 1, "ternary": 2, "binary": 3, "binary01": 4, "float": 5}[op.kind]


def qtools_multiplier(w: Operand, x: Operand) -> Multiplier:
    """Replay QTools's MultiplierFactory: implementation, output width, gate factor and bits."""
    mw, mx = _mode(w), _mode(x)
    signed = w.signed or x.signed
    if mw == 5 or mx == 5:
        bits = max(w.bits if w.is_float else 0, x.bits if x.is_float else 0)
        return Multiplier("fmul", float_operand(bits), 1.0, bits)
    if mw == 4 or mx == 4:  # and-gate
        bits = max(w.bits, x.bits)
        ib = x.int_bits if (w.kind == "binary01") else w.int_bits
        kind = "ternary" if (mw, mx) in ((4, 2), (4, 3), (2, 4), (3, 4)) else (
            "po2" if 1 in (mw, mx) else "fixed")
        if kind == "ternary":
            out = Operand("ternary", 2, 2, True)
            return Multiplier("and", out, 0.1, 2)
        return Multiplier("and", Operand(kind, bits, ib, signed), 0.1, bits)
    if mw == 3 and mx == 3:
        return Multiplier("xor", Operand("binary", 1, 1, True), 0.3, 1)
    if (mw, mx) == (1, 1):
        bits = max(x.bits, w.bits) + 1
        mv = None if (x.max_value is None or w.max_value is None) else x.max_value * w.max_value
        out = Operand("po2", bits, max(x.int_bits, w.int_bits) + 1, signed, max_value=mv)
        return Multiplier("add", out, 1.0, bits)
    if (mw, mx) in ((0, 1), (1, 0)):
        po2, qb = (w, x) if mw == 1 else (x, w)
        mn, mxp = _po2_exps(po2)
        bits = qb.bits + mxp + mn + (1 if (not qb.signed and po2.signed) else 0)
        out = Operand("fixed", int(bits), int(qb.int_bits + mxp), signed)
        if po2.n_values is not None and po2.n_values > 0:
            return Multiplier("shifter", out, 0.3 * po2.n_values, qb.bits)
        b = math.sqrt(2**po2.bits * qb.bits)
        return Multiplier("shifter", out, 1.0, b * math.log10(b))
    if (mw, mx) == (0, 0):
        out = Operand("fixed", x.bits + w.bits, x.int_bits + w.int_bits, signed)
        return Multiplier("mul", out, 1.0, math.sqrt(x.bits * w.bits))
    # mux: one side binary/ternary (modes 2, 3), the other fixed/po2/ternary/binary
    out_kind = _mux_out_kind(mw, mx)
    # a po2 result inherits the po2 operand's max_value (QTools: weight's first)
    mv = (w.max_value if w.kind == "po2" else x.max_value) if out_kind == "po2" else None
    if w.kind in ("binary", "ternary"):
        bits = x.bits + (1 if (not x.signed and w.signed) else 0)
        gf = 0.3 if w.kind == "binary" else 0.6
        ib = bits if out_kind == "po2" else x.int_bits
        return Multiplier("mux", Operand(out_kind, bits, ib, signed, max_value=mv), gf, x.bits)
    bits = w.bits + (1 if (not w.signed and x.signed) else 0)
    gf = 0.3 if x.kind == "binary" else 0.6
    ib = bits if out_kind == "po2" else w.int_bits
    return Multiplier("mux", Operand(out_kind, bits, ib, signed, max_value=mv), gf, w.bits)


def _mux_out_kind(mw: int, mx: int) -> str:
    if 1 in (mw, mx):
        return "po2"
    if mw in (2, 3) and mx in (2, 3):
        return "ternary"
    return "fixed"


def qtools_accumulator(mult: Multiplier, fan_in: int, use_bias: bool = True) -> Operand:
    """QTools's accumulator: ceil(log2(fan_in + bias)) more bits than the multiplier output."""
    if mult.output.is_float:
        return float_operand(mult.output.bits)
    add_ops = int(fan_in) + (1 if use_bias else 0)
    log_add = int(math.ceil(math.log2(add_ops))) if add_ops > 0 else 0
    out = mult.output
    if out.kind == "po2":
        mn, mxp = _po2_exps(out)
        bits = log_add + int(out.signed) + mn + mxp
        ib = log_add + mxp
    else:
        bits = log_add + out.bits
        ib = log_add + out.int_bits
    ftype = internal_type(bits, ib + int(out.signed), out.signed) if bits > 0 else None
    return Operand("fixed", int(bits), int(ib), bool(out.signed), ftype)


def _with_fixed(op: Operand) -> Operand:
    """Attach QTools's nominal FixedPointType (width=bits, integer=int_bits+sign)."""
    if op.fixed is not None or op.kind != "fixed" or op.bits <= 0:
        return op
    return replace(op, fixed=internal_type(op.bits, op.int_bits + int(op.signed), op.signed))


# --------------------------------------------------------------------------------------------
# Per-layer result
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QToolsOptions:
    """QTools's treatment of layers without quantizers (used by ``policy="qtools"`` only).

    ``keras_quantizer`` types the weights/biases of float layers, ``keras_accumulator`` their
    products, accumulators and the outputs of float activations (AutoQKeras passes its
    ``reference_internal``/``reference_accumulator``: fp32/fp32 by default). ``source`` types the
    model input when it has no quantizer; ``interm`` replaces a missing quantizer inside a
    quantized layer (QTools's ``default_interm_quantizer``). ``for_reference`` prices the model as
    the reference: every layer is treated as float. ``trained`` counts the distinct po2 weight
    values (QTools's ``is_inference``).
    """

    keras_quantizer: str | None = "fp32"
    keras_accumulator: str | None = "fp32"
    source: str = "quantized_bits(8,0,alpha=1)"
    interm: str = "int8"
    for_reference: bool = False
    trained: bool = False


@dataclass
class LayerTypes:
    """Types of one layer. Fixed-point slots are ``None`` (and flagged) when not on one grid."""

    name: str
    kind: str
    layer_class: str
    policy: str
    input: Any = None
    weight: Any = None
    bias: Any = None
    product: Any = None
    accumulator: Any = None
    output: Any = None
    n_inputs: int = 0
    n_outputs: int = 0
    n_weights: int = 0
    n_bias: int = 0
    n_ops: int = 0
    fan_in: int = 0
    n_channels: int = 0
    input_shape: tuple = ()
    output_shape: tuple = ()
    weight_shape: tuple = ()
    operands: dict = field(default_factory=dict)
    multiplier: Multiplier | None = None
    flags: list = field(default_factory=list)
    module: Any = field(default=None, repr=False, compare=False)

    @property
    def is_mac(self) -> bool:
        return self.kind in MAC_KINDS

    def grid(self, slot: str) -> FixedPointGrid | None:
        """Per-element formats of a slot: its own grid where elements differ (learned widths),
        else its one type as a uniform grid; None when the slot is not on fixed-point grids."""
        op = self.operands.get(slot)
        if op is not None and op.grid is not None:
            return op.grid
        t = getattr(self, slot, None)
        return None if t is None else FixedPointGrid.uniform(t)

    def as_dict(self) -> dict:
        """JSON-friendly view: types as hls names, operands as (kind, bits)."""
        out = {
            "name": self.name, "kind": self.kind, "class": self.layer_class,
            "policy": self.policy, "n_inputs": self.n_inputs, "n_outputs": self.n_outputs,
            "n_weights": self.n_weights, "n_bias": self.n_bias, "n_ops": self.n_ops,
            "flags": list(self.flags),
        }
        for s in _SLOTS:
            t = getattr(self, s)
            op = self.operands.get(s)
            out[s] = None if t is None else _type_str(t)
            if op is not None and t is None:
                out[s] = f"{op.kind}{op.bits}"
        return out


def _type_str(t) -> str:
    try:
        return t.hls_name
    except Exception:  # noqa: BLE001
        return f"fixed<{t.width},{t.integer}{'' if t.signed else ',u'}>"


# --------------------------------------------------------------------------------------------
# Layer classification
# --------------------------------------------------------------------------------------------
def _kind(module: nn.Module, name: str) -> str:
    kind = layer_kind(module)
    if kind is not None:
        return kind
    raise CostModelError(
        f"layer '{name}' is a {type(module).__name__}, which the type inference / cost model "
        "does not know. Supported: hqrun's quantized layers (QDense, QConv1D, QConv2D, "
        "QDepthwiseConv2D, QActivation, QBatchNormalization, QAveragePooling2D, QInput, Flatten) "
        "and torch's Linear, Conv1d/2d, ReLU, Softmax, BatchNorm, AvgPool2d, MaxPool, Dropout, "
        "Identity; replace the layer, or give your layer class a `type_kind` (see "
        "hqrun.quantizers.layer_kinds)."
    )


def _get(module: nn.Module, *names: str) -> Any:
    for n in names:
        if hasattr(module, n):
            v = getattr(module, n)
            if v is not None:
                return v
    return None


def _activation_info(module: nn.Module) -> tuple[Any, str]:
    """(quantizer or None, function name) of an activation layer or a fused activation."""
    own = float_function_of(module)
    if own is not None:
        return None, own
    act = getattr(module, "activation", None)
    if act is None or isinstance(act, nn.Identity):
        return None, "linear"
    if isinstance(act, str):
        return None, act.lower()
    fn = float_function_of(act)
    if fn is not None:
        return None, fn
    if callable(getattr(act, "operand", None)):
        return act, getattr(act, "name", "") or type(act).__name__.lower()
    return None, getattr(act, "__name__", type(act).__name__).lower()


def _quantized(module: nn.Module, which: str) -> np.ndarray | None:
    """The layer's quantized kernel or bias as float64 numpy (None when absent)."""
    fn = getattr(module, f"quantized_{which}", None)
    with torch.no_grad():
        if callable(fn):
            t = fn()
        else:
            t = getattr(module, "weight" if which == "kernel" else "bias", None)
            q = _get(module, f"{which}_quantizer")
            if t is not None and q is not None:
                t = q(t)
    if t is None:
        return None
    return t.detach().to(torch.float64).cpu().numpy()


# --------------------------------------------------------------------------------------------
# The pass
# --------------------------------------------------------------------------------------------
def _shapes(model: nn.Module, input_shape: Sequence[int]) -> dict[str, tuple[tuple, tuple]]:
    """Per-sample (input, output) shapes of every named child, by running zeros through it."""
    shapes: dict[str, tuple[tuple, tuple]] = {}
    modes = {m: m.training for m in model.modules()}
    x = torch.zeros((1, *[int(s) for s in input_shape]))
    try:
        model.eval()
        with torch.no_grad():
            for name, child in model.named_children():
                y = child(x)
                shapes[name] = (tuple(x.shape[1:]), tuple(y.shape[1:]))
                x = y
    except CostModelError:
        raise
    except Exception as err:  # noqa: BLE001 - a wrong input shape is a user error
        raise CostModelError(
            f"could not run a sample of shape {tuple(input_shape)} through the model ({err}). "
            "Pass input_shape=(features,) or (H, W, C)/(C, H, W) matching the model's first layer."
        ) from None
    finally:
        for m, t in modes.items():
            m.train(t)
    return shapes


def _guess_input_shape(model: nn.Module) -> tuple[int, ...]:
    for attr in ("input_shape", "in_shape"):
        s = getattr(model, attr, None)
        if s is not None:
            return tuple(int(v) for v in (s if isinstance(s, (tuple, list)) else (s,)))
    for _, child in model.named_children():
        n = _get(child, "in_features")
        if n is not None:
            return (int(n),)
        if _get(child, "in_channels") is not None:
            break
    raise CostModelError(
        "cannot tell the model's input shape: pass input_shape=... to infer_types/estimate "
        "(e.g. input_shape=(16,) for the jet model or (H, W, C) for a conv model)."
    )


def infer_types(
    model: nn.Module,
    input_type: Any = None,
    policy: str = "exact",
    *,
    input_shape: Sequence[int] | None = None,
    qtools: QToolsOptions | None = None,
) -> list[LayerTypes]:
    """Types of every layer of ``model`` (an ``nn.Sequential`` of hqrun layers), in order.

    ``input_type`` is the FixedPointType of the model input when the model has no input
    quantizer (``None``: float input, flagged; under ``policy="qtools"`` QTools's default source
    quantizer is used instead, see :class:`QToolsOptions`). Identity / dropout / flatten children
    are returned as ``passthrough`` layers so names stay aligned with the model.
    """
    if policy not in POLICIES:
        raise CostModelError(
            f"unknown accumulator policy {policy!r}; use 'exact' (sized from the actual weights, "
            "what the firmware builds) or 'qtools' (QTools's width-only rule)."
        )
    modes = {m: m.training for m in model.modules()}
    model.eval()  # inference values: BN moving stats, stochastic quantizers deterministic
    try:
        return _infer(model, input_type, policy, input_shape, qtools or QToolsOptions())
    finally:
        for m, t in modes.items():
            m.train(t)


def _infer(model: nn.Module, input_type: Any, policy: str, input_shape: Sequence[int] | None,
           opts: QToolsOptions) -> list[LayerTypes]:
    children = list(model.named_children())
    kinds = [(_kind(m, n), n, m) for n, m in children]  # fail fast on unknown layers
    shape = tuple(input_shape) if input_shape is not None else _guess_input_shape(model)
    shapes = _shapes(model, shape)

    # operand describing the model input
    if input_type is not None:
        signed = bool(input_type.signed)
        cur = Operand("fixed", int(input_type.width), int(input_type.integer) - int(signed),
                      signed, input_type)
    elif policy == "qtools":
        # QTools: the reference model reads its input as reference_internal, a trial as the
        # source quantizer (default quantized_bits(8,0,1))
        cur = named_operand(opts.keras_quantizer or "fp32") if opts.for_reference \
            else named_operand(opts.source)
    else:
        cur = None  # float input
    first_compute = True
    result: list[LayerTypes] = []
    for kind, name, module in kinds:
        in_shape, out_shape = shapes.get(name, ((), ()))
        lt = LayerTypes(
            name=name, kind=kind, layer_class=type(module).__name__, policy=policy,
            n_inputs=int(np.prod(in_shape)) if in_shape else 0,
            n_outputs=int(np.prod(out_shape)) if out_shape else 0,
            input_shape=in_shape, output_shape=out_shape, module=module,
        )
        if cur is None and policy == "exact":
            lt.flags.append("float_input")
        lt.operands["input"] = cur if cur is not None else float_operand(32)
        if kind == "input":
            q = getattr(module, "activation", None)
            if policy == "qtools" and opts.for_reference:
                q = None  # the reference is the float model: no input quantizer layer
            op = operand_from_quantizer(q) if q is not None and not isinstance(q, str) else None
            if op is not None:
                cur = op
            else:
                lt.flags.append("identity_input")  # Keras's InputLayer: no layer for QTools
            lt.operands["output"] = cur if cur is not None else float_operand(32)
            _finish(lt)
            result.append(lt)
            continue
        if kind in ("passthrough", "maxpool", "flatten"):
            lt.operands["output"] = lt.operands["input"]
            op = lt.operands["input"]
            if kind == "flatten" and op.grid is not None and in_shape:
                keras = bool(getattr(module, "keras_order", False))
                lt.operands["output"] = cur = replace(op, grid=op.grid.flattened(tuple(in_shape), keras))
            if kind == "maxpool":
                lt.n_ops = lt.n_inputs
            _finish(lt)
            result.append(lt)
            continue
        if policy == "qtools" and first_compute and cur is None:
            cur = named_operand(opts.source)
            lt.operands["input"] = cur
        first_compute = False
        if kind in MAC_KINDS:
            _mac_layer(lt, module, cur, policy, opts)
        elif kind == "activation":
            _activation_layer(lt, module, cur, policy, opts)
        elif kind == "batchnorm":
            _bn_layer(lt, module, cur, policy, opts, result[-1] if result else None)
        elif kind == "avgpool2d":
            _avgpool_layer(lt, module, cur, policy, opts)
        _finish(lt)
        out = lt.operands.get("output")
        cur = None if (out is None or (out.is_float and policy == "exact")) else out
        if policy == "qtools" and out is not None:
            cur = out
        result.append(lt)
    return result


def _finish(lt: LayerTypes) -> None:
    """Copy operand fixed types into the LayerTypes slots and flag the non-fixed ones."""
    for s in _SLOTS:
        op = lt.operands.get(s)
        if op is None:
            continue
        t = op.fixed if lt.policy == "exact" else _with_fixed(op).fixed
        if lt.policy == "qtools":
            lt.operands[s] = _with_fixed(op)
        setattr(lt, s, t)
        if t is None:
            flag = f"float_{s}" if op.is_float else f"nonfixed_{s}"
            if flag not in lt.flags and not (s == "input" and "float_input" in lt.flags):
                lt.flags.append(flag)


def _is_keras_like(module: nn.Module) -> bool:
    """A layer with no quantizer at all: QTools treats it as a plain Keras layer."""
    return all(_get(module, n) is None for n in ("kernel_quantizer", "bias_quantizer")) and \
        _activation_info(module)[0] is None


def _mac_layer(lt: LayerTypes, module: nn.Module, x: Operand | None, policy: str,
               opts: QToolsOptions) -> None:
    kernel = _quantized(module, "kernel")
    bias = _quantized(module, "bias")
    if kernel is None:
        raise CostModelError(f"layer '{lt.name}' ({lt.layer_class}) has no weight tensor.")
    kshape = tuple(kernel.shape)
    lt.weight_shape = kshape
    lt.n_weights = int(kernel.size)
    lt.n_bias = int(bias.size) if bias is not None else 0
    # fan-in and op count from the torch layout: dense (out, in); conv (out, in/groups, *k)
    n_out_ch = kshape[0]
    per_out = int(np.prod(kshape[1:]))
    out_positions = max(lt.n_outputs // max(n_out_ch, 1), 1) if lt.n_outputs else 1
    lt.fan_in = per_out
    lt.n_ops = per_out * n_out_ch * out_positions
    kq, bq = _get(module, "kernel_quantizer"), _get(module, "bias_quantizer")
    act_q, act_name = _activation_info(module)
    for slot, q in (("kernel", kq), ("bias", bq), ("activation", act_q)):
        if q is not None and getattr(q, "is_stochastic", False):
            lt.flags.append(f"stochastic_{slot}")

    if policy == "qtools":
        keras_like = opts.for_reference or _is_keras_like(module)
        if keras_like:
            w = named_operand(opts.keras_quantizer or opts.interm)
            b = named_operand(opts.keras_quantizer or opts.interm)
        else:
            w = operand_from_quantizer(kq) or named_operand(opts.interm)
            b = operand_from_quantizer(bq) or named_operand(opts.interm)
            if opts.trained and w.kind == "po2":
                w = replace(w, n_values=len(set(kernel.ravel().tolist())))
        mult = qtools_multiplier(w, x)
        # QTools's fan-in: prod(keras kernel shape[:-1]); for depthwise that includes C_in
        fan = per_out
        if lt.kind == "depthwise_conv2d":
            fan = per_out * int(lt.input_shape[0] if lt.input_shape else 1)
            lt.flags.append("qtools_depthwise_fanin_includes_channels")
        acc = qtools_accumulator(mult, fan, use_bias=True)
        if keras_like and opts.keras_accumulator:
            acc = named_operand(opts.keras_accumulator)
            mult = replace(mult, output=acc)
        lt.operands.update(weight=w, bias=b if bias is not None else None,
                           product=mult.output, accumulator=acc)
        if bias is None:
            lt.operands.pop("bias")
        lt.multiplier = mult
        if act_q is not None and not opts.for_reference:
            lt.operands["output"] = operand_from_quantizer(act_q)
        elif act_name not in ("linear", "none") and not opts.for_reference:
            lt.operands["output"] = named_operand(opts.interm)  # QTools: float activation fn
            lt.flags.append("float_activation")
        else:
            lt.operands["output"] = acc
        return

    # ---- exact policy ----
    w, wtype = _exact_param(lt, "weight", kq, kernel)
    lt.operands["weight"] = w
    b = None
    if bias is not None:
        b, _ = _exact_param(lt, "bias", bq, bias)
        lt.operands["bias"] = b
    if x is not None and w.kind != "float":
        lt.multiplier = qtools_multiplier(w, x)
    xt = x.fixed if x is not None else None
    if xt is None or wtype is None or (b is not None and b.fixed is None):
        lt.operands["product"] = float_operand(32)
        lt.operands["accumulator"] = float_operand(32)
        lt.operands["output"] = operand_from_quantizer(act_q) if act_q is not None \
            else float_operand(32)
        return
    x_lo, x_hi = _input_code_range(x, lt)
    prod_t, acc_t = exact_mac_types(kernel, wtype, bias, b.fixed if b is not None else None,
                                    x_lo, x_hi, xt.fractional)
    lt.operands["product"] = fixed_operand(prod_t)
    lt.operands["accumulator"] = fixed_operand(acc_t)
    if act_q is not None:
        lt.operands["output"] = operand_from_quantizer(act_q)
    elif act_name not in ("linear", "none"):
        lt.operands["output"] = float_operand(32)
        lt.flags.append("float_activation")
    else:
        lt.operands["output"] = lt.operands["accumulator"]


def _exact_param(lt: LayerTypes, slot: str, q: Any, values: np.ndarray) -> tuple[Operand, Any]:
    """The operand of a weight/bias slot with the type the firmware builds it with.

    The declared type, narrowed to the actual values when declared needlessly wide, or read off
    the values when the quantizer's grid is chosen from the data (``alpha="auto_po2"``).
    """
    op = operand_from_quantizer(q)
    declared = op.fixed if op is not None else None
    t = exact_param_type(declared, values, bool(getattr(q, "grid_from_values", False)))
    if t is not None and declared is None:
        lt.flags.append(f"{slot}_type_from_values")
    return replace(op or float_operand(32), fixed=t), t


def _input_code_range(x: Operand, lt: LayerTypes) -> tuple[Any, Any]:
    """Input code bounds of a MAC layer: per element for a dense layer fed by per-element
    formats (learned widths); conv layers see every input element at every kernel position."""
    per_element = x.grid if lt.kind == "dense" else None
    return input_code_bounds(x.fixed, per_element, tuple(lt.input_shape))


def _relu_of(op: Operand) -> Operand:
    """Exact type of relu(x) for x of type op: drop the sign bit."""
    if op.fixed is None or not op.signed:
        return op
    t = op.fixed
    nt = internal_type(max(t.width - 1, 1), t.integer - 1, False)
    return Operand("fixed", nt.width, nt.integer, False, nt)


def _activation_layer(lt: LayerTypes, module: nn.Module, x: Operand | None, policy: str,
                      opts: QToolsOptions) -> None:
    q, fname = _activation_info(module)
    lt.n_ops = lt.n_inputs
    if policy == "qtools":
        if opts.for_reference or q is None:
            out = named_operand(opts.keras_accumulator or opts.interm)
        else:
            out = operand_from_quantizer(q)
        lt.operands["output"] = out
        if q is None:
            lt.flags.append(f"float_{fname}")
        return
    if q is not None:
        lt.operands["output"] = operand_from_quantizer(q)
        if lt.operands["output"].fixed is None:
            lt.flags.append("nonfixed_activation")
        return
    if fname in ("linear", "none", "identity"):
        lt.operands["output"] = x if x is not None else float_operand(32)
    elif fname == "relu" and x is not None:
        lt.operands["output"] = _relu_of(x)
    else:
        lt.operands["output"] = float_operand(32)
        lt.flags.append(f"float_{fname}")


def _bn_layer(lt: LayerTypes, module: nn.Module, x: Operand | None, policy: str,
              opts: QToolsOptions, prev: LayerTypes | None = None) -> None:
    lt.n_ops = lt.n_inputs
    n = int(getattr(module, "num_features", 0) or 0)
    lt.n_channels = n
    scale = bool(getattr(module, "scale", True))
    center = bool(getattr(module, "center", True))
    lt.n_weights = n * (2 + int(scale) + int(center))
    if policy == "qtools":
        keras_like = opts.for_reference or all(
            _get(module, f"{k}_quantizer") is None for k in ("gamma", "beta", "mean", "variance"))
        if keras_like:
            ref = named_operand(opts.keras_quantizer or opts.interm)
            params = dict(gamma=ref, beta=ref, mean=ref, variance=ref)
        else:  # QTools: missing beta/mean take the input's type, missing gamma/variance interm
            params = dict(
                gamma=operand_from_quantizer(_get(module, "gamma_quantizer"))
                or named_operand(opts.interm),
                beta=operand_from_quantizer(_get(module, "beta_quantizer")) or x,
                mean=operand_from_quantizer(_get(module, "mean_quantizer")) or x,
                variance=operand_from_quantizer(_get(module, "variance_quantizer"))
                or named_operand(opts.interm),
            )
        if not scale:
            params.pop("gamma")
        if not center:
            params.pop("beta")
        lt.operands.update(params)
        # QTools derives the output through its divider/multiplier/adder chain; a float (or
        # reference) BN outputs keras_accumulator. Quantized BN: approximated the same way.
        lt.operands["output"] = named_operand(opts.keras_accumulator or opts.interm)
        if not keras_like:
            lt.flags.append("qtools_bn_output_approx")
        return
    folded = _exact_fold(lt, module, prev)
    if folded is not None:
        lt.flags.append("bn_folded_exact")
        lt.operands["output"] = folded
        return
    lt.flags.append("bn_float_scale")
    lt.operands["output"] = float_operand(32)


def _exact_fold(lt: LayerTypes, bn: nn.Module, prev: LayerTypes | None) -> Operand | None:
    """The accumulator of the layer before ``bn`` once ``bn`` is folded into it, when exact.

    Only a dense/conv layer whose output is its accumulator (no activation in between) can take
    the fold; :mod:`hqrun.quantizers.bn_fold` says whether the fold is exact.
    """
    if prev is None or not prev.is_mac or prev.accumulator is None or \
            prev.operands.get("output") is not prev.operands.get("accumulator"):
        return None
    kernel = _quantized(prev.module, "kernel")
    bias = _quantized(prev.module, "bias")
    scale, offset = batchnorm_affine(bn, kernel.shape[0], max(len(prev.output_shape) - 1, 0))
    folded = fold_affine(kernel, bias, scale, offset)
    if folded is None:
        return None
    wf, bf, w_type, b_type = folded
    x = prev.operands["input"]
    x_lo, x_hi = _input_code_range(x, prev)
    _, acc = exact_mac_types(wf, w_type, bf, b_type, x_lo, x_hi, x.fixed.fractional)
    return fixed_operand(acc)


def _avgpool_layer(lt: LayerTypes, module: nn.Module, x: Operand | None, policy: str,
                   opts: QToolsOptions) -> None:
    k = _get(module, "kernel_size", "pool_size") or 2
    k = tuple(k) if isinstance(k, (tuple, list)) else (int(k), int(k))
    area = int(np.prod(k))
    lt.fan_in = area
    lt.n_ops = lt.n_outputs * area
    q, _ = _activation_info(module)
    if policy == "qtools":
        xin = x if x is not None else named_operand(opts.source)
        fake = Multiplier("mul", xin, 1.0, 0.0)
        acc = qtools_accumulator(fake, area, use_bias=False)
        out = acc
        if isinstance(module, QLayer):
            # QTools: a quantized pooling multiplies the sum by Q(1/area); with no average
            # quantizer that factor is the default intermediate type (int8)
            avg = operand_from_quantizer(_get(module, "average_quantizer")) \
                or named_operand(opts.interm)
            mult = qtools_multiplier(acc, avg)
            lt.multiplier = mult
            out = mult.output
        if opts.for_reference:
            acc = out = named_operand(opts.keras_accumulator or opts.interm)
        lt.operands["accumulator"] = acc
        lt.operands["output"] = operand_from_quantizer(q) if (q is not None and not
                                                              opts.for_reference) else out
        return
    if x is None or x.fixed is None:
        lt.operands["accumulator"] = float_operand(32)
        lt.operands["output"] = operand_from_quantizer(q) if q is not None else float_operand(32)
        return
    t = x.fixed
    fx = _frac_bits(t)
    acc_t = fit_type(Fraction(t.min_value) * area if t.min_value < 0 else 0,
                     Fraction(t.max_value) * area, fx)
    lt.operands["accumulator"] = fixed_operand(acc_t)
    recip = getattr(module, "quantized_reciprocal", None)
    rtype = type_of_values(recip().detach().double().numpy(), 24) if callable(recip) else None
    if q is not None:
        lt.operands["output"] = operand_from_quantizer(q)
    elif rtype is not None and getattr(module, "average_quantizer", None) is not None:
        r = Fraction(float(recip()))
        fr = _frac_bits(rtype)
        lo = Fraction(t.min_value) * area * r if t.min_value < 0 else 0
        lt.operands["output"] = fixed_operand(fit_type(lo, Fraction(t.max_value) * area * r,
                                                        fx + fr))
    elif area & (area - 1) == 0:
        sh = area.bit_length() - 1
        lt.operands["output"] = fixed_operand(fit_type(
            Fraction(t.min_value) if t.min_value < 0 else 0, Fraction(t.max_value), fx + sh))
    else:
        lt.operands["output"] = float_operand(32)
        lt.flags.append("avgpool_divisor_not_po2")


def summarize(types: Iterable[LayerTypes]) -> list[dict]:
    """JSON-friendly list of the per-layer types."""
    return [t.as_dict() for t in types]
