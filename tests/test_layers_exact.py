"""Eval-mode layer outputs equal an exact integer computation on the fixed-point grid.

Inputs are built from integer codes, weights are quantized by the layer, and the reference is
computed in numpy int64 from the codes alone; the layer's float output scaled by 2**F must equal
the integer result exactly. float64 layers are exact for any code size used here; float32
layers are exact as long as every partial sum is an integer < 2**24 in units of the LSB (the
float32 significand), which the float32 cases below respect.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from hqrun.quantizers.layers import (
    QActivation,
    QAveragePooling2D,
    QConv1D,
    QConv2D,
    QDense,
    QDenseBatchnorm,
    QDepthwiseConv2D,
    QInput,
)


def frac_bits(q) -> int:
    t = q.fixed_point_type()
    return t.width - t.integer


def codes(values: torch.Tensor, frac: int) -> np.ndarray:
    """Integer codes of grid values; asserts the values really are on the 2**-frac grid."""
    v = values.detach().to(torch.float64).numpy() * 2.0**frac
    c = np.rint(v)
    assert np.array_equal(c, v), "value not on the fixed-point grid"
    return c.astype(np.int64)


def round_shift(a: np.ndarray, shift: int, rounding: str) -> np.ndarray:
    """a / 2**shift rounded as the fixed-point type says, in pure integer arithmetic."""
    if shift <= 0:
        return a << (-shift)
    d = np.int64(1) << shift
    q, r = np.divmod(a, d)  # floor division: r in [0, d)
    half = d >> 1
    if rounding == "TRN":
        return q
    if rounding == "RND":
        return q + (r >= half)
    return q + ((r > half) | ((r == half) & (q % 2 == 1)))  # RND_CONV: half to even


def requantize(acc: np.ndarray, acc_frac: int, q) -> np.ndarray:
    """Integer model of an activation quantizer applied to an exact accumulator."""
    t = q.fixed_point_type()
    f = t.width - t.integer
    out = round_shift(acc, acc_frac - f, t.rounding)
    lo, hi = round(t.min_value * 2**f), round(t.max_value * 2**f)
    return np.clip(out, lo, hi), f


def grid_input(shape, bits: int, frac: int, gen: torch.Generator, dtype=torch.float64):
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1)
    c = torch.randint(lo, hi, shape, generator=gen)
    return (c.to(torch.float64) * 2.0**-frac).to(dtype), c.numpy().astype(np.int64)


def dense_reference(xc, fx, layer):
    k = layer.kernel_quantizer
    b = layer.bias_quantizer
    fk, fb = frac_bits(k), frac_bits(b)
    kc = codes(layer.quantized_kernel(), fk)
    bc = codes(layer.quantized_bias(), fb)
    F = max(fx + fk, fb)
    acc = (xc @ kc.T) << (F - fx - fk)
    acc = acc + (bc << (F - fb))
    return acc, F


KQ = "quantized_bits(6,0,alpha=1)"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dense_matches_integer_reference(dtype) -> None:
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    layer = QDense(16, 24, kernel_quantizer=KQ, bias_quantizer=KQ).to(dtype).eval()
    with torch.no_grad():
        layer.bias.uniform_(-1, 1)
    x, xc = grid_input((50, 16), 8, 4, gen, dtype)  # |sum| < 16 * 2**7 * 2**5 = 2**16: f32-exact
    acc, F = dense_reference(xc, 4, layer)
    with torch.no_grad():
        y = layer(x)
    assert np.array_equal(codes(y, F), acc)


def test_dense_with_fused_activation_and_input_quantizer() -> None:
    gen = torch.Generator().manual_seed(2)
    torch.manual_seed(2)
    inq = QInput("quantized_bits(8,3,alpha=1)").double().eval()
    layer = QDense(16, 32, kernel_quantizer="quantized_bits(4,0,alpha=1)",
                   bias_quantizer="quantized_bits(8,3,alpha=1)",
                   activation="quantized_relu(6,2)").double().eval()
    with torch.no_grad():
        layer.bias.uniform_(-2, 2)
    raw = torch.randn(40, 16, generator=gen, dtype=torch.float64) * 6
    with torch.no_grad():
        x = inq(raw)
        y = layer(x)
    fx = frac_bits(inq.activation)
    xc = codes(x, fx)
    assert xc.min() >= -128 and xc.max() <= 127  # 8-bit input codes, saturated
    acc, F = dense_reference(xc, fx, layer)
    ref, fa = requantize(acc, F, layer.activation)
    assert np.array_equal(codes(y, fa), ref)
    assert (ref == 0).any() and (ref > 0).any()


@settings(deadline=None, max_examples=25)
@given(
    kbits=st.integers(2, 12), kint=st.integers(0, 2), bbits=st.integers(2, 12),
    abits=st.integers(2, 10), aint=st.integers(0, 3), xbits=st.integers(2, 16),
    xfrac=st.integers(0, 10), n_in=st.integers(1, 40), seed=st.integers(0, 2**16),
)
def test_dense_relu_property(kbits, kint, bbits, abits, aint, xbits, xfrac, n_in, seed) -> None:
    """Any bit widths: QDense + QActivation(quantized_relu) equal the integer pipeline (float64)."""
    kint = min(kint, kbits - 1)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    dense = QDense(n_in, 7, kernel_quantizer=f"quantized_bits({kbits},{kint},alpha=1)",
                   bias_quantizer=f"quantized_bits({bbits},{min(kint, bbits - 1)},alpha=1)").double().eval()
    act = QActivation(f"quantized_relu({abits},{min(aint, abits)})").double().eval()
    with torch.no_grad():
        dense.weight.mul_(2.0**kint)
        dense.bias.uniform_(-1, 1)
    x, xc = grid_input((9, n_in), xbits, xfrac, gen)
    with torch.no_grad():
        y = act(dense(x))
    acc, F = dense_reference(xc, xfrac, dense)
    ref, fa = requantize(acc, F, act.activation)
    assert np.array_equal(codes(y, fa), ref)


def _conv2d_int(xc, wc, stride=1, groups=1):
    """NCHW x OIHW 'valid' convolution in int64."""
    win = sliding_window_view(xc, wc.shape[-2:], axis=(2, 3))[:, :, ::stride, ::stride]
    n, c = xc.shape[:2]
    o = wc.shape[0]
    if groups == 1:
        return np.einsum("nchwij,ocij->nohw", win, wc)
    per = o // c
    out = np.einsum("nchwij,cmij->ncmhw", win, wc.reshape(c, per, *wc.shape[-2:]))
    return out.reshape(n, o, *out.shape[-2:])


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_conv2d_matches_integer_reference(padding) -> None:
    gen = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    layer = QConv2D(3, 5, 3, padding=padding, kernel_quantizer=KQ, bias_quantizer=KQ).eval()
    with torch.no_grad():
        layer.bias.uniform_(-1, 1)
    x, xc = grid_input((2, 3, 9, 8), 8, 5, gen, torch.float32)  # 27 taps: < 2**18, f32-exact
    with torch.no_grad():
        y = layer(x)
    fk, fb = frac_bits(layer.kernel_quantizer), frac_bits(layer.bias_quantizer)
    if padding == "same":
        xc = np.pad(xc, ((0, 0), (0, 0), (1, 1), (1, 1)))
    acc = _conv2d_int(xc, codes(layer.quantized_kernel(), fk))
    F = 5 + fk
    acc = acc + (codes(layer.quantized_bias(), fb) << (F - fb))[None, :, None, None]
    assert y.shape == (2, 5, 9, 8) if padding == "same" else (2, 5, 7, 6)
    assert np.array_equal(codes(y, F), acc)


def test_depthwise_conv2d_matches_integer_reference() -> None:
    gen = torch.Generator().manual_seed(4)
    torch.manual_seed(4)
    layer = QDepthwiseConv2D(3, 3, depth_multiplier=2, depthwise_quantizer=KQ,
                             bias_quantizer=KQ, strides=2).double().eval()
    with torch.no_grad():
        layer.bias.uniform_(-1, 1)
    x, xc = grid_input((2, 3, 9, 9), 10, 6, gen)
    with torch.no_grad():
        y = layer(x)
    fk = frac_bits(layer.kernel_quantizer)
    acc = _conv2d_int(xc, codes(layer.quantized_kernel(), fk), stride=2, groups=3)
    F = 6 + fk
    acc = acc + (codes(layer.quantized_bias(), fk) << (F - fk))[None, :, None, None]
    assert y.shape == (2, 6, 4, 4)
    assert np.array_equal(codes(y, F), acc)


def test_conv1d_matches_integer_reference() -> None:
    gen = torch.Generator().manual_seed(5)
    torch.manual_seed(5)
    layer = QConv1D(4, 6, 5, kernel_quantizer=KQ, bias_quantizer=KQ).double().eval()
    x, xc = grid_input((3, 4, 20), 12, 7, gen)
    with torch.no_grad():
        y = layer(x)
    fk = frac_bits(layer.kernel_quantizer)
    kc = codes(layer.quantized_kernel(), fk)
    win = sliding_window_view(xc, 5, axis=2)  # n, c, l, k
    acc = np.einsum("nclk,ock->nol", win, kc) + (codes(layer.quantized_bias(), fk) << 7)[None, :, None]
    assert np.array_equal(codes(y, 7 + fk), acc)


def test_average_pooling_exact_for_po2_area() -> None:
    gen = torch.Generator().manual_seed(6)
    layer = QAveragePooling2D(2).eval()
    x, xc = grid_input((2, 3, 8, 6), 8, 3, gen, torch.float32)
    with torch.no_grad():
        y = layer(x)
    ref = sliding_window_view(xc, (2, 2), axis=(2, 3))[:, :, ::2, ::2].sum(axis=(-1, -2))
    assert np.array_equal(codes(y, 3 + 2), ref)


def test_average_pooling_quantized_reciprocal() -> None:
    """QKeras: mean * area * Q(1/area); with area 9 the reciprocal is quantized."""
    layer = QAveragePooling2D(3, average_quantizer="quantized_bits(8,0,alpha=1)").double().eval()
    x = torch.arange(2 * 9 * 9, dtype=torch.float64).reshape(1, 2, 9, 9) / 8
    r = layer.quantized_reciprocal().item()
    assert r == round(2**7 / 9) / 2**7
    with torch.no_grad():
        y = layer(x)
    sums = torch.nn.functional.avg_pool2d(x, 3) * 9
    assert torch.allclose(y, sums * r, rtol=0, atol=1e-12)


def test_dense_batchnorm_folded_is_exact_in_eval() -> None:
    gen = torch.Generator().manual_seed(7)
    torch.manual_seed(7)
    layer = QDenseBatchnorm(16, 8, kernel_quantizer="quantized_bits(8,2,alpha=1)",
                            bias_quantizer="quantized_bits(8,2,alpha=1)").double()
    with torch.no_grad():
        layer.gamma.uniform_(0.5, 1.5)
        layer.beta.uniform_(-0.5, 0.5)
    layer.train()
    for _ in range(20):  # move the statistics away from their initial values
        layer(torch.randn(64, 16, generator=gen, dtype=torch.float64))
    assert not torch.allclose(layer.moving_variance, torch.ones(8, dtype=torch.float64))
    layer.eval()
    x, xc = grid_input((30, 16), 8, 4, gen)
    with torch.no_grad():
        y = layer(x)
    acc, F = dense_reference(xc, 4, layer)
    assert np.array_equal(codes(y, F), acc)
