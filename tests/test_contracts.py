"""Contract tests every quantized layer and every firmware backend runs (HGQ2's layer-test habit).

A layer case says how to build a small model around the layer (float architecture + plan); the
base class checks, for each: the serialisation round trip (plan + weights-only state dict rebuild
the same function), the cost model prices it, the firmware IR reproduces it bit for bit (or refuses
with a message naming the layer, for layers hqrun does not deploy), and a training step moves its
parameters with finite gradients. A backend case exports one model through each registered backend
whose tool is installed and checks the report's common fields.
"""

from __future__ import annotations

import io
import shutil
from collections import OrderedDict
from typing import Callable

import numpy as np
import pytest
import torch
from torch import nn

import firmware_cases as fc
from hqrun.cost import estimate
from hqrun.errors import FirmwareError
from hqrun.firmware import backend_names, build_ir, emulate, export, quantize_samples
from hqrun.firmware.verify import torch_reference
from hqrun.models import QSequential, apply_plan, plan_from_model
from hqrun.quantizers.layers import (
    Flatten,
    QActivation,
    QAveragePooling2D,
    QBatchNormalization,
    QConv1D,
    QConv2D,
    QDense,
    QDenseBatchnorm,
    QDepthwiseConv2D,
    QInput,
)

torch.set_num_threads(1)

K = "quantized_bits(5,1,alpha=1)"
B = "quantized_bits(6,2,alpha=1)"
IN = "quantized_bits(8,3,alpha=1)"


def _float(layers: Callable[[], "OrderedDict[str, nn.Module]"], shape: tuple[int, ...]) -> Callable[[], QSequential]:
    def make() -> QSequential:
        torch.manual_seed(0)
        model = QSequential(layers(), input_shape=shape)
        fc._randomise(model, torch.Generator().manual_seed(1))
        return model

    return make


class LayerContract:
    """Subclasses set ``make_float`` (float architecture, fixed seed), ``plan`` and ``layer``."""

    make_float: Callable[[], QSequential]
    plan: dict
    layer: str
    deployable: bool = True

    def model(self) -> QSequential:
        return apply_plan(self.make_float(), self.plan).eval()

    def samples(self, model: QSequential, n: int = 64) -> np.ndarray:
        return fc.samples(model, n, 7)

    def test_serialisation_round_trip(self):
        model = self.model()
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        buf.seek(0)
        state = torch.load(buf, weights_only=True)
        again = apply_plan(self.make_float(), plan_from_model(model)).eval()
        again.load_state_dict(state)
        x = torch.as_tensor(self.samples(model), dtype=torch.float32)
        with torch.no_grad():
            assert torch.equal(model(x), again(x))
        assert plan_from_model(again).to_dict() == plan_from_model(model).to_dict()

    def test_cost_model_prices_it(self):
        rep = estimate(self.model())
        assert self.layer in {row["name"] for row in rep.rows}
        assert all(np.isfinite(v) for v in rep.totals.values() if isinstance(v, (int, float)))

    def test_firmware_is_bit_exact_or_refuses_by_name(self):
        model = self.model()
        if not self.deployable:
            with pytest.raises(FirmwareError, match=self.layer):
                build_ir(model, model.input_shape)
            return
        ir = build_ir(model, model.input_shape)
        x = quantize_samples(self.samples(model), ir.input_type, ir.input_grid)
        emu = emulate(ir, x)
        assert np.array_equal(emu.values(ir.last_quantized().name), torch_reference(model, x))

    def test_a_training_step_moves_its_parameters(self):
        model = self.model().train()
        layer = getattr(model, self.layer)
        params = [p for p in layer.parameters() if p.requires_grad]
        before = [p.detach().clone() for p in params]
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        x = torch.as_tensor(self.samples(model), dtype=torch.float32)
        loss = model(x).float().pow(2).mean()
        loss.backward()
        assert torch.isfinite(loss)
        assert all(p.grad is not None and torch.all(torch.isfinite(p.grad)) for p in params)
        opt.step()
        if params:
            assert any(not torch.equal(a, b) for a, b in zip(before, params))


class TestQDense(LayerContract):
    make_float = staticmethod(_float(lambda: OrderedDict(
        input=QInput(), dense_1=QDense(6, 5), relu_1=QActivation("relu"), dense_2=QDense(5, 3)), (6,)))
    plan = {"name": "c", "input": IN, "default": {"kernel": K, "bias": B,
                                                  "activation": "quantized_relu(4,1)"}}
    layer = "dense_1"


class TestQDenseBatchnorm(LayerContract):
    make_float = staticmethod(_float(lambda: OrderedDict(
        input=QInput(), dense_1=QDenseBatchnorm(6, 4), relu_1=QActivation("relu"),
        dense_2=QDense(4, 3)), (6,)))
    plan = TestQDense.plan
    layer = "dense_1"


class TestQBatchNormalizationFolded(LayerContract):
    """A separate batch norm: priced and trainable; deployable only when its fold is exact
    (random statistics are not powers of two, so the firmware refuses it by name)."""

    make_float = staticmethod(_float(lambda: OrderedDict(
        input=QInput(), dense_1=QDense(6, 4),
        bn_1=QBatchNormalization(4, gamma_quantizer=None, beta_quantizer=None,
                                 mean_quantizer=None, variance_quantizer=None),
        relu_1=QActivation("relu"), dense_2=QDense(4, 3)), (6,)))
    plan = TestQDense.plan
    layer = "bn_1"
    deployable = False


class TestQConv1D(LayerContract):
    make_float = staticmethod(_float(lambda: OrderedDict(
        input=QInput(), conv_1=QConv1D(2, 3, 3, padding="same"), relu_1=QActivation("relu"),
        flatten=Flatten(), dense_1=QDense(3 * 8, 2)), (2, 8)))
    plan = TestQDense.plan
    layer = "conv_1"


class TestQConv2DAndPooling(LayerContract):
    make_float = staticmethod(_float(lambda: OrderedDict(
        input=QInput(), conv_1=QConv2D(1, 2, 3), relu_1=QActivation("relu"),
        pool_1=QAveragePooling2D(2), flatten=Flatten(), dense_1=QDense(2 * 3 * 3, 2)), (1, 8, 8)))
    plan = TestQDense.plan
    layer = "conv_1"


class TestQAveragePooling2D(TestQConv2DAndPooling):
    layer = "pool_1"


class TestQActivationCast(LayerContract):
    make_float = staticmethod(TestQDense.make_float)
    plan = dict(TestQDense.plan, layers={"relu_1": {"activation": "quantized_bits(6,2,alpha=1)"}})
    layer = "relu_1"


class TestQDepthwiseConv2D(LayerContract):
    make_float = staticmethod(_float(lambda: OrderedDict(
        input=QInput(), dw_1=QDepthwiseConv2D(2, 3), relu_1=QActivation("relu"),
        flatten=Flatten(), dense_1=QDense(2 * 4 * 4, 2)), (2, 6, 6)))
    plan = TestQDense.plan
    layer = "dw_1"
    deployable = False


class LearnedContract(LayerContract):
    """Learned bit widths: the model has seen data in training mode first (activation ranges
    tracked, weight widths snapshotted), so its per-element formats are not trivial."""

    def model(self) -> QSequential:
        model = super().model().train()
        x = torch.as_tensor(self.samples(model, 128), dtype=torch.float32)
        with torch.no_grad():
            model(x)
            model.eval()
            model(x[:1])  # the weights' width snapshot, as validation takes it
        return model


class TestLearnedDense(LearnedContract):
    """Per-element learned widths everywhere (weights, biases, ReLU outputs, the input)."""

    make_float = staticmethod(TestQDense.make_float)
    plan = {"name": "l", "learn": ["kernel", "bias", "activation", "input"], "init_frac": 3}
    layer = "dense_1"


class TestLearnedConv1DFlatten(LearnedContract):
    """Per-element formats through a 'same'-padded conv and a Keras-order Flatten into a dense."""

    make_float = staticmethod(TestQConv1D.make_float)
    plan = TestLearnedDense.plan
    layer = "conv_1"


class TestLearnedConv2DAndPooling(LearnedContract):
    """Per-element learned kernels; activations one format per layer (average pooling over
    per-element formats is not deployed)."""

    make_float = staticmethod(TestQConv2DAndPooling.make_float)
    plan = {"name": "l", "input": "learned_bits(granularity='layer')",
            "default": {"kernel": "learned_bits()", "bias": "learned_bits()",
                        "activation": "learned_relu(granularity='layer')"}}
    layer = "conv_1"


# ----------------------------------------------------------------------------- backends
def _backend_available(name: str) -> str | None:
    """Why a backend cannot run here (its tool is missing), or None."""
    if name == "hls4ml" and shutil.which("g++") is None:
        return "g++ is needed for hls4ml's C simulation"
    if name == "rtl":
        from hqrun.firmware import get_backend

        missing = getattr(get_backend("rtl"), "missing_tools", lambda: None)()
        return f"RTL tools missing: {missing}" if missing else None
    return None


@pytest.mark.slow
@pytest.mark.parametrize("name", backend_names())
def test_backend_contract(name, tmp_path):
    reason = _backend_available(name)
    if reason:
        pytest.skip(reason)
    model = fc.jet_q6()
    x = fc.samples(model, 50, 3)
    result = export(model, x, tmp_path / "fw", {"backend": name, "synthesize": "never"})
    report = result.report
    assert result.passed and report["status"] == "PASSED" and report["backend"] == name
    assert report["verification"]["n_samples"] == 50 and report["verification"]["csim_equal"]
    assert report["simulator"] and report["synthesis"]["status"] == "not run"
    assert (tmp_path / "fw" / "report.md").read_text().startswith("# Firmware report — PASSED")
