"""QONNX export: every exportable model's graph equals the model bit for bit under qonnx's
executor; what QONNX cannot express is refused naming the layer; a graph that differs is never
written where a good one belongs."""

from __future__ import annotations

import json
import sys
from collections import OrderedDict

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import firmware_cases as fc
from hqrun.errors import InterchangeError
from hqrun.export import export_qonnx, to_qonnx
from hqrun.interchange.builder import read_hint
from hqrun.interchange.execute import GraphRunner
from hqrun.interchange.verify import float32_risks
from hqrun.models import QSequential, build_model
from hqrun.quantizers import FixedPointType, Quantizer
from hqrun.quantizers.grid import FixedPointGrid
from hqrun.quantizers.layers import QActivation, QAveragePooling2D, QBatchNormalization, QDense, QInput
from hqrun.quantizers.lowering import Lowering

torch.set_num_threads(1)


class wrapping_bits(Quantizer):  # noqa: N801 - spec name
    """A cast to ap_fixed<6,2> that wraps on overflow: exact in HLS, not in QONNX."""

    name = "wrapping_bits"

    def __init__(self) -> None:
        super().__init__()
        self.bits = 6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fixed_point_type().quantize(x)

    def fixed_point_type(self) -> FixedPointType:
        return FixedPointType(6, 2, True, "RND_CONV", "WRAP")

    def lowering(self) -> Lowering:
        return Lowering("quant", self.fixed_point_grid())


class floor_claiming_round(Quantizer):  # noqa: N801 - spec name
    """Claims a round-half-to-even cast but floors: its graph must fail verification."""

    name = "floor_claiming_round"

    def __init__(self) -> None:
        super().__init__()
        self.bits = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(torch.floor(x * 16) / 16, -8, 8 - 1 / 16)

    def fixed_point_type(self) -> FixedPointType:
        return FixedPointType(8, 4, True, "RND_CONV", "SAT")

    def lowering(self) -> Lowering:
        return Lowering("quant", self.fixed_point_grid())


class two_width_bits(Quantizer):  # noqa: N801 - spec name
    """Even output units on 4 bits, odd ones on 6 (kernels arrive in Keras layout (in, units)):
    per-element formats, as a learned-width quantizer has."""

    name = "two_width_bits"

    def __init__(self) -> None:
        super().__init__()
        self.bits = 6

    def fixed_point_grid(self) -> FixedPointGrid:
        frac = np.array([[3, 5, 3, 5]])
        return FixedPointGrid(np.ones((1, 4), bool), np.ones((1, 4), int), frac)

    def fixed_point_type(self) -> FixedPointType:
        return self.fixed_point_grid().union()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fixed_point_grid().quantize(x)

    def lowering(self) -> Lowering:
        return Lowering("quant", self.fixed_point_grid())


def _export(model, tmp_path, n=400, seed=0, **kw):
    x = fc.samples(model, n, seed).astype(np.float32)
    return export_qonnx(model, x, tmp_path / "qonnx", **kw), x


@pytest.mark.parametrize("case", sorted(fc.NAMED))
def test_every_firmware_case_exports_bit_exact(case, tmp_path):
    model = fc.NAMED[case]()
    result, x = _export(model, tmp_path)
    assert result.passed and result.comparison.mismatches == 0 and result.comparison.n_samples == 400
    report = json.loads((tmp_path / "qonnx" / "report.json").read_text())
    assert report["status"] == "PASSED"
    assert report["verification"]["vs_model_float32"]["mismatches"] == 0
    assert report["verification"]["vs_model_float64"]["mismatches"] == 0
    assert "PASSED" in (tmp_path / "qonnx" / "report.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qonnx"]  # no temporary leftovers
    # the file on disk is the graph that was checked
    from hqrun.interchange import load_qonnx

    again = GraphRunner(load_qonnx(tmp_path / "qonnx" / "model.onnx")).logits(x)
    assert np.array_equal(again, GraphRunner(result.graph.wrapper).logits(x))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_random_heterogeneous_plans_export_bit_exact(seed):
    model = fc.random_model(seed)
    graph = to_qonnx(model)
    x = fc.samples(model, 300, seed).astype(np.float32)
    got = GraphRunner(graph.wrapper).logits(x)
    xm = x if graph.added_input_type is None else \
        graph.added_input_type.quantize(torch.from_numpy(x)).numpy()
    with torch.no_grad():
        want = model(torch.from_numpy(xm)).numpy()
    assert np.array_equal(got, want)


def test_graph_is_cleaned_by_qonnx_and_carries_the_formats(tmp_path):
    model = fc.jet_exotic()
    graph = to_qonnx(model, tmp_path / "m.onnx")
    ops = [n.op_type for n in graph.wrapper.graph.node]
    assert ops.count("MatMul") == 4 and ops[-1] == "Softmax" and "BipolarQuant" in ops
    assert all(n.name for n in graph.wrapper.graph.node)  # GiveUniqueNodeNames
    assert graph.wrapper.graph.input[0].name == "global_in"  # GiveReadableTensorNames
    quant = [n for n in graph.wrapper.graph.node if n.op_type == "Quant"]
    attrs = {a.name: a for a in quant[0].attribute}
    assert attrs["rounding_mode"].s == b"ROUND"
    specs = {read_hint(n).get("spec") for n in graph.wrapper.graph.node}
    assert "ternary(alpha=1)" in specs and "quantized_po2(4,max_value=1)" in specs
    assert (tmp_path / "m.onnx").stat().st_size > 1000


def test_softmax_may_be_left_out():
    graph = to_qonnx(fc.jet_q6(), softmax=False)
    assert graph.wrapper.graph.node[-1].op_type == "Add" and not graph.has_softmax


def test_input_without_quantizer_gets_the_firmware_input_type_or_stays_float():
    graph = to_qonnx(fc.jet_q6())
    assert graph.added_input_type == FixedPointType.from_hls_name("ap_fixed<16,6,AP_RND_CONV,AP_SAT>")
    assert graph.wrapper.graph.node[0].op_type == "Quant"
    floating = to_qonnx(fc.jet_q6(), input_type=None)
    assert floating.added_input_type is None and floating.input_format is None
    g = floating.wrapper.graph
    assert [n.op_type for n in floating.wrapper.find_consumers(g.input[0].name)] == ["MatMul"]


def _one_dense(**slots) -> QSequential:
    torch.manual_seed(0)
    layers = OrderedDict(input=QInput("quantized_bits(8,2,alpha=1)"),
                         dense_1=QDense(8, 4, kernel_quantizer=slots.get("kernel", "quantized_bits(4,0,alpha=1)"),
                                        bias_quantizer=slots.get("bias", "quantized_bits(4,0,alpha=1)")))
    if "act" in slots:
        layers["act_1"] = slots["act"]
    return QSequential(layers, input_shape=(8,)).eval()


@pytest.mark.parametrize("slots, words", [
    ({"kernel": "stochastic_ternary(alpha='auto_po2')"}, ["dense_1", "stochastic"]),
    ({"kernel": "quantized_bits(4,0,alpha='auto')"}, ["dense_1", "no fixed-point grid", "auto"]),
    ({"kernel": None}, ["dense_1", "float"]),
    ({"bias": None}, ["dense_1", "bias", "float"]),
    ({"act": QActivation("quantized_relu(4,0,use_stochastic_rounding=True)")}, ["act_1", "stochastic"]),
    ({"act": QActivation("quantized_tanh(4)")}, ["act_1", "no exact QONNX equivalent"]),
    ({"act": QActivation("sigmoid")}, ["act_1", "float sigmoid"]),
    ({"act": QActivation("wrapping_bits()")}, ["act_1", "wraps on overflow"]),
    ({"act": QActivation("quantized_relu_po2(4)")}, ["act_1", "no exact QONNX equivalent"]),
    ({"kernel": "two_width_bits()"}, ["dense_1", "own bit widths"]),
])
def test_inexpressible_quantizers_are_refused_naming_the_layer(slots, words):
    with pytest.raises(InterchangeError) as info:
        to_qonnx(_one_dense(**slots))
    message = str(info.value)
    assert all(w in message for w in words), message
    assert "\n" not in message


def test_inexpressible_layers_are_refused_naming_the_layer():
    bn = build_model({"name": "mlp", "hidden": [8], "batchnorm": True}, "q6")
    with pytest.raises(InterchangeError, match="'bn_1'.*QDenseBatchnorm"):
        to_qonnx(bn)
    torch.manual_seed(0)
    pool3 = QSequential(OrderedDict(input=QInput("quantized_bits(8,2,alpha=1)"),
                                    pool=QAveragePooling2D(3)), input_shape=(1, 6, 6))
    with pytest.raises(InterchangeError, match="'pool'.*9 values"):
        to_qonnx(pool3)
    assert QBatchNormalization  # imported for the refusal's subject


def test_a_graph_that_differs_is_kept_aside_and_refused(tmp_path):
    model = _one_dense(act=QActivation("floor_claiming_round()"))
    (tmp_path / "qonnx").mkdir()
    (tmp_path / "qonnx" / "report.json").write_text("{}")  # an older export stays untouched
    with pytest.raises(InterchangeError, match="does not equal the model"):
        _export(model, tmp_path)
    failed = json.loads((tmp_path / "qonnx.FAILED" / "report.json").read_text())
    assert failed["status"] == "FAILED" and failed["verification"]["vs_model_float32"]["mismatches"] > 0
    assert (tmp_path / "qonnx" / "report.json").read_text() == "{}"


def test_a_foreign_directory_is_never_replaced(tmp_path):
    (tmp_path / "qonnx").mkdir()
    (tmp_path / "qonnx" / "notes.txt").write_text("mine")
    with pytest.raises(InterchangeError, match="not an hqrun QONNX export"):
        _export(fc.jet_q6(), tmp_path, n=20)
    assert (tmp_path / "qonnx" / "notes.txt").read_text() == "mine"


def test_wide_accumulators_are_named_as_float32_risks():
    assert float32_risks(fc.jet_q6(), FixedPointType(16, 6), (16,)) == []
    wide = build_model({"name": "jet_dnn"}, "q16", seed=0)
    risks = float32_risks(wide, FixedPointType(16, 6), (16,))
    assert risks and risks[0].startswith("dense_1: accumulator") and "24-bit" in risks[0]


def test_a_missing_qonnx_is_a_one_paragraph_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "qonnx", None)  # `import qonnx` now fails
    with pytest.raises(InterchangeError, match=r"qonnx is missing.*\[interchange\]"):
        to_qonnx(fc.jet_q6())
