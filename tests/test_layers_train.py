"""Layer behaviour beyond eval exactness: gradients, layouts, batch norm, init, slots, errors."""

from __future__ import annotations

import math

import pytest
import torch

from hqrun.errors import ConfigError, QuantizerSpecError
from hqrun.quantizers import get
from hqrun.quantizers.layers import (
    Flatten,
    QActivation,
    QAveragePooling2D,
    QBatchNormalization,
    QConv2D,
    QDense,
    QDenseBatchnorm,
    QDepthwiseConv2D,
    QInput,
    is_elementwise,
)

KQ = "quantized_bits(6,0,alpha=1)"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_quantizers_accepted_as_string_dict_object_none() -> None:
    obj = get(KQ)
    as_dict = {"class_name": "quantized_bits", "config": {"bits": 6, "integer": 0, "alpha": 1}}
    for spec in (KQ, as_dict, obj):
        layer = QDense(4, 3, kernel_quantizer=spec)
        assert str(layer.kernel_quantizer) == KQ
    assert QDense(4, 3, kernel_quantizer=None).kernel_quantizer is None
    assert QDense(4, 3, kernel_quantizer="linear").kernel_quantizer is None
    with pytest.raises(QuantizerSpecError):
        QDense(4, 3, kernel_quantizer="quantized_bitz(4)")


def test_kernel_quantizer_gets_qkeras_alpha_quirk() -> None:
    """QKeras layers turn a kernel quantizer's alpha=None into "auto_po2"; biases keep it."""
    layer = QDense(4, 3, kernel_quantizer="quantized_bits(4,0)", bias_quantizer="quantized_bits(4,0)")
    assert layer.kernel_quantizer.alpha == "auto_po2"
    assert layer.bias_quantizer.alpha is None
    layer.set_quantizer("kernel", "quantized_bits(4,0)")
    assert layer.kernel_quantizer.alpha == "auto_po2"


def test_straight_through_gradient_of_dense() -> None:
    """quantized_bits passes gradients unchanged: dL/dW = g^T x computed with float weights."""
    layer = QDense(8, 5, kernel_quantizer=KQ, bias_quantizer=KQ).train()
    x = torch.randn(10, 8)
    g = torch.randn(10, 5)
    layer(x).backward(g)
    assert torch.allclose(layer.weight.grad, g.t() @ x, atol=1e-5)
    assert torch.allclose(layer.bias.grad, g.sum(0), atol=1e-5)


def test_quantized_relu_gradient_is_clipped() -> None:
    act = QActivation("quantized_relu(3,0)").train()
    x = torch.tensor([-0.5, 0.25, 0.5, 2.0], requires_grad=True)
    act(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0]


def test_training_value_is_quantized() -> None:
    layer = QDense(8, 5, kernel_quantizer=KQ).train()
    k = layer.quantized_kernel().detach()
    assert torch.equal(k * 32, torch.round(k * 32))
    assert k.abs().max() <= 1


def test_per_channel_kernel_scale_uses_keras_output_axis() -> None:
    """alpha="auto_po2" scales per output unit: quantizing one unit alone gives the same row."""
    spec = "quantized_bits(4,0,alpha='auto_po2')"
    layer = QDense(12, 6, kernel_quantizer=spec).eval()
    with torch.no_grad():
        layer.weight.mul_(torch.logspace(-2, 1, 6, base=2.0)[:, None])  # very different rows
        full = layer.quantized_kernel()
        q = get(spec).eval()
        for j in range(6):
            alone = q(layer.weight[j:j + 1].t()).t()
            assert torch.equal(alone[0], full[j]), j
    assert not is_elementwise(layer.kernel_quantizer)


def test_conv_per_channel_layout() -> None:
    spec = "quantized_bits(4,0,alpha='auto_po2')"
    conv = QConv2D(3, 4, 3, kernel_quantizer=spec).eval()
    dw = QDepthwiseConv2D(3, 3, depth_multiplier=2, kernel_quantizer=spec).eval()
    q = get(spec).eval()
    with torch.no_grad():
        conv.weight.mul_(torch.tensor([0.1, 1.0, 3.0, 0.3])[:, None, None, None])
        full = conv.quantized_kernel()
        for o in range(4):  # Keras kernel (kh, kw, C_in, 1) of output channel o alone
            alone = q(conv.weight[o:o + 1].permute(2, 3, 1, 0)).permute(3, 2, 0, 1)
            assert torch.equal(alone[0], full[o])
        # QKeras quirk kept: the depthwise kernel (kh, kw, C, M) is scaled per last axis, i.e.
        # per depth-multiplier index m, shared across input channels.
        keras = dw._to_keras(dw.weight)
        full = dw._to_keras(dw.quantized_kernel())
        for m in range(2):
            assert torch.equal(q(keras[..., m:m + 1]), full[..., m:m + 1])


def test_keras_initialisation() -> None:
    layer = QDense(100, 50)
    limit = math.sqrt(6 / 150)
    assert layer.weight.abs().max() <= limit and layer.weight.abs().max() > 0.9 * limit
    assert torch.equal(layer.bias, torch.zeros(50))
    dw = QDepthwiseConv2D(8, 3, depth_multiplier=2)
    assert dw.weight.abs().max() <= math.sqrt(6 / (9 * 8 + 9 * 2))  # Keras fans of (3,3,8,2)
    he = QConv2D(4, 8, 3, kernel_initializer="he_normal")
    assert abs(he.weight.std().item() - math.sqrt(2 / 36)) < 0.05
    with pytest.raises(ConfigError, match="glorot_uniform"):
        QDense(3, 3, kernel_initializer="orthogonal_typo")


def test_same_padding_is_tensorflow_style() -> None:
    conv = QConv2D(1, 1, 2, strides=2, padding="same", use_bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    x = torch.arange(25.0).reshape(1, 1, 5, 5)
    y = conv(x)
    assert y.shape == (1, 1, 3, 3)
    assert y[0, 0, 2, 2].item() == 24.0  # TF pads after: the last window holds only x[4,4]
    with pytest.raises(ConfigError, match="padding"):
        QConv2D(1, 1, 3, padding="full")


def test_batchnorm_keras_semantics() -> None:
    bn = QBatchNormalization(3, gamma_quantizer=None, beta_quantizer=None, mean_quantizer=None,
                             variance_quantizer=None).double()
    x = torch.randn(64, 3, dtype=torch.float64) * 2 + 1
    bn.train()
    y = bn(x)
    assert torch.allclose(y.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-9)
    var = x.var(0, unbiased=False)
    assert torch.allclose(bn.moving_variance, 0.99 + 0.01 * var)  # biased variance, momentum 0.99
    assert torch.allclose(bn.moving_mean, 0.01 * x.mean(0))
    bn.eval()
    with torch.no_grad():
        bn.gamma.fill_(2.0)
    expect = (x - bn.moving_mean) / torch.sqrt(bn.moving_variance + 1e-3) * 2.0
    assert torch.allclose(bn(x), expect)


def test_batchnorm_qkeras_default_quantizers() -> None:
    bn = QBatchNormalization(4).eval()
    specs = bn.quantizer_specs()
    assert specs["beta"].startswith("quantized_po2(5")
    assert specs["gamma"] == "quantized_relu_po2(6,max_value=2048)"
    with torch.no_grad():
        bn.gamma.copy_(torch.tensor([0.3, 0.7, 1.2, 3.1]))
    g = bn.quantized_gamma()
    assert torch.equal(torch.log2(g), torch.round(torch.log2(g)))  # powers of two
    assert bn(torch.randn(5, 4, 2, 2)).shape == (5, 4, 2, 2)


def test_dense_batchnorm_matches_dense_then_bn_in_float() -> None:
    """Without quantizers the folded layer equals QDense followed by batch norm."""
    fused = QDenseBatchnorm(6, 4).double()
    dense = QDense(6, 4).double()
    bn = QBatchNormalization(4, gamma_quantizer=None, beta_quantizer=None, mean_quantizer=None,
                             variance_quantizer=None).double()
    with torch.no_grad():
        dense.weight.copy_(fused.weight)
        dense.bias.uniform_(-1, 1)
        fused.bias.copy_(dense.bias)
        fused.gamma.uniform_(0.5, 2)
        bn.gamma.copy_(fused.gamma)
    x = torch.randn(32, 6, dtype=torch.float64)
    for layer in (fused, dense, bn):
        layer.train()
    y_fused = fused(x)
    y_ref = bn(dense(x))
    assert torch.allclose(y_fused, y_ref, atol=1e-9)
    assert torch.allclose(fused.moving_variance, bn.moving_variance)
    for layer in (fused, dense, bn):
        layer.eval()
    assert torch.allclose(fused(x), bn(dense(x)), atol=1e-9)
    batch = QDenseBatchnorm(6, 4, folding_mode="batch_stats_folding").double()
    batch.load_state_dict(fused.state_dict())
    batch.train()
    assert torch.allclose(batch(x), bn.train()(dense(x)), atol=1e-9)  # same value, other folding
    with pytest.raises(ConfigError, match="folding_mode"):
        QDenseBatchnorm(2, 2, folding_mode="magic")


def test_dense_batchnorm_ema_freeze_delay() -> None:
    layer = QDenseBatchnorm(3, 2, ema_freeze_delay=2).train()
    for _ in range(3):
        layer(torch.randn(16, 3))
    frozen = layer.moving_mean.clone()
    layer(torch.randn(16, 3) + 5)
    assert torch.equal(layer.moving_mean, frozen)


def test_average_pooling_and_flatten_order() -> None:
    pool = QAveragePooling2D(2)
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert pool(x).flatten().tolist() == [2.5, 4.5, 10.5, 12.5]
    with pytest.raises(ConfigError, match="valid"):
        QAveragePooling2D(2, padding="same")
    x = torch.arange(8.0).reshape(1, 2, 2, 2)  # (N, C, H, W)
    assert Flatten()(x).tolist() == [[0.0, 4.0, 1.0, 5.0, 2.0, 6.0, 3.0, 7.0]]  # Keras HWC order


def test_slots_and_set_quantizer() -> None:
    dense = QDense(3, 2, use_bias=False)
    assert dense.slots() == ("kernel", "activation")
    relu = QActivation("relu")
    assert relu.float_function == "relu" and relu.slots() == ("activation",)
    relu.set_quantizer("activation", "quantized_relu(4,0)")
    assert str(relu.activation) == "quantized_relu(4,0)" and relu.float_function == "relu"
    relu.set_quantizer("activation", None)
    assert isinstance(relu.activation, torch.nn.ReLU)
    assert QActivation("quantized_relu(4,2)").float_function == "relu"
    assert QActivation("softmax").slots() == ()
    inp = QInput("quantized_bits(8,3,alpha=1)")
    assert inp.quantizer_specs() == {"activation": "quantized_bits(8,3,alpha=1)"}
    assert torch.equal(QInput()(torch.ones(2)), torch.ones(2))


def test_qkeras_clip_constraint_after_optimizer_step() -> None:
    from hqrun.models import attach_weight_constraints, build_model

    model = build_model({"name": "jet_dnn", "hidden": [8]},
                        {"name": "p", "default": {"kernel": "quantized_bits(4,0,alpha=1)"},
                         "layers": {"dense_2": {"kernel": "quantized_bits(6,2,alpha=1)"}}})
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(7.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    attach_weight_constraints(model, opt)
    opt.step()
    assert model.dense_1.weight.max() == 1.0   # max(1, 2**0)
    assert model.dense_2.weight.max() == 4.0   # max(1, 2**2)
    assert model.dense_1.bias.max() == 7.0     # float bias: unconstrained
