"""Straight-through gradients as QKeras 0.9.0 defines them (autograd, not finite differences)."""

from __future__ import annotations

import pytest
import torch

from hqrun.quantizers import get

torch.set_num_threads(1)


def grad_of(spec_or_q, x: torch.Tensor, train: bool = True) -> torch.Tensor:
    q = get(spec_or_q)
    q.train(train)
    x = x.clone().requires_grad_(True)
    q(x).sum().backward()
    return x.grad


X = torch.tensor([-100.0, -2.0, -1.0, -0.3, 0.0, 0.01, 0.3, 0.96875, 0.99, 1.0, 2.0, 100.0])


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize(
    "spec",
    ["quantized_bits(6,0,alpha=1)", "quantized_bits(4,1)", "quantized_bits(4,0,1,keep_negative=False)",
     "quantized_bits(1,0)", "quantized_bits(4,0,alpha='auto_po2')", "quantized_bits(3,0,alpha=2.0)",
     "quantized_po2(4,1)", "binary(alpha=1)", "ternary(alpha=1)"],
)
def test_unclipped_gradient_is_one(spec: str, train: bool):
    """quantized_bits (any alpha), quantized_po2, binary/ternary with alpha: gradient 1 everywhere."""
    assert torch.equal(grad_of(spec, X, train), torch.ones_like(X))


@pytest.mark.parametrize("train", [True, False])
def test_quantized_relu_gradient_is_clipped(train: bool):
    g = grad_of("quantized_relu(6,0)", X, train)
    bound = 1 - 2.0**-6  # 0.984375: inclusive upper end, exclusive at 0 (TF's relu gradient)
    want = ((X > 0) & (X <= bound)).float()
    assert torch.equal(g, want)
    g_edge = grad_of("quantized_relu(6,0)", torch.tensor([bound, 0.0, 1e-30, 0.98437506]), train)
    assert g_edge.tolist() == [1.0, 0.0, 1.0, 0.0]


def test_quantized_relu_negative_slope_gradient():
    g = grad_of("quantized_relu(4,0,negative_slope=0.25)", torch.tensor([-3.0, -0.1, 0.0, 0.2, 5.0]))
    # leaky relu gradient (slope at x <= 0, as TF's leaky_relu), 0 above the bound
    assert g.tolist() == [0.25, 0.25, 0.25, 1.0, 0.0]


def test_quantized_relu_sigmoid_and_unclipped_variants():
    g = grad_of("quantized_relu(6,1,is_quantized_clip=False)", torch.tensor([-1.0, 0.5, 50.0]))
    assert g.tolist() == [0.0, 1.0, 1.0]
    g = grad_of("quantized_relu(4,2,relu_upper_bound=3.0,is_quantized_clip=False)",
                torch.tensor([-1.0, 2.0, 3.0, 3.5]))
    assert g.tolist() == [0.0, 1.0, 1.0, 0.0]


def test_relu_po2_gradient_follows_relu_and_max_value():
    g = grad_of("quantized_relu_po2(4,4)", torch.tensor([-1.0, 0.0, 0.5, 4.0, 4.5]))
    assert g.tolist() == [0.0, 0.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize("spec", ["binary", "ternary"])
def test_alpha_none_uses_tanh_surrogate(spec: str):
    x = torch.tensor([-2.0, -0.2, 0.0, 0.4, 1.5])
    assert torch.allclose(grad_of(spec, x), 1 - torch.tanh(x) ** 2, atol=1e-7, rtol=0)


def test_hard_tanh_and_sigmoid_gradients():
    x = torch.tensor([-3.0, -0.5, 0.0, 0.3, 0.99, 3.0])  # 0.99 rounds past the top code
    # quantized_tanh: d/dx of 2*hard_sigmoid(x) - 1 = 1 inside [-1, 1], 0 where clipped
    g = grad_of("quantized_tanh(4)", x)
    assert g.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    # quantized_sigmoid: hard_sigmoid slope 0.5 inside, 0 where the output saturates
    g = grad_of("quantized_sigmoid(4)", x)
    assert g.tolist() == [0.0, 0.5, 0.5, 0.5, 0.0, 0.0]
    # the clip is inclusive: an input rounding exactly onto the top code keeps its gradient
    assert grad_of("quantized_tanh(4)", torch.tensor([0.9])).tolist() == [1.0]


def test_qnoise_factor_and_use_ste():
    x = torch.tensor([0.3, 2.0])
    q = get("quantized_bits(4,0,qnoise_factor=0.5)")
    y = q(x)
    xq = get("quantized_bits(4,0)")(x)
    assert torch.allclose(y, x + 0.5 * (xq - x))
    assert torch.equal(grad_of("quantized_bits(4,0,qnoise_factor=0.5,use_ste=False)", x),
                       torch.full_like(x, 0.5))


def test_for_kernel_reproduces_qdense_alpha_quirk():
    q = get("quantized_bits(4,0)")
    k = q.for_kernel()
    assert k.alpha == "auto_po2" and k.symmetric
    assert get("quantized_bits(4,0,alpha=1)").for_kernel() == get("quantized_bits(4,0,alpha=1)")
    assert get("binary").for_kernel() == get("binary(alpha='auto_po2')")
    assert get("quantized_relu(4,0)").for_kernel() == get("quantized_relu(4,0)")
