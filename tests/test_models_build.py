"""Model builders, plan application, lookups and weight transfer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from hqrun.errors import ConfigError, PlanError
from hqrun.models import (
    Plan,
    activation_layers,
    apply_plan,
    build_model,
    jet_dnn,
    load_plan,
    plan_from_model,
    transfer_weights,
    weight_layers,
)
from hqrun.quantizers.layers import QDenseBatchnorm, is_quantizer

CONF = Path(__file__).resolve().parents[1] / "conf"
JET_NAMES = ["input", "dense_1", "relu_1", "dense_2", "relu_2", "dense_3", "relu_3", "dense_4",
             "softmax"]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_jet_dnn_structure() -> None:
    model = jet_dnn()
    assert model.layer_names() == JET_NAMES
    assert [(m.in_features, m.units) for m in weight_layers(model).values()] == \
        [(16, 64), (64, 32), (32, 32), (32, 5)]
    assert list(activation_layers(model)) == ["relu_1", "relu_2", "relu_3", "softmax"]
    assert model.input_shape == (16,)


def test_batchnorm_variants() -> None:
    names = jet_dnn(batchnorm=True).layer_names()
    assert names[:5] == ["input", "dense_1", "bn_1", "relu_1", "dense_2"]
    folded = jet_dnn(batchnorm=True, fold_batchnorm=True)
    assert folded.layer_names() == JET_NAMES
    assert isinstance(folded.dense_1, QDenseBatchnorm)


def test_forward_returns_logits_and_predict_proba() -> None:
    model = jet_dnn().eval()
    x = torch.randn(7, 16)
    logits = model(x)
    assert logits.shape == (7, 5)
    assert not torch.allclose(logits.sum(-1), torch.ones(7))
    assert torch.allclose(model.predict_proba(x), torch.softmax(logits, -1))


@pytest.mark.parametrize("path", sorted((CONF / "model").glob("*.yaml")), ids=lambda p: p.stem)
@pytest.mark.parametrize("plan", ["float", "q6"])
def test_shipped_model_configs_build_and_run(path: Path, plan: str) -> None:
    cfg = OmegaConf.load(path)
    model = build_model(cfg, plan).eval()
    x = torch.randn(3, *model.input_shape)
    out = model(x)
    n_classes = int(cfg.n_classes)
    assert out.shape == (3, n_classes)
    assert torch.isfinite(out).all()


def test_cnn_names_and_shapes() -> None:
    model = build_model({"name": "cnn"}, "q6")
    assert model.layer_names() == ["input", "conv_1", "relu_1", "pool_1", "conv_2", "relu_2",
                                   "pool_2", "flatten", "dense_1", "relu_3", "dense_2", "softmax"]
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert str(model.conv_1.kernel_quantizer) == "quantized_bits(6,0,alpha=1)"


def test_plan_defaults_and_overrides() -> None:
    plan = {
        "name": "h", "input": "quantized_bits(8,3,alpha=1)",
        "default": {"kernel": "quantized_bits(6,0,alpha=1)", "bias": "quantized_bits(6,0,alpha=1)",
                    "activation": "quantized_relu(6,0)"},
        "layers": {"dense_1": {"kernel": "quantized_bits(4,0,alpha=1)"},
                   "relu_2": {"activation": "quantized_relu(3,1)"}, "dense_4": {"bias": None}},
    }
    model = build_model({"name": "jet_dnn"}, plan)
    assert str(model.input.activation) == "quantized_bits(8,3,alpha=1)"
    assert str(model.dense_1.kernel_quantizer) == "quantized_bits(4,0,alpha=1)"
    assert str(model.dense_1.bias_quantizer) == "quantized_bits(6,0,alpha=1)"
    assert str(model.dense_2.kernel_quantizer) == "quantized_bits(6,0,alpha=1)"
    assert str(model.relu_1.activation) == "quantized_relu(6,0)"
    assert str(model.relu_2.activation) == "quantized_relu(3,1)"
    assert model.dense_4.bias_quantizer is None
    assert isinstance(model.softmax.activation, torch.nn.Softmax)  # default never hits softmax
    assert is_quantizer(model.dense_3.kernel_quantizer)


def test_plan_from_model_round_trip() -> None:
    plan = load_plan("q4")
    plan.layers["dense_2"] = {"kernel": "quantized_bits(3,0,alpha=1)"}
    model = build_model({"name": "jet_dnn"}, plan)
    again = apply_plan(jet_dnn(), plan_from_model(model))
    for (n, a), (_, b) in zip(model.named_children(), again.named_children()):
        assert getattr(a, "quantizer_specs", dict)() == getattr(b, "quantizer_specs", dict)(), n
    # back to float
    apply_plan(model, "float")
    assert all(m.kernel_quantizer is None for m in weight_layers(model).values())
    assert isinstance(model.relu_1.activation, torch.nn.ReLU)


def test_width_multiplier() -> None:
    units = lambda m: [l.units for l in weight_layers(m).values()]  # noqa: E731
    assert units(build_model({"name": "jet_dnn", "width_multiplier": 0.5})) == [32, 16, 16, 5]
    assert units(build_model({"name": "jet_dnn", "width_multiplier": [2, 1, 0.25]})) == [128, 32, 8, 5]
    assert units(build_model({"name": "mlp", "hidden": [10, 10],
                              "width_multiplier": {"dense_2": 3.0}})) == [10, 30, 5]
    with pytest.raises(ConfigError, match="width_multiplier"):
        build_model({"name": "jet_dnn", "width_multiplier": [1.0]})


def test_model_config_errors() -> None:
    with pytest.raises(ConfigError, match="jet_dnn"):
        build_model({"name": "resnet"})
    with pytest.raises(ConfigError, match="hiden"):
        build_model({"name": "jet_dnn", "hiden": [3]})


def test_seeded_build_is_deterministic() -> None:
    a = build_model({"name": "jet_dnn"}, "q6", seed=3)
    b = build_model({"name": "jet_dnn"}, "q6", seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_transfer_weights() -> None:
    src = build_model({"name": "jet_dnn", "batchnorm": True}, "float")
    with torch.no_grad():
        src.bn_1.moving_mean.fill_(0.25)
    dst = build_model({"name": "jet_dnn", "batchnorm": True}, "q6")
    copied = transfer_weights(src, dst)
    assert "dense_1.weight" in copied and "bn_1.moving_mean" in copied
    assert torch.equal(src.dense_1.weight, dst.dense_1.weight)
    assert torch.equal(dst.bn_1.moving_mean, torch.full((64,), 0.25))
    x = torch.randn(5, 16)
    assert not torch.equal(src.eval()(x), dst.eval()(x))  # same weights, quantized arithmetic
    wide = build_model({"name": "jet_dnn", "width_multiplier": 2.0}, "q6")
    with pytest.raises(PlanError, match="dense_1.weight"):
        transfer_weights(src, wide)
    assert "dense_4.bias" in transfer_weights(src, wide, strict=False)


def test_plan_object_and_model_builder_agree() -> None:
    plan = Plan.from_dict({"name": "p", "default": {"kernel": "quantized_bits(5,0,alpha=1)"}})
    model = build_model({"name": "mlp", "hidden": [8]}, plan)
    assert str(model.dense_2.kernel_quantizer) == "quantized_bits(5,0,alpha=1)"
    assert model.dense_2.bias_quantizer is None and isinstance(model.relu_1.activation, torch.nn.ReLU)


def test_qat_learns_a_separable_problem() -> None:
    """A q4 MLP trained with straight-through gradients (and QKeras's clips) learns; eval is exact."""
    from hqrun.models import attach_weight_constraints

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 4, generator=gen)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    model = build_model({"name": "mlp", "n_inputs": 4, "n_classes": 2, "hidden": [16]}, "q4", seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    attach_weight_constraints(model, opt)
    for epoch in range(4):
        for i in range(0, 2048, 128):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[i:i + 128]), y[i:i + 128]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x).argmax(-1) == y).float().mean().item()
        k = model.dense_1.quantized_kernel()
    assert acc > 0.9
    assert torch.equal(k * 8, torch.round(k * 8)) and model.dense_1.weight.abs().max() <= 1.0
