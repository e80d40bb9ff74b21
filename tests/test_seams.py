"""The seams: a quantizer, a layer and a firmware backend defined here, in the test file, plug into
the cost model and the firmware without any table being edited; every IR pass does its one job."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import firmware_cases as fc
from hqrun.cost import estimate
from hqrun.errors import FirmwareError
from hqrun.firmware import SimResult, build_ir, emulate, export, quantize_samples
from hqrun.firmware import backends as backend_registry
from hqrun.firmware.passes import PASSES
from hqrun.firmware.verify import torch_reference
from hqrun.models import QSequential, build_model
from hqrun.quantizers import FixedPointType, Quantizer, get
from hqrun.quantizers.layers import QActivation, QBatchNormalization, QConv2D, QDense, QInput, QLayer
from hqrun.quantizers.lowering import Lowering
from hqrun.quantizers.typeinfer import infer_types

torch.set_num_threads(1)


class half_step_relu(Quantizer):  # noqa: N801 - spec name
    """ReLU onto multiples of 1/2 in [0, 3.5] (ap_ufixed<3,2>): a quantizer no table knows."""

    name = "half_step_relu"

    def __init__(self) -> None:
        super().__init__()
        self.bits = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xq = torch.clamp(torch.round(F.relu(x) * 2.0) / 2.0, 0.0, 3.5)
        return x + (xq - x).detach()

    def fixed_point_type(self) -> FixedPointType:
        return FixedPointType(3, 2, False, "RND_CONV", "SAT")

    def lowering(self) -> Lowering:
        return Lowering("relu", self.fixed_point_grid())


PLAN = {"name": "seam", "input": "quantized_bits(8,3,alpha=1)",
        "default": {"kernel": "quantized_bits(5,0,alpha=1)", "bias": "quantized_bits(5,0,alpha=1)",
                    "activation": "half_step_relu()"}}


def _seam_model() -> QSequential:
    model = build_model({"name": "jet_dnn", "hidden": [8, 8]}, PLAN, seed=3)
    fc._randomise(model, torch.Generator().manual_seed(3))
    return model.eval()


def test_a_new_quantizer_plugs_into_spec_cost_and_firmware():
    assert str(get("half_step_relu()")) == "half_step_relu()"
    model = _seam_model()
    rep = estimate(model)
    assert rep.totals["energy"] > 0 and rep.totals["ebops"] > 0
    relu = next(r for r in rep.rows if r["name"] == "relu_1")
    assert relu["output_bits"] == 3
    ir = build_ir(model, (16,))
    assert ir.layer("relu_1").out_type == FixedPointType(3, 2, False, "RND_CONV", "SAT")
    x = quantize_samples(fc.samples(model, 64, 0), ir.input_type)
    emu = emulate(ir, x)
    last = ir.last_quantized()
    assert np.array_equal(emu.values(last.name), torch_reference(model, x))


def test_a_new_layer_kind_plugs_in_by_its_type_kind():
    """A layer class unknown to every module, saying only that it is a dense layer."""

    class ScaledDense(QLayer):
        plan_slots = {"kernel": "kernel_quantizer", "bias": "bias_quantizer"}
        type_kind = "dense"
        keras_class = "Dense"

        def __init__(self, n_in: int, n_out: int) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(n_out, n_in) * 0.5)
            self.bias = nn.Parameter(torch.randn(n_out) * 0.5)
            self.kernel_quantizer = get("quantized_bits(4,0,alpha=1)")
            self.bias_quantizer = get("quantized_bits(6,2,alpha=1)")
            self.activation = None

        def quantized_kernel(self) -> torch.Tensor:
            return self.kernel_quantizer(self.weight)

        def quantized_bias(self) -> torch.Tensor:
            return self.bias_quantizer(self.bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.linear(x, self.quantized_kernel(), self.quantized_bias())

    torch.manual_seed(0)
    model = QSequential(OrderedDict(input=QInput("quantized_bits(6,2,alpha=1)"),
                                    mine=ScaledDense(5, 3)), input_shape=(5,)).eval()
    (_, lt) = infer_types(model, None, "exact")
    assert lt.kind == "dense" and lt.accumulator is not None
    # 6-bit input x 4-bit weights over the non-zero weights, plus each non-zero bias's width
    nonzero_bias = int((model.mine.quantized_bias() != 0).sum())
    assert estimate(model).totals["ebops"] == 15 * 6 * 4 - 6 * 4 * int(
        (model.mine.quantized_kernel() == 0).sum()) + lt.bias.width * nonzero_bias
    ir = build_ir(model, (5,))
    x = quantize_samples(np.random.default_rng(0).normal(0, 3, (50, 5)), ir.input_type)
    assert np.array_equal(emulate(ir, x).values("mine"), torch_reference(model, x))


@pytest.fixture
def echo_backend(monkeypatch):
    """A backend defined here: it 'simulates' with a numpy re-implementation of dense/relu."""

    class EchoBackend:
        corrupt = False

        def validate(self, options):
            pass

        def check(self, ir, options):
            if any(layer.op.startswith("conv") for layer in ir.layers):
                raise FirmwareError("the echo backend builds dense layers only")

        def write(self, ir, project_dir: Path, options):
            project_dir.mkdir(parents=True)
            (project_dir / "design.json").write_text(json.dumps(ir.to_dict()))
            return project_dir

        def simulate(self, project, ir, x):
            codes, cur, frac = {}, None, None
            for layer in ir.layers:
                if layer.op == "input":
                    cur = np.round(np.ldexp(x, layer.out_type.fractional)).astype(np.int64)
                    frac = layer.out_type.fractional
                    continue
                if layer.op == "dense":
                    acc = (cur @ layer.weight.T) << (layer.accum_type.fractional - frac
                                                     - layer.weight_type.fractional)
                    acc = acc + (layer.bias << (layer.accum_type.fractional - layer.bias_type.fractional))
                    cur, frac = acc, layer.accum_type.fractional
                elif layer.op == "relu":
                    cur = np.maximum(cur, 0)
                else:
                    continue
                values = layer.out_type.quantize(torch.from_numpy(np.ldexp(cur.astype(np.float64), -frac)))
                cur = np.round(np.ldexp(values.numpy(), layer.out_type.fractional)).astype(np.int64)
                frac = layer.out_type.fractional
                codes[layer.name] = cur.copy()
            if self.corrupt:
                codes[ir.last_quantized().name][0, 0] += 1
            out = np.ldexp(codes[ir.last_quantized().name].astype(np.float64), -frac)
            return SimResult(codes, {}, out, 0.0, {"simulator": "numpy echo"})

        def synthesise(self, project, options):
            return {"status": "done", "tool": "echo", "lut": 1}

        def describe(self, project, options, synthesis):
            return {"echo_version": "1"}

        def report_lines(self, report):
            return ["", "## Echo", "", f"- luts: {report['synthesis'].get('lut')}"]

    monkeypatch.setattr(backend_registry, "_REGISTRY", dict(backend_registry._REGISTRY))
    backend_registry.register_backend("echo")(EchoBackend)
    return EchoBackend


def test_a_backend_defined_here_plugs_into_export(tmp_path, echo_backend):
    assert "echo" in backend_registry.backend_names()
    model = fc.jet_q6()
    result = export(model, fc.samples(model, 40, 1), tmp_path / "fw", {"backend": "echo"})
    report = json.loads((tmp_path / "fw" / "report.json").read_text())
    assert result.passed and report["status"] == "PASSED" and report["backend"] == "echo"
    assert report["simulator"] == "numpy echo" and report["echo_version"] == "1"
    assert "## Echo" in (tmp_path / "fw" / "report.md").read_text()
    assert (tmp_path / "fw" / "project" / "design.json").is_file()
    echo_backend.corrupt = True
    with pytest.raises(FirmwareError, match="MISMATCH"):
        export(model, fc.samples(model, 40, 1), tmp_path / "bad", {"backend": "echo"})
    assert (tmp_path / "bad.FAILED" / "report.json").is_file() and not (tmp_path / "bad").exists()


def test_unknown_backend_names_the_choices(tmp_path):
    with pytest.raises(FirmwareError, match="hls4ml.*rtl"):
        export(fc.jet_q6(), np.zeros((2, 16)), tmp_path / "fw", {"backend": "quartus_magic"})
    assert not (tmp_path / "fw").exists()


# ----------------------------------------------------------------------------- one test per pass
def test_passes_run_in_their_declared_order():
    names = [name for name, _ in PASSES]
    assert names == ["fold_batchnorm", "merge_quant_activation", "insert_conv_padding"]
    ir = build_ir(fc.jet_q6(), (16,))
    assert ir.passes == names


def _bn_model(gamma: float) -> QSequential:
    k = "quantized_bits(6,0,alpha=1)"
    model = QSequential(OrderedDict(
        input=QInput("quantized_bits(8,3,alpha=1)"),
        dense_1=QDense(6, 4, kernel_quantizer=k, bias_quantizer=k),
        bn_1=QBatchNormalization(4, gamma_quantizer=None, beta_quantizer=None,
                                 mean_quantizer=None, variance_quantizer=None, epsilon=0.0),
        relu_1=QActivation("quantized_relu(6,2)"),
        dense_2=QDense(4, 3, kernel_quantizer=k, bias_quantizer=k)), input_shape=(6,))
    torch.manual_seed(1)
    with torch.no_grad():
        bn = model.bn_1
        bn.moving_mean.copy_(torch.tensor([0.25, -0.5, 0.125, 0.0]))
        bn.moving_variance.fill_(1.0)
        bn.gamma.fill_(gamma)
        bn.beta.copy_(torch.tensor([0.5, 0.0, -0.25, 0.75]))
    return model.eval()


def test_fold_batchnorm_pass_folds_power_of_two_scales_exactly():
    model = _bn_model(gamma=2.0)
    ir = build_ir(model, (6,))
    dense = ir.layer("dense_1")
    assert dense.sources == ["dense_1", "bn_1"] and "bn_1" not in [layer.name for layer in ir.layers]
    (lt,) = [t for t in infer_types(model, ir.input_type, "exact") if t.name == "bn_1"]
    assert dense.accum_type.width == lt.output.width  # the type inference priced the fold
    x = quantize_samples(np.random.default_rng(2).normal(0, 2, (80, 6)), ir.input_type)
    assert np.array_equal(emulate(ir, x).values("dense_2"), torch_reference(model, x))


def test_fold_batchnorm_pass_refuses_other_scales():
    with pytest.raises(FirmwareError, match="bn_1.*QDenseBatchnorm"):
        build_ir(_bn_model(gamma=1.5), (6,))


def test_merge_quant_activation_pass_makes_the_cast_the_result_type():
    model = build_model({"name": "jet_dnn", "hidden": [8]}, {
        "name": "m", "input": "quantized_bits(8,3,alpha=1)",
        "default": {"kernel": "quantized_bits(5,0,alpha=1)", "bias": "quantized_bits(5,0,alpha=1)",
                    "activation": "quantized_relu(4,1)"},
        "layers": {"relu_1": {"activation": "quantized_bits(6,2,alpha=1)"}}}, seed=0).eval()
    ir = build_ir(model, (16,))
    dense = ir.layer("dense_1")
    assert dense.out_type == FixedPointType(6, 3, True, "RND_CONV", "SAT")
    assert dense.sources == ["dense_1", "relu_1"] and dense.accum_type != dense.out_type


def test_merge_quant_activation_pass_refuses_a_cast_after_a_relu():
    k = "quantized_bits(5,0,alpha=1)"
    model = QSequential(OrderedDict(
        input=QInput("quantized_bits(8,3,alpha=1)"),
        dense_1=QDense(4, 3, kernel_quantizer=k, bias_quantizer=k, activation="relu"),
        q_1=QActivation("quantized_bits(6,2,alpha=1)")), input_shape=(4,)).eval()
    with pytest.raises(FirmwareError, match="q_1.*right after a dense/conv"):
        build_ir(model, (4,))


def test_insert_conv_padding_pass_makes_same_padding_explicit():
    k = "quantized_bits(4,0,alpha=1)"
    model = QSequential(OrderedDict(
        input=QInput("quantized_bits(8,2,alpha=1)"),
        conv_1=QConv2D(1, 2, 3, padding="same", kernel_quantizer=k, bias_quantizer=k)),
        input_shape=(1, 5, 5)).eval()
    ir = build_ir(model, (1, 5, 5))
    assert [layer.op for layer in ir.layers] == ["input", "zeropad2d", "conv2d"]
    pad = ir.layers[1]
    assert pad.attrs["pads"] == [(1, 1), (1, 1)] and pad.out_shape == (1, 7, 7)
    assert ir.layers[2].in_shape == (1, 7, 7) and ir.layers[2].out_shape == (2, 5, 5)
    x = quantize_samples(np.random.default_rng(0).normal(0, 1, (10, 1, 5, 5)), ir.input_type)
    assert np.array_equal(emulate(ir, x).values("conv_1"), torch_reference(model, x))
