"""Fast paths of the power-of-two and auto_po2 quantizers equal the exact TF emulation bit for bit.

``tf_log2_round`` / ``tf_log2_floor`` (ste.py) replace ``round|floor(tf_log(x) / LOG2)`` by
``torch.log2`` plus the exact emulation on the few elements near a rounding point; the po2
quantizers and quantized_bits' auto_po2 loop were trimmed around them. The references below are
the previous implementations, verbatim, and every comparison is on the raw float32 bits.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hqrun.quantizers import quantized_bits, quantized_po2, quantized_relu_po2
from hqrun.quantizers.ste import (EPSILON, LOG2, channel_axes, flush_denormal, qkeras_output,
                                  tf_channel_mean, tf_log, tf_log2_floor, tf_log2_round)

torch.set_num_threads(1)


# ------------------------------------------------------------------ previous implementations
def ref_round(x: torch.Tensor) -> torch.Tensor:
    return torch.round(tf_log(x) / LOG2)


def ref_floor(x: torch.Tensor) -> torch.Tensor:
    return torch.floor(tf_log(x) / LOG2)


def ref_po2_round(scale: torch.Tensor) -> torch.Tensor:
    return torch.exp2(torch.round(tf_log(scale + EPSILON) / LOG2))


def ref_clip_power_of_two(x_abs, min_exp, max_exp, max_value, quadratic, log2_rounding):
    eps = torch.tensor(EPSILON, dtype=x_abs.dtype)
    x_filter = torch.where(x_abs < eps, eps, x_abs)
    if max_value is not None:
        mv = torch.tensor(float(max_value), dtype=x_abs.dtype)
        x_filter = torch.where(x_filter >= mv, mv, x_filter)
    if quadratic:
        q_factor, x_input = 2.0, torch.sqrt(x_filter)
    else:
        q_factor, x_input = 1.0, x_filter
    if log2_rounding == "floor":
        x_log2 = torch.floor(tf_log(x_input) / LOG2)
    else:
        x_log2 = torch.round(tf_log(x_input) / LOG2)
    x_clipped = q_factor * torch.clamp(x_log2, float(min_exp), float(max_exp))
    return torch.where(x_abs < eps, torch.full_like(x_clipped, float(min_exp)), x_clipped)


def ref_po2_forward(q, x):
    with torch.no_grad():
        xd = x.detach()
        s = torch.sign(xd)
        x_sign = s + (1.0 - torch.abs(s))
        e = ref_clip_power_of_two(torch.abs(xd), q._min_exp, q._max_exp, q.max_value_arg,
                                  bool(q.quadratic_approximation), q.log2_rounding)
        xq = flush_denormal(x_sign * torch.exp2(e))
    return qkeras_output(x, xq, q.emulate_residue, q.qnoise_factor, bool(q.use_ste))


def ref_relu_po2_forward(q, x):
    if q.max_value_arg is None:
        xr = q._relu(x)
    else:
        mv = float(q.max_value_arg)
        xr = torch.where(x <= mv, q._relu(x), torch.full_like(x, mv))
    with torch.no_grad():
        xd = x.detach()
        args = (q._min_exp, q._max_exp, q.max_value_arg, bool(q.quadratic_approximation),
                q.log2_rounding)
        pos = ref_clip_power_of_two(torch.relu(xd), *args)
        slope = float(q.negative_slope)
        if slope == 0.0:
            xq = torch.exp2(pos)
        else:
            neg = ref_clip_power_of_two(torch.relu(-xd) * slope, *args)
            xq = torch.where(xd >= 0.0, torch.exp2(pos), -torch.exp2(neg))
        xq = flush_denormal(xq)
    return qkeras_output(xr, xq, q.emulate_residue, q.qnoise_factor, bool(q.use_ste))


def ref_get_scale(x, q, scale_axis):
    axes = channel_axes(x.dim(), scale_axis)
    if axes is None:
        qx, qq = x * q, q * q
    else:
        qx, qq = tf_channel_mean(x * q, axes), tf_channel_mean(q * q, axes)
    return ref_po2_round(qx / (qq + EPSILON))


def ref_auto_po2(q, x):
    m_i = q._m_i
    with torch.no_grad():
        xs = x.detach() / m_i
        axes = channel_axes(xs.dim(), q.scale_axis) or [0]
        levels = float((2 ** (q.bits - 1) - 1) * 2)
        half = levels / 2
        scale = torch.amax(torch.abs(xs), dim=axes, keepdim=True) * 2 / levels
        scale = ref_po2_round(scale)
        for _ in range(5):
            v = torch.floor(torch.abs(xs) / scale + 0.5)
            z = torch.sign(xs) * torch.where(v < half, v, torch.full_like(v, half))
            scale = ref_get_scale(xs, z, q.scale_axis)
        scale = scale * q._m
        xq = scale * (m_i * z / q._m)
    xr = m_i * (x / m_i)
    return qkeras_output(xr, xq, q.training, q.qnoise_factor, bool(q.use_ste)), scale


# ------------------------------------------------------------------ inputs
def bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().view(torch.int32)


def assert_same_bits(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    diff = bits(a) != bits(b)
    assert not bool(diff.any()), (a[diff][:5], b[diff][:5])


def ulp_walk(centre: float, n: int) -> np.ndarray:
    """The 2n+1 float32 values nearest ``centre`` (n ulps either side)."""
    c = np.float32(centre)
    out = [c]
    lo = hi = c
    for _ in range(n):
        lo, hi = np.nextafter(lo, np.float32(-np.inf)), np.nextafter(hi, np.float32(np.inf))
        out += [lo, hi]
    return np.array(out, dtype=np.float32)


def adversarial() -> torch.Tensor:
    """Each float32 within 40 ulps of 2**k * sqrt(1/2) and of 2**k (k = -149..127), and more."""
    parts = []
    for k in range(-149, 128):
        parts.append(ulp_walk(2.0**k * math.sqrt(0.5), 40))
        parts.append(ulp_walk(2.0**k, 40))
    # Around the band edges of the fast path (log2 x = k + 1/2 +- 2**-9, k +- 2**-9).
    for k in range(-149, 128, 7):
        for off in (0.5 - 2.0**-9, 0.5 + 2.0**-9, 2.0**-9, 1 - 2.0**-9):
            parts.append(ulp_walk(2.0 ** (k + off), 20))
    special = np.array([0.0, -0.0, 1.0, -1.0, 2.0**-149, 2.0**-126, 2.0**-126 - 2.0**-149,
                        3.4028235e38, np.inf, -np.inf, np.nan, -np.nan, EPSILON, 1e-45,
                        -1e-38, -3.4e38, 0.70710677, 0.7071068, 1.4142135, 1.4142137],
                       dtype=np.float32)
    parts.append(special)
    a = np.concatenate(parts)
    return torch.from_numpy(np.concatenate([a, -a]))


ADV = adversarial()


def test_log2_fast_paths_adversarial():
    assert ADV.numel() > 40_000
    assert_same_bits(tf_log2_round(ADV), ref_round(ADV))
    assert_same_bits(tf_log2_floor(ADV), ref_floor(ADV))
    # Also on shapes the quantizers use (0-d, non-contiguous) and on float64 (reference path).
    x = ADV[:4096].reshape(64, 64).t()
    assert_same_bits(tf_log2_round(x), ref_round(x))
    assert_same_bits(tf_log2_floor(x), ref_floor(x))
    for v in (0.7071068, 0.5, 1e-7, 0.0):
        t = torch.tensor(v, dtype=torch.float32)
        assert_same_bits(tf_log2_round(t), ref_round(t))
        assert_same_bits(tf_log2_floor(t), ref_floor(t))
    d = ADV[:1000].double()
    assert torch.equal(tf_log2_round(d).nan_to_num(7.5), ref_round(d).nan_to_num(7.5))


def test_log2_fast_paths_random_bit_patterns():
    gen = torch.Generator().manual_seed(1)
    raw = torch.randint(-(2**31), 2**31 - 1, (1 << 20,), generator=gen, dtype=torch.int64)
    x = raw.to(torch.int32).view(torch.float32)
    assert_same_bits(tf_log2_round(x), ref_round(x))
    assert_same_bits(tf_log2_floor(x), ref_floor(x))
    y = torch.randn(1 << 18, generator=gen) * torch.exp2(torch.randint(-60, 60, (1 << 18,),
                                                                        generator=gen).float())
    assert_same_bits(tf_log2_round(y.abs()), ref_round(y.abs()))
    assert_same_bits(tf_log2_floor(y.abs()), ref_floor(y.abs()))


f32 = st.floats(width=32, allow_nan=True, allow_infinity=True, allow_subnormal=True)


@settings(max_examples=300, deadline=None)
@given(st.lists(f32, min_size=1, max_size=64),
       st.integers(-149, 127), st.integers(-64, 64), st.booleans())
def test_log2_fast_paths_property(values, k, ulps, near_half):
    centre = 2.0**k * (math.sqrt(0.5) if near_half else 1.0)
    c = np.float32(centre)
    step = np.float32(np.inf if ulps > 0 else -np.inf)
    for _ in range(abs(ulps)):
        c = np.nextafter(c, step)
    x = torch.tensor(values + [float(c), -float(c)], dtype=torch.float32)
    assert_same_bits(tf_log2_round(x), ref_round(x))
    assert_same_bits(tf_log2_floor(x), ref_floor(x))
    assert_same_bits(torch.exp2(tf_log2_round(x.abs() + EPSILON)), ref_po2_round(x.abs()))


PO2_SPECS = [
    (quantized_po2, dict(bits=6, max_value=4)),
    (quantized_po2, dict(bits=4)),
    (quantized_po2, dict(bits=5, max_value=3, log2_rounding="floor")),
    (quantized_po2, dict(bits=8, quadratic_approximation=True)),
    (quantized_po2, dict(bits=10)),  # min_exp = -256: subnormal outputs are flushed
    (quantized_po2, dict(bits=1)),
    (quantized_relu_po2, dict(bits=4, max_value=4)),
    (quantized_relu_po2, dict(bits=5)),
    (quantized_relu_po2, dict(bits=4, max_value=2, negative_slope=0.25)),
    (quantized_relu_po2, dict(bits=6, log2_rounding="floor", quadratic_approximation=True)),
    (quantized_relu_po2, dict(bits=9, negative_slope=0.125)),
]


def check_po2(cls, kw, x: torch.Tensor, training: bool) -> None:
    q = cls(**kw)
    q.train(training)
    ref_fwd = ref_po2_forward if cls is quantized_po2 else ref_relu_po2_forward
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    a, b = q(xa), ref_fwd(q, xb)
    assert_same_bits(a, b)
    g = torch.linspace(-1.5, 2.5, x.numel()).reshape(x.shape)
    a.backward(g)
    b.backward(g)
    assert_same_bits(xa.grad, xb.grad)


def test_po2_quantizers_adversarial():
    x = torch.cat([ADV, ADV * 3.0, ADV / 5.0])
    x = x[torch.isfinite(x)]  # nan/inf inputs are checked separately below
    for cls, kw in PO2_SPECS:
        for training in (True, False):
            check_po2(cls, kw, x, training)
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-45])
    for cls, kw in PO2_SPECS:
        check_po2(cls, kw, special, True)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, len(PO2_SPECS) - 1), st.integers(0, 2**31 - 1), st.floats(-30, 30),
       st.booleans())
def test_po2_quantizers_property(spec, seed, log_scale, training):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(257, 7, generator=gen) * float(2.0**log_scale)
    cls, kw = PO2_SPECS[spec]
    check_po2(cls, kw, x, training)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([(64, 32), (16, 5), (3, 3, 4, 8), (40,), (7, 1)]),
       st.integers(2, 10), st.integers(-2, 3), st.floats(-20, 10), st.booleans(), st.booleans())
def test_auto_po2_kernel_property(seed, shape, nbits, integer, log_scale, zero_col, training):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(*shape, generator=gen) * float(2.0**log_scale)
    if zero_col and w.dim() > 1:
        w[..., 0] = 0.0
    q = quantized_bits(nbits, min(integer, nbits), 1).for_kernel()
    q.train(training)
    wa = w.clone().requires_grad_(True)
    wb = w.clone().requires_grad_(True)
    a = q(wa)
    b, scale = ref_auto_po2(q, wb)
    assert_same_bits(a, b)
    assert_same_bits(q.scale, scale)
    g = torch.linspace(-1.0, 1.0, w.numel()).reshape(w.shape)
    a.backward(g)
    b.backward(g)
    assert_same_bits(wa.grad, wb.grad)
