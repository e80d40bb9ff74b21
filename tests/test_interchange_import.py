"""QONNX import: graphs built here with onnx.helper (as other tools write them) become hqrun models
equal to qonnx's execution of them; what hqrun cannot read is refused naming the node; and
hqrun -> QONNX -> hqrun gives back the same plan, integer weights and outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import firmware_cases as fc
from hqrun.errors import InterchangeError
from hqrun.export import import_qonnx, to_qonnx
from hqrun.interchange.execute import GraphRunner
from hqrun.interchange.importer import load_qonnx
from hqrun.models import plan_from_model

torch.set_num_threads(1)
DOMAIN = "qonnx.custom_op.general"


class Graph:
    """A QONNX graph written node by node, the way an exporter writes one."""

    def __init__(self) -> None:
        self.nodes, self.inits, self.k = [], [], 0

    def _name(self, base: str) -> str:
        self.k += 1
        return f"{base}{self.k}"

    def const(self, value, base: str = "c") -> str:
        name = self._name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], domain: str = "", **attrs) -> str:
        out = self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, domain=domain, **attrs))
        return out

    def quant(self, x: str, scale, bits: int, signed: int = 1, narrow: int = 0,
              rounding: str = "ROUND", zeropt: float = 0.0, op: str = "Quant") -> str:
        return self.node(op, [x, self.const(scale), self.const(zeropt), self.const(float(bits))],
                         DOMAIN, signed=signed, narrow=narrow, rounding_mode=rounding)

    def weight(self, shape, scale, bits, seed, **kw) -> str:
        rng = np.random.default_rng(seed)
        return self.quant(self.const(rng.normal(0, 0.5, size=shape)), scale, bits, **kw)

    def model(self, in_shape, out: str, out_shape):
        graph = helper.make_graph(
            self.nodes, "test", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, *in_shape])],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, *out_shape])], self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                       helper.make_opsetid(DOMAIN, 1)])


def _mlp_graph(softmax: bool = True):
    g = Graph()
    x = g.quant("x", 2.0**-4, 8)
    h = g.node("Gemm", [x, g.weight((12, 6), 2.0**-3, 4, seed=1), g.weight((12,), 2.0**-5, 8, seed=2)],
               transB=1)
    h = g.quant(g.node("Relu", [h]), 2.0**-2, 4, signed=0)
    y = g.node("MatMul", [h, g.weight((12, 3), 2.0**-4, 6, seed=3, narrow=1)])
    y = g.node("Add", [y, g.weight((3,), 2.0**-4, 8, seed=4)])
    if softmax:
        y = g.node("Softmax", [y], axis=-1)
    return g.model((6,), y, (3,))


def _equal_to_qonnx(result, model_proto, n=500, seed=1):
    """The imported model against qonnx's own execution of the source, on fresh random inputs."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(d.dim_value) for d in model_proto.graph.input[0].type.tensor_type.shape.dim)[1:]
    x = rng.normal(0, 3, size=(n, *shape)).astype(np.float32)
    want = GraphRunner(load_qonnx(model_proto)).logits(x)
    with torch.no_grad():
        got = result.model(torch.from_numpy(x)).numpy()
    return np.array_equal(got, want)


def test_a_hand_built_qonnx_mlp_is_imported_bit_exact():
    proto = _mlp_graph()
    result = import_qonnx(proto, n_random=3000)
    assert result.comparison.exact and result.comparison.n_samples == 3000
    assert result.model_config == {"name": "mlp", "n_inputs": 6, "n_classes": 3, "hidden": [12]}
    plan = result.plan.to_dict()
    assert plan["input"] == "quantized_bits(8,3,alpha=1)"
    assert plan["layers"]["dense_1"] == {"kernel": "quantized_bits(4,0,alpha=1)",
                                         "bias": "quantized_bits(8,2,alpha=1)"}
    assert plan["layers"]["relu_1"] == {"activation": "quantized_relu(4,2)"}
    assert plan["layers"]["dense_2"]["kernel"] == "quantized_bits(6,1,symmetric=1,alpha=1)"
    assert "uniform on the input Quant's codes" in result.inputs
    assert _equal_to_qonnx(result, proto)


def test_a_graph_without_softmax_or_input_quant_is_a_layers_model():
    g = Graph()
    h = g.node("MatMul", ["x", g.weight((5, 4), 2.0**-3, 5, seed=1)])
    h = g.quant(h, 2.0**-3, 7)  # a quantizing activation without a ReLU
    y = g.node("MatMul", [h, g.weight((4, 2), 2.0**-2, 3, seed=2)])
    proto = g.model((5,), y, (2,))
    result = import_qonnx(proto, n_random=1000)
    cfg = result.model_config
    assert cfg["name"] == "layers" and cfg["n_inputs"] == 5
    assert [e["type"] for e in cfg["layers"]] == ["input", "dense", "activation", "dense"]
    assert result.plan.layers["act_1"] == {"activation": "quantized_bits(7,3,alpha=1)"}
    assert "ap_fixed<16,6" in result.inputs  # no input Quant: random inputs on the default grid
    assert _equal_to_qonnx(result, proto)


def test_a_float_relu_is_a_relu_layer_without_quantizer():
    g = Graph()
    h = g.node("Relu", [g.node("MatMul", [g.quant("x", 2.0**-3, 6), g.weight((5, 4), 2.0**-3, 4, seed=1)])])
    y = g.node("MatMul", [h, g.weight((4, 2), 2.0**-2, 3, seed=2)])
    proto = g.model((5,), y, (2,))
    result = import_qonnx(proto, n_random=1000)
    assert [e["type"] for e in result.model_config["layers"]] == ["input", "dense", "relu", "dense"]
    assert "relu_1" not in result.plan.layers
    assert _equal_to_qonnx(result, proto)


def test_a_hand_built_conv_model_is_imported_bit_exact():
    g = Graph()
    x = g.quant("x", 2.0**-4, 8)
    h = g.node("Conv", [x, g.weight((3, 2, 3, 3), 2.0**-3, 4, seed=1), g.weight((3,), 2.0**-4, 6, seed=2)],
               kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
    h = g.quant(g.node("Relu", [h]), 2.0**-2, 5, signed=0)
    h = g.node("AveragePool", [h], kernel_shape=[2, 2], strides=[2, 2])
    h = g.node("Flatten", [g.node("Transpose", [h], perm=[0, 2, 3, 1])], axis=1)
    y = g.node("Add", [g.node("MatMul", [h, g.weight((48, 4), 2.0**-4, 6, seed=3)]),
                       g.weight((4,), 2.0**-4, 8, seed=4)])
    proto = g.model((2, 8, 8), y, (4,))
    result = import_qonnx(proto, n_random=1000)
    layers = result.model_config["layers"]
    assert [e["type"] for e in layers] == ["input", "conv2d", "relu", "avgpool2d", "flatten", "dense"]
    assert layers[1]["padding"] == "same" and layers[4]["keras_order"] is True
    assert _equal_to_qonnx(result, proto)


def test_per_channel_power_of_two_weights_are_reproduced_exactly():
    g = Graph()
    x = g.quant("x", 2.0**-4, 8)
    scales = np.array([[2.0**-2, 2.0**-4, 2.0**-3]])
    y = g.node("MatMul", [x, g.weight((4, 3), scales, 4, seed=5, narrow=1)])
    proto = g.model((4,), y, (3,))
    result = import_qonnx(proto, n_random=1000)
    assert result.plan.layers["dense_1"]["kernel"] == "quantized_bits(4,0,alpha='auto_po2')"
    assert _equal_to_qonnx(result, proto)


def test_per_channel_weights_auto_po2_cannot_find_are_held_on_one_finer_grid():
    """Codes far below the top level: QKeras's auto_po2 would pick finer steps, so the importer
    falls back to one grid holding every channel exactly (and says so)."""
    g = Graph()
    w = np.array([[0.25, 0.0625, 0.0], [-0.25, 0.0, 0.125], [0.0, -0.0625, 0.125], [0.25, 0.0625, -0.125]])
    scales = np.array([[2.0**-2, 2.0**-4, 2.0**-3]])
    y = g.node("MatMul", [g.quant("x", 2.0**-4, 8), g.quant(g.const(w), scales, 4, narrow=1)])
    proto = g.model((4,), y, (3,))
    result = import_qonnx(proto, n_random=1000)
    assert result.plan.layers["dense_1"]["kernel"] == "quantized_bits(4,-1,alpha=1)"
    assert any("did not reproduce" in note for note in result.report["notes"])
    assert _equal_to_qonnx(result, proto)


def _residual(g: Graph) -> str:
    h = g.quant("x", 2.0**-3, 8)
    return g.node("Add", [g.node("MatMul", [h, g.weight((4, 4), 2.0**-3, 4, seed=2)]), h])


@pytest.mark.parametrize("build, words", [
    (lambda g: g.node("MatMul", ["x", g.weight((4, 2), 0.0123, 8, seed=1)]), ["MatMul", "not powers of two"]),
    (lambda g: g.node("MatMul", ["x", g.const(np.ones((4, 2)))]), ["MatMul", "float constant"]),
    (lambda g: g.quant("x", 2.0**-3, 8, zeropt=3.0), ["Quant", "zero point"]),
    (lambda g: g.node("Mul", ["x", g.const(np.ones(4))]), ["(Mul)", "no hqrun layer", "MatMul or Gemm"]),
    (lambda g: _residual(g), ["feeds 2 nodes", "no branches"]),
    (lambda g: g.quant("x", 2.0**-3, 8, rounding="FLOOR"), ["FLOOR", "round half to even"]),
])
def test_unsupported_constructs_are_refused_naming_the_node(build, words):
    g = Graph()
    y = build(g)
    if g.nodes[-1].op_type != "MatMul":
        y = g.node("MatMul", [y, g.weight((4, 2), 2.0**-3, 4, seed=9)])
    proto = g.model((4,), y, (2,))
    with pytest.raises(InterchangeError) as info:
        import_qonnx(proto, n_random=50)
    message = str(info.value)
    assert all(w in message for w in words), message


def test_asymmetric_explicit_pads_are_refused():
    g = Graph()
    y = g.node("Conv", [g.quant("x", 2.0**-3, 8), g.weight((2, 1, 3, 3), 2.0**-3, 4, seed=1)],
               kernel_shape=[3, 3], pads=[2, 0, 0, 0])
    proto = g.model((1, 6, 6), g.node("Flatten", [y], axis=1), (2 * 6 * 4,))
    with pytest.raises(InterchangeError, match="pads .* neither 'valid'"):
        import_qonnx(proto, n_random=50)


def test_given_inputs_are_used_and_checked_for_shape():
    proto = _mlp_graph()
    x = np.random.default_rng(0).normal(size=(64, 6))
    result = import_qonnx(proto, inputs=x)
    assert result.comparison.n_samples == 64 and result.inputs == "the samples given"
    with pytest.raises(InterchangeError, match="per sample"):
        import_qonnx(proto, inputs=x[:, :5])


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_round_trip_gives_the_same_plan_weights_and_outputs(seed):
    model = fc.random_model(seed)
    graph = to_qonnx(model)
    result = import_qonnx(graph.to_bytes(), n_random=500, seed=seed)
    back = result.model
    original = plan_from_model(model, "p").to_dict()
    if original["input"] is None:  # the graph declares the firmware's input format
        original["input"] = "quantized_bits(16,5,alpha=1)"
    assert plan_from_model(back, "p").to_dict() == original, result.report["notes"]
    assert [n for n, _ in back.named_children()] == [n for n, _ in model.named_children()]
    with torch.no_grad():
        for name, layer in model.named_children():
            if hasattr(layer, "quantized_kernel"):
                twin = getattr(back, name)
                assert torch.equal(layer.quantized_kernel(), twin.quantized_kernel())
                assert torch.equal(layer.quantized_bias(), twin.quantized_bias())
        x = fc.samples(model, 300, seed).astype(np.float32)
        xq = graph.added_input_type.quantize(torch.from_numpy(x)) if graph.added_input_type else \
            torch.from_numpy(x)
        assert torch.equal(model(xq.float()), back(torch.from_numpy(x)))


@pytest.mark.parametrize("case", ["cnn", "conv1d", "jet_exotic", "jet_bn_folded"])
def test_round_trip_of_the_firmware_cases(case):
    model = fc.NAMED[case]()
    result = import_qonnx(to_qonnx(model).to_bytes(), n_random=500)
    assert result.comparison.exact
    original = plan_from_model(model, "p").to_dict()
    if original["input"] is None:
        original["input"] = "quantized_bits(16,5,alpha=1)"
    assert plan_from_model(result.model, "p").to_dict() == original
