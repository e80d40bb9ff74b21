"""QONNX graph → the layers hqrun would build: a walk along the graph's single data path.

Why a pattern walk rather than a general converter: hqrun's models are sequences of quantized
layers, so an imported graph must be one chain from input to output, and each hqrun layer is a
short, fixed pattern of QONNX nodes (a MatMul on a quantized constant plus an Add of a quantized
bias is a dense layer; a Relu then a Quant is a quantized ReLU). Whatever does not fit a pattern
is refused, naming the node and listing what hqrun reads, rather than approximated.

Constants are evaluated with qonnx's own operator implementations, so the weight values hqrun
stores are exactly the ones qonnx's executor uses. Notes that an hqrun export left on the nodes
(layer names, quantizer specs; :mod:`hqrun.interchange.builder`) are read as hints only: the
importer checks every hint against the values before using it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hqrun.errors import HqrunError, InterchangeError
from hqrun.quantizers.layers_core import conv_padding
from hqrun.safenames import is_identifier

from .builder import read_hint
from .formats import QuantFormat, is_power_of_two

__all__ = ["LayerSpec", "SlotSpec", "ReadGraph", "read_graph", "SUPPORTED_NODES"]

QUANT_OPS = ("Quant", "IntQuant", "BipolarQuant")
SKIPPED_OPS = ("Identity", "Dropout")
SUPPORTED_NODES = ("MatMul or Gemm (+ Add of a constant bias), Conv (1-D, 2-D, depthwise), Relu, "
                   "Quant/IntQuant/BipolarQuant, AveragePool, Flatten/Reshape (optionally after a "
                   "channels-last Transpose), Softmax (last), Identity/Dropout")


@dataclass
class SlotSpec:
    """The quantizer of one plan slot: candidate specs (best first) and where it came from."""

    candidates: list[str]
    where: str
    fmt: QuantFormat | None = None


@dataclass
class LayerSpec:
    """One hqrun layer: a ``layers``-builder entry plus its slots and weights (torch layout)."""

    type: str
    name: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    slots: dict[str, SlotSpec] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    quantized: dict[str, np.ndarray] = field(default_factory=dict)
    nodes: list[str] = field(default_factory=list)

    def set_param(self, key: str, raw: np.ndarray, values: np.ndarray) -> None:
        """A parameter in torch layout: the graph's constant and what its Quant makes of it."""
        self.weights[key] = np.ascontiguousarray(raw)
        self.quantized[key] = np.ascontiguousarray(values)


@dataclass
class ReadGraph:
    """What the walk found: the per-sample input shape, the layers and the logits tensor."""

    input_shape: tuple[int, ...]
    layers: list[LayerSpec]
    logits: str
    notes: list[str] = field(default_factory=list)


def _attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _label(node: Any) -> str:
    return f"node {node.name or node.output[0]!r} ({node.op_type})"


def _refuse(node: Any, why: str) -> InterchangeError:
    return InterchangeError(f"{_label(node)}: {why} hqrun imports chains of {SUPPORTED_NODES}.")


def _hinted_name(*nodes: Any) -> str | None:
    """The layer name an hqrun export noted, if it is a usable identifier (layer names become
    C++ names in firmware)."""
    for node in nodes:
        name = read_hint(node).get("layer")
        if is_identifier(name):
            return name
    return None


class _Reader:
    """The walk's state: the graph, its constants, and the layers found so far."""

    def __init__(self, wrapper: Any) -> None:
        self.w = wrapper
        self.graph = wrapper.graph
        self.inits = {i.name for i in self.graph.initializer}
        self.layers: list[LayerSpec] = []
        self.notes: list[str] = []

    # ------------------------------------------------------------------ constants
    def consumers(self, tensor: str) -> list[Any]:
        return list(self.w.find_consumers(tensor) or [])

    def quant_format(self, node: Any) -> QuantFormat:
        """The parameters of a quantization node (they must be constants, zero point 0)."""
        args = [self.w.get_initializer(t) for t in node.input[1:]]
        if any(a is None for a in args):
            raise _refuse(node, "its scale/zero point/bit width are computed in the graph, not "
                                "constants.")
        scale = np.asarray(args[0], dtype=np.float64)
        if node.op_type == "BipolarQuant":
            return QuantFormat("BipolarQuant", 1, scale)
        zeropt, bits = np.asarray(args[1]), np.asarray(args[2])
        if np.any(zeropt != 0):
            raise _refuse(node, "its zero point is not 0; hqrun's fixed-point formats are "
                                "symmetric around 0 (use a zero point of 0, as Brevitas's "
                                "*FixedPoint quantizers do).")
        if bits.size != 1 or float(bits.reshape(-1)[0]) < 1 or not float(bits.reshape(-1)[0]).is_integer():
            raise _refuse(node, f"its bit width {bits.tolist()} is not one positive integer.")
        return QuantFormat("Quant", int(bits.reshape(-1)[0]), scale, bool(_attr(node, "signed", 1)),
                           bool(_attr(node, "narrow", 0)), str(_attr(node, "rounding_mode", "ROUND")).upper())

    def constant(self, tensor: str) -> tuple[np.ndarray, np.ndarray, QuantFormat | None, Any] | None:
        """``(raw, values, format, quant node)`` of a constant tensor (None for data): the
        initializer and what the quantization node on it (if any) computes from it."""
        value = self.w.get_initializer(tensor)
        if value is not None:
            return np.asarray(value), np.asarray(value), None, None
        node = self.w.find_producer(tensor)
        if node is None or node.op_type not in QUANT_OPS:
            return None
        source = self.w.get_initializer(node.input[0])
        if source is None:
            return None
        return np.asarray(source), self._evaluate(node), self.quant_format(node), node

    def _evaluate(self, node: Any) -> np.ndarray:
        """The node's output computed by qonnx's own implementation of the operator."""
        from qonnx.custom_op.registry import getCustomOp

        context = {t: self.w.get_initializer(t) for t in node.input}
        context[node.output[0]] = np.zeros_like(context[node.input[0]])
        getCustomOp(node).execute_node(context, self.graph)
        return np.asarray(context[node.output[0]])

    # ------------------------------------------------------------------ walking
    def next_node(self, x: str) -> Any | None:
        users = self.consumers(x)
        if len(users) > 1:
            raise _refuse(users[1], f"tensor {x!r} feeds {len(users)} nodes; hqrun models are one "
                                    "chain of layers (no branches or skip connections).")
        return users[0] if users else None

    def shape(self, tensor: str) -> tuple[int, ...]:
        shape = self.w.get_tensor_shape(tensor)
        if shape is None:
            raise InterchangeError(f"tensor {tensor!r} has no known shape after qonnx's shape "
                                   "inference; export the graph with static shapes.")
        return tuple(int(s) for s in shape)

    def add_layer(self, spec: LayerSpec) -> LayerSpec:
        self.layers.append(spec)
        return spec

    def bias_after(self, y: str, n_out: int) -> tuple[str, Any, SlotSpec | None, list[str]]:
        """An ``Add`` of a constant right after ``y`` is the layer's bias."""
        node = self.next_node(y)
        if node is None or node.op_type != "Add":
            return y, None, None, []
        other = node.input[1] if node.input[0] == y else node.input[0]
        found = self.constant(other)
        if found is None:
            return y, None, None, []
        raw, values, fmt, qnode = found
        if values.size != n_out or raw.size != n_out:
            raise _refuse(node, f"adds a constant of shape {list(values.shape)} to {n_out} outputs; "
                                "a bias has one value per output channel.")
        return (node.output[0], (raw.reshape(n_out), values.reshape(n_out)),
                self.slot("bias", fmt, qnode, node), [node.name])

    def slot(self, slot: str, fmt: QuantFormat | None, qnode: Any, user: Any,
             transpose: bool = False) -> SlotSpec:
        """A weight slot: its format (per-channel scales put in torch layout) and hint."""
        where = f"the {slot} of {_label(user)}"
        if fmt is not None and transpose and fmt.scale.ndim == 2:
            fmt = QuantFormat(fmt.op, fmt.bits, fmt.scale.T, fmt.signed, fmt.narrow, fmt.rounding)
        hint = read_hint(qnode).get("spec") if qnode is not None else None
        return SlotSpec([hint] if isinstance(hint, str) else [], where, fmt)


# ---------------------------------------------------------------------- node patterns
def _dense(r: _Reader, node: Any, x: str) -> str:
    if node.op_type == "Gemm":
        if _attr(node, "transA", 0) or _attr(node, "alpha", 1.0) != 1.0 or _attr(node, "beta", 1.0) != 1.0:
            raise _refuse(node, "only Gemm with transA=0, alpha=1, beta=1 is a dense layer.")
        trans_b = bool(_attr(node, "transB", 0))
    else:
        trans_b = False
    if len(r.shape(x)) != 2:
        raise _refuse(node, f"its input has shape {list(r.shape(x))}; a dense layer takes (N, features).")
    found = r.constant(node.input[1])
    if found is None:
        raise _refuse(node, "its weight is computed from data, not a constant.")
    raw, w, fmt, qnode = found
    weight = w if trans_b else w.T  # torch layout (out, in)
    spec = LayerSpec("dense", _hinted_name(node), {"units": int(weight.shape[0])}, nodes=[node.name])
    spec.set_param("weight", raw if trans_b else raw.T, weight)
    spec.slots["kernel"] = r.slot("kernel", fmt, qnode, node, transpose=not trans_b)
    y = node.output[0]
    if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]:
        found_b = r.constant(node.input[2])
        if found_b is None:
            raise _refuse(node, "its bias input C is not a constant.")
        braw, b, bfmt, bnode = found_b
        n_out = (weight.shape[0],)
        spec.set_param("bias", np.broadcast_to(braw, n_out), np.broadcast_to(b, n_out))
        spec.slots["bias"] = r.slot("bias", bfmt, bnode, node)
    else:
        y = _bias_after(r, spec, y, int(weight.shape[0]))
    spec.options["use_bias"] = "bias" in spec.weights
    r.add_layer(spec)
    return y


def _bias_after(r: _Reader, spec: LayerSpec, y: str, n_out: int) -> str:
    y, found, bslot, extra = r.bias_after(y, n_out)
    if found is not None:
        spec.set_param("bias", *found)
        spec.slots["bias"] = bslot
        spec.nodes += extra
    return y


def _conv_padding(node: Any, sizes: tuple[int, ...], kernel: tuple[int, ...],
                  strides: tuple[int, ...], dilations: tuple[int, ...]) -> str:
    auto = str(_attr(node, "auto_pad", "NOTSET"))
    n = len(sizes)
    pads = list(_attr(node, "pads", [0] * (2 * n)))
    if auto == "VALID":
        pads = [0] * (2 * n)
    elif auto not in ("NOTSET", ""):
        raise _refuse(node, f"auto_pad={auto}; give explicit pads (hqrun pads 'valid' or "
                            "TensorFlow's 'same').")
    if not any(pads):
        return "valid"
    same = [conv_padding("same", s, k, t, d) for s, k, t, d in zip(sizes, kernel, strides, dilations)]
    if pads == [p[0] for p in same] + [p[1] for p in same]:
        return "same"
    raise _refuse(node, f"its pads {pads} are neither 'valid' (none) nor TensorFlow's 'same' "
                        f"({[p[0] for p in same] + [p[1] for p in same]}), the two paddings hqrun's "
                        "convolutions have.")


def _conv(r: _Reader, node: Any, x: str) -> str:
    in_shape = r.shape(x)
    found = r.constant(node.input[1])
    if found is None:
        raise _refuse(node, "its weight is computed from data, not a constant.")
    raw, w, fmt, qnode = found
    nd = w.ndim - 2
    if nd not in (1, 2) or len(in_shape) != nd + 2:
        raise _refuse(node, f"a {nd}-D convolution on input {list(in_shape)}; hqrun has 1-D and 2-D ones.")
    kernel = tuple(int(k) for k in w.shape[2:])
    strides = tuple(_attr(node, "strides", [1] * nd))
    dilations = tuple(_attr(node, "dilations", [1] * nd))
    padding = _conv_padding(node, in_shape[2:], kernel, strides, dilations)
    group, c_in, c_out = int(_attr(node, "group", 1)), in_shape[1], int(w.shape[0])
    opts: dict[str, Any] = {"kernel_size": list(kernel), "strides": list(strides), "padding": padding,
                            "dilation_rate": list(dilations)}
    if group == 1:
        kind = f"conv{nd}d"
        opts["filters"] = c_out
    elif nd == 2 and group == c_in and w.shape[1] == 1 and c_out % c_in == 0:
        kind = "depthwise_conv2d"
        opts["depth_multiplier"] = c_out // c_in
    else:
        raise _refuse(node, f"a grouped convolution (group={group}); hqrun has plain (group 1) "
                            "and depthwise (group = input channels) convolutions.")
    spec = LayerSpec(kind, _hinted_name(node), opts, nodes=[node.name])
    spec.set_param("weight", raw, w)
    spec.slots["kernel"] = r.slot("kernel", fmt, qnode, node)
    y = node.output[0]
    if len(node.input) > 2 and node.input[2]:
        found_b = r.constant(node.input[2])
        if found_b is None:
            raise _refuse(node, "its bias input is not a constant.")
        braw, b, bfmt, bnode = found_b
        spec.set_param("bias", braw.reshape(c_out), b.reshape(c_out))
        spec.slots["bias"] = r.slot("bias", bfmt, bnode, node)
    else:
        y = _bias_after(r, spec, y, c_out)
    spec.options["use_bias"] = "bias" in spec.weights
    r.add_layer(spec)
    return y


def _avgpool(r: _Reader, node: Any, x: str) -> str:
    kernel = tuple(int(k) for k in _attr(node, "kernel_shape", []))
    strides = tuple(int(s) for s in _attr(node, "strides", [1] * len(kernel)))
    if len(kernel) != 2 or any(_attr(node, "pads", [0] * 4)) or _attr(node, "ceil_mode", 0) or \
            str(_attr(node, "auto_pad", "NOTSET")) not in ("NOTSET", "VALID", ""):
        raise _refuse(node, "only 2-D average pooling without padding (ceil_mode 0) is a "
                            "QAveragePooling2D.")
    if not is_power_of_two(kernel[0] * kernel[1]):
        raise _refuse(node, f"it averages over {kernel[0] * kernel[1]} values; only a power-of-two "
                            "area divides exactly (in any float library and in firmware).")
    r.add_layer(LayerSpec("avgpool2d", _hinted_name(node),
                          {"pool_size": list(kernel), "strides": list(strides)}, nodes=[node.name]))
    return node.output[0]


def _flatten(r: _Reader, node: Any, x: str, keras_order: bool, extra: list[str]) -> str:
    in_shape, out_shape = r.shape(x), r.shape(node.output[0])
    if len(out_shape) != 2 or out_shape[1] != int(np.prod(in_shape[1:])):
        raise _refuse(node, f"it reshapes {list(in_shape)} to {list(out_shape)}; hqrun reads only a "
                            "flatten to (N, features).")
    if node.op_type == "Flatten" and int(_attr(node, "axis", 1)) != 1:
        raise _refuse(node, "only Flatten with axis=1 keeps the batch axis.")
    if len(in_shape) > 2:
        r.add_layer(LayerSpec("flatten", _hinted_name(node), {"keras_order": keras_order},
                              nodes=extra + [node.name]))
    return node.output[0]


def _transpose(r: _Reader, node: Any, x: str) -> str:
    rank = len(r.shape(x))
    perm = list(_attr(node, "perm", []))
    follower = r.next_node(node.output[0])
    if perm != [0] + list(range(2, rank)) + [1] or follower is None or \
            follower.op_type not in ("Flatten", "Reshape"):
        raise _refuse(node, "a Transpose is read only as the channels-last step of a flatten "
                            "(perm [0, 2, ..., 1] followed by Flatten/Reshape).")
    return _flatten(r, follower, node.output[0], True, [node.name])


def _activation(r: _Reader, node: Any, relu: Any | None, x: str, is_input: bool) -> str:
    """A Quant on data (after a Relu when ``relu`` is given): input or activation quantizer."""
    from .spec_formats import activation_spec

    fmt = r.quant_format(node)
    where = f"{_label(node)}" + (f" after {_label(relu)}" if relu is not None else "")
    derived = activation_spec(fmt, relu is not None, where)
    spec = SlotSpec([_checked_hint(read_hint(node).get("spec"), fmt, relu is not None) or derived],
                    where, fmt)
    nodes = ([relu.name] if relu is not None else []) + [node.name]
    if is_input:
        r.add_layer(LayerSpec("input", _hinted_name(node), slots={"activation": spec}, nodes=nodes))
    else:
        _attach_activation(r, spec, relu is not None, nodes, relu or node, node)
    return node.output[0]


def _checked_hint(spec: Any, fmt: QuantFormat, relu: bool) -> str | None:
    """An exporter's spec for an activation node, kept only if it computes exactly the node."""
    if not isinstance(spec, str):
        return None
    from hqrun import quantizers

    from .quantizer_formats import activation_format

    try:
        hinted_relu, hinted = activation_format("hint", quantizers.get(spec))
    except HqrunError:
        return None
    return spec if hinted_relu == relu and hinted.same_as(fmt) else None


#: The plan spec of a float ReLU fused into a layer (QKeras's ``activation="relu"``).
FLOAT_RELU = "relu"


def _attach_activation(r: _Reader, spec: SlotSpec | None, relu: bool, nodes: list[str],
                       *hinted: Any) -> None:
    """Add an activation: ``relu`` says whether a Relu node is part of it, ``spec`` its
    quantizer (None: a float ReLU). It goes into the layer before it when an hqrun export said
    it was that layer's own (QKeras's ``activation=`` argument), else it is a layer of its own
    (``relu`` when it starts with a ReLU, else ``activation``)."""
    hint = next((read_hint(n) for n in hinted if read_hint(n)), {})
    prev = r.layers[-1] if r.layers else None
    fused = (prev is not None and hint.get("slot") == "activation" and hint.get("layer") == prev.name
             and prev.type in ("dense", "conv1d", "conv2d", "depthwise_conv2d", "avgpool2d")
             and "activation" not in prev.slots)
    if fused:
        prev.slots["activation"] = spec or SlotSpec([FLOAT_RELU], _label(hinted[0]))
        prev.nodes += nodes
        return
    layer = LayerSpec("relu" if relu else "activation", _hinted_name(*hinted), nodes=nodes)
    if spec is not None:
        layer.slots["activation"] = spec
    r.add_layer(layer)


def read_graph(wrapper: Any) -> ReadGraph:
    """Walk a cleaned qonnx ModelWrapper (batch size 1) into hqrun layer specs, or refuse."""
    graph = wrapper.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise InterchangeError(
            f"the graph has {len(graph.input)} inputs and {len(graph.output)} outputs; hqrun "
            "imports models with one input and one output."
        )
    r = _Reader(wrapper)
    x, out = graph.input[0].name, graph.output[0].name
    input_shape = r.shape(x)[1:]
    logits = out
    pending_relu = None
    while True:
        node = r.next_node(x)
        if node is None:
            break
        op = node.op_type
        if pending_relu is not None and op not in QUANT_OPS:
            _attach_activation(r, None, True, [pending_relu.name], pending_relu)
            pending_relu = None
        if op in QUANT_OPS:
            x = _activation(r, node, pending_relu, x, is_input=not r.layers and pending_relu is None)
            pending_relu = None
        elif op == "Relu":
            pending_relu, x = node, node.output[0]
        elif op in ("MatMul", "Gemm"):
            x = _dense(r, node, x)
        elif op == "Conv":
            x = _conv(r, node, x)
        elif op == "AveragePool":
            x = _avgpool(r, node, x)
        elif op in ("Flatten", "Reshape"):
            x = _flatten(r, node, x, False, [])
        elif op == "Transpose":
            x = _transpose(r, node, x)
        elif op == "Softmax":
            if node.output[0] != out or len(r.shape(x)) != 2 or int(_attr(node, "axis", -1)) not in (-1, 1):
                raise _refuse(node, "a Softmax is read only as the last node, over the classes of "
                                    "(N, classes) logits.")
            logits = x
            r.add_layer(LayerSpec("softmax", _hinted_name(node), nodes=[node.name]))
            x = node.output[0]
        elif op in SKIPPED_OPS:
            x = node.output[0]
        else:
            raise _refuse(node, "this operator has no hqrun layer.")
    if pending_relu is not None:
        _attach_activation(r, None, True, [pending_relu.name], pending_relu)
    if x != out:
        raise InterchangeError(f"the walk from the input ended at tensor {x!r}, not at the graph "
                               f"output {out!r}; hqrun imports one chain from input to output.")
    if not r.layers or r.layers[0].type != "input":
        r.layers.insert(0, LayerSpec("input", "input"))
    if not any(layer.type in ("dense", "conv1d", "conv2d", "depthwise_conv2d") for layer in r.layers):
        raise InterchangeError("the graph has no dense or convolution layer; nothing to import.")
    return ReadGraph(tuple(input_shape), r.layers, logits, r.notes)
