"""A small ONNX graph builder: unique names, float32 initializers, QONNX quantization nodes.

Why: the exporter's converters should say *what* a layer becomes (a MatMul on a quantized
weight, a ReLU then a Quant), not repeat ONNX bookkeeping. Every node may carry a note for a
later reader — the hqrun layer, slot and quantizer spec it came from — in its ``doc_string``
(``hqrun:{json}``), which every ONNX tool keeps and none interprets; ``hqrun import`` reads it
back as a hint (and checks it, see :mod:`hqrun.interchange.read_graph`).
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from .formats import QuantFormat

__all__ = ["GraphBuilder", "QONNX_DOMAIN", "HINT_PREFIX", "read_hint"]

#: The domain of QONNX's custom operators (what qonnx, FINN and hls4ml look for).
QONNX_DOMAIN = "qonnx.custom_op.general"
#: Prefix of hqrun's note in a node's doc_string.
HINT_PREFIX = "hqrun:"


def read_hint(node: Any) -> dict[str, Any]:
    """hqrun's note on a node (``{}`` when it has none or it is not hqrun's JSON)."""
    doc = getattr(node, "doc_string", "") or ""
    if not doc.startswith(HINT_PREFIX):
        return {}
    try:
        hint = json.loads(doc[len(HINT_PREFIX):])
    except ValueError:
        return {}
    return hint if isinstance(hint, dict) else {}


class GraphBuilder:
    """Collects nodes and initializers; :meth:`model` turns them into an ONNX ModelProto."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._names: set[str] = set()

    def unique(self, base: str) -> str:
        name, k = base, 1
        while name in self._names:
            k += 1
            name = f"{base}_{k}"
        self._names.add(name)
        return name

    def constant(self, base: str, value: Any) -> str:
        """A float32 initializer (the values must be float32-exact; callers check)."""
        from onnx import numpy_helper

        name = self.unique(base)
        array = np.asarray(value, dtype=np.float32)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op_type: str, inputs: Sequence[str], base: str, *, domain: str = "",
             hint: dict[str, Any] | None = None, **attrs: Any) -> str:
        """Append one node; returns its output's name."""
        from onnx import helper

        out = self.unique(base)
        node = helper.make_node(op_type, list(inputs), [out], name=out, domain=domain, **attrs)
        if hint:
            node.doc_string = HINT_PREFIX + json.dumps(hint, sort_keys=True)
        self.nodes.append(node)
        return out

    def quant(self, x: str, fmt: QuantFormat, base: str, hint: dict[str, Any] | None = None) -> str:
        """``Quant(x, scale, 0, bits)`` or ``BipolarQuant(x, scale)`` as ``fmt`` says."""
        scale = self.constant(f"{base}_scale", fmt.scale)
        if fmt.op == "BipolarQuant":
            return self.node("BipolarQuant", [x, scale], base, domain=QONNX_DOMAIN, hint=hint)
        zero = self.constant(f"{base}_zeropt", 0.0)
        bits = self.constant(f"{base}_bitwidth", float(fmt.bits))
        return self.node("Quant", [x, scale, zero, bits], base, domain=QONNX_DOMAIN, hint=hint,
                         signed=int(fmt.signed), narrow=int(fmt.narrow),
                         rounding_mode=fmt.rounding)

    def model(self, input_name: str, input_shape: Sequence[int], output_name: str,
              output_shape: Sequence[int], metadata: dict[str, str]) -> Any:
        """The ModelProto (batch size 1, float32 in and out, qonnx's preferred opsets)."""
        from onnx import TensorProto, helper
        from qonnx.util.basic import qonnx_make_model

        graph = helper.make_graph(
            self.nodes, "hqrun_model",
            [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, *input_shape])],
            [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [1, *output_shape])],
            initializer=self.initializers,
        )
        model = qonnx_make_model(graph, producer_name="hqrun")
        helper.set_model_props(model, metadata)
        return model
