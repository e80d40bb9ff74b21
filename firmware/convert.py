"""Model → fixed-point IR: one converter per layer kind, then the passes in their declared order.

The layer answers what it is (:func:`hqrun.quantizers.layer_kinds.layer_kind`) and its quantizers
answer how they lower (:meth:`~hqrun.quantizers.Quantizer.lowering`); this module only maps kinds
to IR layers. Types come from the shared type inference (:func:`~hqrun.quantizers.typeinfer.
infer_types`, exact policy), which the cost model prices too; if it cannot type a layer the
export stops with its message rather than guessing.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from hqrun.errors import CostModelError, FirmwareError
from hqrun.safenames import check_identifier
from hqrun.quantizers.fixedpoint import FixedPointType
from hqrun.quantizers.layer_kinds import MAC_KINDS, layer_kind
from hqrun.quantizers.layers_core import float_function_of
from hqrun.quantizers.typeinfer import LayerTypes, infer_types

from .activations import activation_nodes, lowering_of
from .ir import DEFAULT_INPUT_TYPE, MAX_ACCUM_WIDTH, FirmwareIR, IRLayer, to_codes
from .params import input_format, param_type
from .passes import PassContext, run_passes

__all__ = ["build_ir", "precheck", "CONVERTERS", "converts"]

Converter = Callable[[str, nn.Module, "LayerTypes | None", IRLayer, bool], list[IRLayer]]

#: Layer kind -> converter. A kind missing here is refused by name (with a hint where one helps).
CONVERTERS: dict[str, Converter] = {}

#: Why a known but unconvertible kind is refused, and what to use instead.
_UNSUPPORTED_HINTS = {
    "depthwise_conv2d": "hls4ml's PyTorch front end has no depthwise convolution; use QConv2D",
    "maxpool": "max pooling is not exported; use QAveragePooling2D with a power-of-two pool",
}


def converts(kind: str) -> Callable[[Converter], Converter]:
    """Register the converter of one layer kind."""

    def register(fn: Converter) -> Converter:
        CONVERTERS[kind] = fn
        return fn

    return register


def _children(model: nn.Module) -> list[tuple[str, nn.Module]]:
    kids = list(model.named_children())
    if not kids:
        raise FirmwareError(
            f"{type(model).__name__} has no child layers; firmware export expects an "
            "hqrun.models.QSequential (or nn.Sequential) of hqrun quantized layers."
        )
    return kids


def _unsupported(name: str, layer: nn.Module) -> FirmwareError:
    hint = _UNSUPPORTED_HINTS.get(layer_kind(layer) or "", (
        "replace it by one of QDense, QDenseBatchnorm, QConv1D, QConv2D, "
        "QActivation(quantized_relu/quantized_bits), Flatten or a final softmax"))
    return FirmwareError(f"layer {name!r} ({type(layer).__name__}) is not supported by hqrun's "
                         f"bit-exact firmware export: {hint}.")


# ----------------------------------------------------------------------------- converters
def _mac_node(name: str, layer: nn.Module, lt: LayerTypes | None, prev: IRLayer, op: str,
              shape_in: tuple[int, ...]) -> IRLayer:
    """A dense/conv layer: integer weights in their exact types, the type inference's accumulator."""
    kq = getattr(layer, "kernel_quantizer", None)
    bq = getattr(layer, "bias_quantizer", None)
    with torch.no_grad():
        kernel = layer.quantized_kernel()
        bias = layer.quantized_bias() if hasattr(layer, "quantized_bias") else None
    w_type = param_type(name, "kernel", kq, kernel)
    b_type = param_type(name, "bias", bq, bias) if bias is not None else None
    x_type = prev.out_type
    if x_type is None:
        raise FirmwareError(f"layer {name!r} follows a layer with no fixed-point output.")
    if lt is None or lt.accumulator is None or lt.weight != w_type or lt.bias != b_type:
        raise FirmwareError(
            f"layer {name!r}: the shared type inference gave no exact types for it (weight "
            f"{getattr(lt, 'weight', None)}, accumulator {getattr(lt, 'accumulator', None)}; flags "
            f"{getattr(lt, 'flags', [])}), so cost model and firmware would disagree. Please "
            "report this as an hqrun bug."
        )
    acc = lt.accumulator
    if acc.width > MAX_ACCUM_WIDTH:
        raise FirmwareError(
            f"layer {name!r} needs a {acc.width}-bit accumulator ({acc.hls_name}); hqrun's "
            f"firmware supports at most {MAX_ACCUM_WIDTH} bits. Use narrower input/kernel quantizers."
        )
    w = to_codes(kernel, w_type, f"kernel of layer {name!r}")
    b = to_codes(bias, b_type, f"bias of layer {name!r}") if bias is not None else None
    grid = kq.fixed_point_grid()
    acc = FixedPointType(acc.width, acc.integer, acc.signed, "TRN", "WRAP")
    return IRLayer(name, op, shape_in, (), acc, x_type, w, b, w_type, b_type, acc, sources=[name],
                   in_grid=prev.out_grid,
                   weight_grid=None if grid is None or grid.is_uniform else grid.broadcast_to(w.shape))


def _with_activation(nodes: list[IRLayer], name: str, layer: nn.Module,
                     is_last: bool) -> list[IRLayer]:
    """Append the layer's fused activation (QKeras's ``activation=`` argument), if any."""
    last = nodes[-1]
    return nodes + activation_nodes(f"{name}_act", getattr(layer, "activation", None),
                                    last.out_shape, last, is_last)


@converts("dense")
def _dense(name: str, layer: nn.Module, lt: LayerTypes | None, prev: IRLayer,
           is_last: bool) -> list[IRLayer]:
    shape = prev.out_shape
    if len(shape) != 1:
        raise FirmwareError(f"layer {name!r} (dense) got a {len(shape)}-D input {shape}; add a "
                            "Flatten layer before it.")
    node = _mac_node(name, layer, lt, prev, "dense", shape)
    node.out_shape = (int(node.weight.shape[0]),)
    if node.weight.shape[1] != shape[0]:
        raise FirmwareError(f"layer {name!r} expects {node.weight.shape[1]} inputs, gets {shape[0]}.")
    return _with_activation([node], name, layer, is_last)


def _conv_attrs(name: str, layer: nn.Module, nd: int) -> dict[str, Any]:
    def tup(v: Any) -> tuple[int, ...]:
        return (int(v),) * nd if isinstance(v, (int, np.integer)) else tuple(int(u) for u in v)

    stride = tup(getattr(layer, "strides", 1))
    dilation = tup(getattr(layer, "dilation_rate", 1))
    if int(getattr(layer, "groups", 1) or 1) != 1:
        raise FirmwareError(f"layer {name!r} is a grouped convolution; hls4ml's PyTorch front end "
                            "supports groups=1 only.")
    if any(d != 1 for d in dilation):
        raise FirmwareError(f"layer {name!r} uses dilation {dilation}; hls4ml supports dilation 1 "
                            "only. Use dilation_rate=1.")
    return {"stride": list(stride), "padding": getattr(layer, "padding", "valid")}


def _pads(padding: Any, size: tuple[int, ...], kernel: tuple[int, ...],
          stride: tuple[int, ...]) -> list[tuple[int, int]]:
    """(before, after) zero padding per spatial axis, TensorFlow's 'same' rule."""
    mode = str(padding).lower()
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


def _conv(nd: int) -> Converter:
    def convert(name: str, layer: nn.Module, lt: LayerTypes | None, prev: IRLayer,
                is_last: bool) -> list[IRLayer]:
        shape = prev.out_shape
        attrs = _conv_attrs(name, layer, nd)
        if len(shape) != nd + 1:
            raise FirmwareError(f"layer {name!r} ({nd}-D conv) got input shape {shape}; expected "
                                f"(channels, {'length' if nd == 1 else 'height, width'}).")
        node = _mac_node(name, layer, lt, prev, f"conv{nd}d", shape)
        kernel = tuple(node.weight.shape[2:])
        pads = _pads(attrs["padding"], shape[1:], kernel, tuple(attrs["stride"]))
        padded = tuple(s + a + b for s, (a, b) in zip(shape[1:], pads))
        spatial = tuple((s - k) // st + 1 for s, k, st in zip(padded, kernel, attrs["stride"]))
        node.out_shape = (int(node.weight.shape[0]),) + spatial
        node.attrs.update(stride=attrs["stride"], kernel=list(kernel), pads=[list(p) for p in pads])
        return _with_activation([node], name, layer, is_last)

    return convert


converts("conv1d")(_conv(1))
converts("conv2d")(_conv(2))


@converts("activation")
def _activation(name: str, layer: nn.Module, lt: LayerTypes | None, prev: IRLayer,
                is_last: bool) -> list[IRLayer]:
    act = layer if float_function_of(layer) else getattr(layer, "activation", None)
    if act is None and getattr(layer, "float_function", None) == "softmax":
        act = nn.Softmax(dim=-1)
    return activation_nodes(name, act, prev.out_shape, prev, is_last)


@converts("batchnorm")
def _batchnorm(name: str, layer: nn.Module, lt: LayerTypes | None, prev: IRLayer,
               is_last: bool) -> list[IRLayer]:
    """A batch norm the type inference found exactly foldable; the fold_batchnorm pass folds it."""
    if lt is None or "bn_folded_exact" not in lt.flags or lt.output is None:
        raise FirmwareError(
            f"batch norm {name!r} cannot be folded exactly into {prev.name!r}: it must follow a "
            "dense/conv layer directly, with scales gamma/sqrt(var+eps) that are powers of two "
            "and an offset on a short fixed-point grid. Use QDenseBatchnorm (batch norm folded "
            "into the quantized kernel, as QKeras deploys it) for this layer."
        )
    return [IRLayer(name, "batchnorm", prev.out_shape, prev.out_shape, lt.output, prev.out_type,
                    attrs={"module": layer}, sources=[name])]


@converts("flatten")
def _flatten(name: str, layer: nn.Module, lt: LayerTypes | None, prev: IRLayer,
             is_last: bool) -> list[IRLayer]:
    shape = prev.out_shape
    keras = bool(getattr(layer, "keras_order", False)) and len(shape) > 1
    grid = None if prev.out_grid is None else prev.out_grid.flattened(shape, keras)
    return [IRLayer(name, "flatten", shape, (int(np.prod(shape)),), prev.out_type, prev.out_type,
                    attrs={"channels_last": keras}, sources=[name], out_grid=grid,
                    in_grid=prev.out_grid)]


@converts("avgpool2d")
def _avgpool(name: str, layer: nn.Module, lt: LayerTypes | None, prev: IRLayer,
             is_last: bool) -> list[IRLayer]:
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
    if prev.out_grid is not None:
        raise FirmwareError(f"layer {name!r}: average pooling over per-element formats is not "
                            "supported; give the layer before it one format per layer.")
    x_t = prev.out_type
    c, h, w = prev.out_shape
    ph, pw = layer.pool_size
    # Sum of `area` inputs needs k more integer bits; the division k more fractional bits.
    acc = FixedPointType(x_t.width + 2 * k, x_t.integer + k, x_t.signed, "TRN", "WRAP")
    out = FixedPointType(x_t.width + k, x_t.integer, x_t.signed, "TRN", "WRAP")
    node = IRLayer(name, "avgpool2d", prev.out_shape, (c, h // ph, w // pw), out, x_t,
                   accum_type=acc, attrs={"pool": [ph, pw]}, sources=[name])
    return _with_activation([node], name, layer, is_last)


@converts("passthrough")
def _passthrough(name: str, layer: nn.Module, lt: LayerTypes | None, prev: IRLayer,
                 is_last: bool) -> list[IRLayer]:
    return []


# ----------------------------------------------------------------------------- checks
def _layer_problems(name: str, layer: nn.Module) -> None:
    """Raise the first problem of one layer that does not depend on the layers before it."""
    kind = layer_kind(layer)
    if kind not in CONVERTERS and kind != "input":
        raise _unsupported(name, layer)
    if kind in MAC_KINDS and not hasattr(layer, "quantized_kernel"):
        raise FirmwareError(
            f"layer {name!r} is a float {type(layer).__name__} (no kernel quantizer), which firmware "
            "cannot reproduce bit for bit. Use hqrun's quantized layer (QDense, QConv1D, QConv2D) "
            "with a kernel quantizer in the plan."
        )
    if hasattr(layer, "quantized_kernel") and kind != "batchnorm":
        with torch.no_grad():
            param_type(name, "kernel", getattr(layer, "kernel_quantizer", None),
                       layer.quantized_kernel())
            bias = layer.quantized_bias() if hasattr(layer, "quantized_bias") else None
            if bias is not None:
                param_type(name, "bias", getattr(layer, "bias_quantizer", None), bias)
    act = getattr(layer, "activation", None)
    if kind == "input":
        if act is not None:
            input_format(name, act)
    elif act is not None and float_function_of(act) is None:
        lowering_of(name, act)


def precheck(model: nn.Module) -> list[str]:
    """Every layer/quantizer problem of the model at once (the conversion stops at the first).

    A searched plan can hold several non-deployable choices; naming them all in one error saves
    the user one retrain per problem.
    """
    problems: list[str] = []
    for name, layer in model.named_children():
        try:
            _layer_problems(name, layer)
        except FirmwareError as err:
            problems.append(str(err))
    return problems


# ----------------------------------------------------------------------------- build
def _input_layer(kids: list[tuple[str, nn.Module]], shape: tuple[int, ...],
                 input_type: FixedPointType | None) -> tuple[IRLayer, int]:
    in_t, grid = input_type or DEFAULT_INPUT_TYPE, None
    first_name, first = kids[0]
    if layer_kind(first) != "input" and first_name != "input":
        return IRLayer("input", "input", shape, shape, in_t), 0
    q = getattr(first, "activation", None)
    if q is not None:
        in_t, grid = input_format(first_name, q)
        grid = None if grid is None else grid.broadcast_to(shape)
    return IRLayer("input", "input", shape, shape, in_t, sources=[first_name], out_grid=grid), 1


def _shared_types(model: nn.Module, in_t: FixedPointType,
                  shape: tuple[int, ...]) -> dict[str, LayerTypes]:
    try:
        rows = infer_types(model, in_t, policy="exact", input_shape=shape)
    except CostModelError as err:
        raise FirmwareError(f"the shared type inference cannot type this model: {err}") from None
    return {row.name: row for row in rows}


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
    first, start = _input_layer(kids, shape, input_type)
    types = _shared_types(model, first.out_type, shape)
    layers = [first]
    for idx in range(start, len(kids)):
        name, layer = kids[idx]
        # names become C++/Verilog identifiers and file names in every backend
        check_identifier(name, "firmware layer name", error=FirmwareError)
        kind = layer_kind(layer)
        convert = CONVERTERS.get(kind or "")
        if convert is None:
            raise _unsupported(name, layer)
        layers.extend(convert(name, layer, types.get(name), layers[-1], idx == len(kids) - 1))
    if len(layers) < 2:
        raise FirmwareError("the model has no layers after the input; nothing to export.")
    ir = FirmwareIR(layers)
    run_passes(ir, PassContext(types=types))
    return ir
