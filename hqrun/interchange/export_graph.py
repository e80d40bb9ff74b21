"""hqrun model → QONNX graph: one converter per layer kind, in the model's own layout.

The layer says what it is (:func:`hqrun.quantizers.layer_kinds.layer_kind`) and its quantizers
say what they compute (:mod:`hqrun.interchange.quantizer_formats`); the converters only lay out
ONNX nodes. hqrun's layout is ONNX's (channels first), so no layout change is needed, except
where hqrun's ``Flatten`` flattens in Keras's channels-last order (a Transpose before it).

What each kind becomes::

    input       [Quant]                       the input quantizer, or the firmware's input type
    dense       MatMul(x, Quant(W^T)) [+ Add(Quant(b))] [activation]
    conv1d/2d   Conv(x, Quant(W), Quant(b), pads, strides, group) [activation]
    avgpool2d   AveragePool [activation]      power-of-two areas only (an exact division)
    flatten     [Transpose] Flatten
    activation  Quant | Relu, Quant | BipolarQuant | Relu | Softmax (last layer only)

Anything else, and any quantizer without an exact QONNX equivalent, is refused with one
paragraph naming the layer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from hqrun.errors import InterchangeError
from hqrun.quantizers.fixedpoint import FixedPointType
from hqrun.quantizers.layer_kinds import layer_kind
from hqrun.quantizers.layers_core import conv_padding, float_function_of

from .builder import GraphBuilder
from .constants import stored_constant
from .formats import QuantFormat, format_of_type, is_power_of_two
from .quantizer_formats import activation_format, param_format

__all__ = ["build_graph", "ExportedGraph", "CONVERTERS"]


@dataclass
class _Context:
    builder: GraphBuilder
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]
    keep_softmax: bool
    logits: str | None = None
    softmax: bool = False
    layers: list[dict[str, Any]] = field(default_factory=list)

    def record(self, name: str, slot: str, spec: str, fmt: QuantFormat | None, relu: bool = False) -> None:
        self.layers.append({"layer": name, "slot": slot, "spec": spec, "relu": relu,
                            "qonnx": fmt.describe() if fmt is not None else None})


Converter = Callable[[_Context, str, nn.Module, str, bool], str]

#: Layer kind -> converter (input x tensor name -> output tensor name).
CONVERTERS: dict[str, Converter] = {}


def _converts(*kinds: str) -> Callable[[Converter], Converter]:
    def register(fn: Converter) -> Converter:
        for kind in kinds:
            CONVERTERS[kind] = fn
        return fn

    return register


@dataclass
class ExportedGraph:
    """The raw ONNX model (before qonnx's clean-up) and what the exporter decided."""

    model: Any
    input_shape: tuple[int, ...]
    input_format: QuantFormat | None
    input_added: bool
    has_softmax: bool
    layers: list[dict[str, Any]]


# ----------------------------------------------------------------------------- activations
def _activation(ctx: _Context, name: str, act: Any, x: str, is_last: bool, slot: str) -> str:
    """The nodes of one activation (a quantizer, a float function or nothing)."""
    if act is None:
        return x
    b = ctx.builder
    fn = float_function_of(act)
    if fn == "relu":
        ctx.record(name, slot, "relu", None)
        return b.node("Relu", [x], f"{name}_relu", hint={"layer": name, "slot": slot, "spec": "relu"})
    if fn == "softmax":
        if not is_last:
            raise InterchangeError(f"layer {name!r} is a softmax inside the model; hqrun exports a "
                                   "softmax only as the last layer (after the logits).")
        ctx.logits, ctx.softmax = x, ctx.keep_softmax
        if not ctx.keep_softmax:
            return x
        ctx.record(name, slot, "softmax", None)
        return b.node("Softmax", [x], name, axis=-1, hint={"layer": name, "slot": slot, "spec": "softmax"})
    if fn is not None:
        raise InterchangeError(
            f"layer {name!r} computes a float {fn}, which QONNX executes with its own float "
            "library, so the result cannot match the model bit for bit. Quantize it (e.g. "
            "quantized_relu / quantized_bits) or leave it out."
        )
    where = f"layer {name!r} ({slot} quantizer)"
    relu, fmt = activation_format(where, act)
    hint = {"layer": name, "slot": slot, "spec": str(act)}
    if relu:
        x = b.node("Relu", [x], f"{name}_relu", hint={**hint, "part": "relu"})
    ctx.record(name, slot, str(act), fmt, relu)
    return b.quant(x, fmt, f"{name}_quant", hint)


# ----------------------------------------------------------------------------- MAC layers
def _param(ctx: _Context, name: str, slot: str, q: Any, values: torch.Tensor,
           raw: torch.Tensor | None, axis: int) -> str:
    """A weight/bias initializer and its Quant: the float weights when the node computes the
    quantized values from them exactly, else the quantized values (:mod:`.constants`)."""
    v = values.detach().to(torch.float64).cpu().numpy()
    fmt = param_format(f"layer {name!r} ({slot})", q, v, axis)
    w_raw = None if raw is None else raw.detach().to(torch.float32).cpu().numpy()
    stored, fmt, is_float = stored_constant(fmt, v, w_raw)
    ctx.record(name, slot, str(q), fmt)
    w = ctx.builder.constant(f"{name}_{slot}", stored)
    return ctx.builder.quant(w, fmt, f"{name}_{slot}_quant",
                             {"layer": name, "slot": slot, "spec": str(q),
                              "stored": "float" if is_float else "quantized"})


def _raw(layer: nn.Module, name: str, transpose: bool = False) -> torch.Tensor | None:
    """The layer's float (shadow) parameter, in ONNX layout, if it has one of that name."""
    p = getattr(layer, name, None)
    if not isinstance(p, torch.Tensor):
        return None
    return p.t() if transpose else p


def _quantized(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    with torch.no_grad():
        kernel = layer.quantized_kernel()
        bias = layer.quantized_bias() if hasattr(layer, "quantized_bias") else None
    return kernel, bias


def _require_quantized(name: str, layer: nn.Module) -> None:
    if not hasattr(layer, "quantized_kernel"):
        raise InterchangeError(
            f"layer {name!r} is a float {type(layer).__name__}; QONNX export needs hqrun's "
            "quantized layers (QDense, QConv1D, QConv2D) with kernel quantizers in the plan."
        )


@_converts("dense")
def _dense(ctx: _Context, name: str, layer: nn.Module, x: str, is_last: bool) -> str:
    _require_quantized(name, layer)
    kernel, bias = _quantized(layer)
    w = _param(ctx, name, "kernel", getattr(layer, "kernel_quantizer", None), kernel.t(),
               _raw(layer, "weight", transpose=True), axis=1)
    y = ctx.builder.node("MatMul", [x, w], name, hint={"layer": name, "kind": "dense"})
    if bias is not None:
        bq = _param(ctx, name, "bias", getattr(layer, "bias_quantizer", None), bias,
                    _raw(layer, "bias"), axis=0)
        y = ctx.builder.node("Add", [y, bq], f"{name}_bias", hint={"layer": name, "part": "bias"})
    return _activation(ctx, name, getattr(layer, "activation", None), y, is_last, "activation")


@_converts("conv1d", "conv2d", "depthwise_conv2d")
def _conv(ctx: _Context, name: str, layer: nn.Module, x: str, is_last: bool) -> str:
    _require_quantized(name, layer)
    kernel, bias = _quantized(layer)
    in_shape = ctx.shapes[name][0]
    sizes = in_shape[1:]
    ks, st, dil = tuple(layer.kernel_size), tuple(layer.strides), tuple(layer.dilation_rate)
    pads = [conv_padding(layer.padding, s, k, t, d) for s, k, t, d in zip(sizes, ks, st, dil)]
    group = layer.in_channels if layer_kind(layer) == "depthwise_conv2d" else 1
    inputs = [x, _param(ctx, name, "kernel", layer.kernel_quantizer, kernel, _raw(layer, "weight"), axis=0)]
    if bias is not None:
        inputs.append(_param(ctx, name, "bias", layer.bias_quantizer, bias, _raw(layer, "bias"), axis=0))
    y = ctx.builder.node(
        "Conv", inputs, name, hint={"layer": name, "kind": layer_kind(layer)},
        kernel_shape=list(ks), strides=list(st), dilations=list(dil), group=int(group),
        pads=[p[0] for p in pads] + [p[1] for p in pads])
    return _activation(ctx, name, getattr(layer, "activation", None), y, is_last, "activation")


# ----------------------------------------------------------------------------- the others
@_converts("activation")
def _activation_layer(ctx: _Context, name: str, layer: nn.Module, x: str, is_last: bool) -> str:
    act = layer if float_function_of(layer) else getattr(layer, "activation", None)
    if act is None and getattr(layer, "float_function", None) == "softmax":
        act = nn.Softmax(dim=-1)
    return _activation(ctx, name, act, x, is_last, "activation")


@_converts("flatten")
def _flatten(ctx: _Context, name: str, layer: nn.Module, x: str, is_last: bool) -> str:
    in_shape = ctx.shapes[name][0]
    hint = {"layer": name, "kind": "flatten", "keras_order": bool(getattr(layer, "keras_order", False))}
    if hint["keras_order"] and len(in_shape) > 1:
        perm = [0] + list(range(2, len(in_shape) + 1)) + [1]
        x = ctx.builder.node("Transpose", [x], f"{name}_channels_last", perm=perm, hint=hint)
    return ctx.builder.node("Flatten", [x], name, axis=1, hint=hint)


@_converts("avgpool2d")
def _avgpool(ctx: _Context, name: str, layer: nn.Module, x: str, is_last: bool) -> str:
    area = int(np.prod(layer.pool_size))
    with torch.no_grad():
        r = float(layer.quantized_reciprocal())
    if not is_power_of_two(area) or r != 1.0 / area:
        raise InterchangeError(
            f"layer {name!r} averages over {area} values with reciprocal {r}; only a power-of-two "
            "area with an exact reciprocal divides exactly in every float implementation (and in "
            "firmware). Use a 2x2 or 4x4 pool_size and no average_quantizer (or one that holds "
            "1/area exactly)."
        )
    y = ctx.builder.node("AveragePool", [x], name, hint={"layer": name, "kind": "avgpool2d"},
                         kernel_shape=list(layer.pool_size), strides=list(layer.strides))
    return _activation(ctx, name, getattr(layer, "activation", None), y, is_last, "activation")


@_converts("passthrough")
def _passthrough(ctx: _Context, name: str, layer: nn.Module, x: str, is_last: bool) -> str:
    return x


# ----------------------------------------------------------------------------- the model
def _shapes(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, tuple[tuple, tuple]]:
    """Per-sample input and output shape of every child (one forward pass of zeros)."""
    shapes: dict[str, tuple[tuple, tuple]] = {}
    hooks = [child.register_forward_hook(
        lambda mod, args, out, n=n: shapes.__setitem__(n, (tuple(args[0].shape[1:]), tuple(out.shape[1:]))))
        for n, child in model.named_children()]
    try:
        with torch.no_grad():  # child by child: forward() would skip a trailing softmax
            x = torch.zeros((1,) + tuple(input_shape))
            for _, child in model.named_children():
                x = child(x)
    finally:
        for h in hooks:
            h.remove()
    return shapes


def _unsupported(name: str, layer: nn.Module) -> InterchangeError:
    kind = layer_kind(layer)
    why = {
        "batchnorm": "a separate batch norm is float arithmetic (a division by a square root); "
                     "use QDenseBatchnorm (batch norm folded into the quantized kernel)",
        "maxpool": "max pooling is not part of hqrun's exact export; use QAveragePooling2D",
    }.get(kind or "", "hqrun exports QDense, QConv1D, QConv2D, QDepthwiseConv2D, QActivation, "
                      "QAveragePooling2D, Flatten, QInput and a final softmax")
    return InterchangeError(f"layer {name!r} ({type(layer).__name__}) cannot be exported to "
                            f"QONNX exactly: {why}.")


def _input_nodes(ctx: _Context, kids: list[tuple[str, nn.Module]],
                 input_type: FixedPointType | None) -> tuple[str, int, QuantFormat | None, bool]:
    """The graph input and its quantizer: the model's own, else the firmware's input type."""
    x = "input"
    ctx.builder.unique(x)
    start, q = 0, None
    if kids and layer_kind(kids[0][1]) == "input":
        start, q = 1, getattr(kids[0][1], "activation", None)
    name = kids[0][0] if start else "input"
    if q is not None:
        _, fmt = activation_format(f"input quantizer {q} (layer {name!r})", q)
        ctx.record(name, "input", str(q), fmt)
        return ctx.builder.quant(x, fmt, f"{name}_quant", {"layer": name, "slot": "input",
                                                             "spec": str(q)}), start, fmt, False
    if input_type is None:
        return x, start, None, False
    fmt = format_of_type(input_type, f"the export's input type {input_type.hls_name}")
    ctx.record(name, "input", f"input_type {input_type.hls_name}", fmt)
    return ctx.builder.quant(x, fmt, f"{name}_quant", {"layer": name, "slot": "input",
                                                         "added": input_type.hls_name}), start, fmt, True


def build_graph(model: nn.Module, input_shape: tuple[int, ...],
                input_type: FixedPointType | None, keep_softmax: bool = True,
                metadata: dict[str, Any] | None = None) -> ExportedGraph:
    """The QONNX graph of ``model`` (eval mode), or an :class:`InterchangeError` naming the layer.

    ``input_type`` quantizes the graph input when the model has no input quantizer (the
    firmware's input format; None leaves the input float). ``keep_softmax`` keeps a final
    softmax as a Softmax node (its input is the logits either way).
    """
    model.eval()
    kids = list(model.named_children())
    if not kids:
        raise InterchangeError(f"{type(model).__name__} has no child layers; QONNX export expects "
                               "an hqrun model (QSequential of quantized layers).")
    ctx = _Context(GraphBuilder(), _shapes(model, input_shape), keep_softmax)
    x, start, in_fmt, added = _input_nodes(ctx, kids, input_type)
    for index in range(start, len(kids)):
        name, layer = kids[index]
        convert = CONVERTERS.get(layer_kind(layer) or "")
        if convert is None:
            raise _unsupported(name, layer)
        x = convert(ctx, name, layer, x, index == len(kids) - 1)
    if x == "input":
        raise InterchangeError("the model has no layer after its input; nothing to export.")
    out_shape = ctx.shapes[kids[-1][0]][1]
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    onnx_model = ctx.builder.model("input", input_shape, x, out_shape, meta)
    return ExportedGraph(onnx_model, tuple(input_shape), in_fmt, added, ctx.softmax, ctx.layers)
