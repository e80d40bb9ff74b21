"""Brevitas → QONNX → hqrun: models exported by Brevitas itself (fixed-point quantizers) import
into hqrun equal to qonnx's execution of the file and to Brevitas's own PyTorch forward."""

from __future__ import annotations

import warnings

import pytest
import torch

from hqrun.export import import_qonnx

with warnings.catch_warnings():  # Brevitas warns about optional kernels and deprecations on import
    warnings.simplefilter("ignore")
    brevitas = pytest.importorskip("brevitas", reason="Brevitas (test extra) is not installed")
    qnn = pytest.importorskip("brevitas.nn")
    from brevitas.export import export_qonnx
    from brevitas.quant import (Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Int16Bias,
                                Uint8ActPerTensorFixedPoint)

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore")


class BrevitasMLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True)
        self.fc1 = qnn.QuantLinear(16, 12, bias=True, weight_quant=Int8WeightPerTensorFixedPoint,
                                   weight_bit_width=4, bias_quant=Int16Bias, return_quant_tensor=True)
        self.relu = qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=4,
                                  return_quant_tensor=True)
        self.fc2 = qnn.QuantLinear(12, 5, bias=True, weight_quant=Int8WeightPerTensorFixedPoint,
                                   weight_bit_width=6, bias_quant=Int16Bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu(self.fc1(self.inp(x))))


class BrevitasCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True)
        self.conv = qnn.QuantConv2d(2, 3, 3, padding=1, weight_quant=Int8WeightPerTensorFixedPoint,
                                    weight_bit_width=4, bias_quant=Int16Bias, return_quant_tensor=True)
        self.relu = qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=4,
                                  return_quant_tensor=True)
        self.fc = qnn.QuantLinear(3 * 6 * 6, 4, bias=True, weight_quant=Int8WeightPerTensorFixedPoint,
                                  weight_bit_width=6, bias_quant=Int16Bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.relu(self.conv(self.inp(x))), 1))


def _calibrated(model: torch.nn.Module, shape: tuple[int, ...]) -> torch.nn.Module:
    """A few training-mode passes set Brevitas's statistics-based (power-of-two) scales."""
    torch.manual_seed(0)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(128, *shape) * 2)
    return model.eval()


@pytest.mark.parametrize("net, shape, layers", [
    (BrevitasMLP, (16,), ["input", "dense", "relu", "dense"]),
    (BrevitasCNN, (2, 6, 6), ["input", "conv2d", "relu", "flatten", "dense"]),
])
def test_a_brevitas_model_imports_equal_to_qonnx_and_to_brevitas(net, shape, layers, tmp_path):
    model = _calibrated(net(), shape)
    path = tmp_path / "brevitas.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(model, torch.randn(1, *shape), export_path=str(path))
    result = import_qonnx(path, n_random=2000)
    assert result.comparison.exact and result.comparison.n_samples == 2000
    assert [e["type"] for e in result.model_config["layers"]] == layers
    plan = result.plan.to_dict()
    assert plan["input"].startswith("quantized_bits(8,")
    assert any(s.get("activation", "").startswith("quantized_relu(4,") for s in plan["layers"].values())
    x = torch.randn(2000, *shape) * 2
    with torch.no_grad():
        theirs = model(x)
        theirs = getattr(theirs, "value", theirs)
        assert torch.equal(result.model(x), theirs)
