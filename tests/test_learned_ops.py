"""Numeric kernels of the learned widths: exact widths and the surrogate gradient of ``f``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hqrun.quantizers.learned_ops import (
    LN2,
    DataRound,
    WeightRound,
    bit_length,
    code_width,
    effective_frac,
    range_width,
)


def int_width(n: int) -> int:
    """Two's-complement width of one code, from Python's exact integers."""
    if n == 0:
        return 0
    return n.bit_length() + 1 if n > 0 else (-n - 1).bit_length() + 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(2**20), 2**20), min_size=1, max_size=50))
def test_code_width_is_the_minimal_twos_complement_width(codes):
    n = torch.tensor(codes, dtype=torch.float32)
    assert code_width(n).tolist() == [int_width(c) for c in codes]
    big = [c * 2**28 + 1 for c in codes]  # float64: wider codes stay exact
    assert code_width(torch.tensor(big, dtype=torch.float64)).tolist() == [int_width(c) for c in big]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 2**20), min_size=1, max_size=50))
def test_bit_length_and_range_width(codes):
    n = torch.tensor(codes, dtype=torch.float32)
    assert bit_length(n).tolist() == [c.bit_length() for c in codes]
    assert range_width(n, signed=False).tolist() == [c.bit_length() for c in codes]
    # signed: the width whose range [-2**(w-1), 2**(w-1)-1] holds +-top, 0 for top == 0
    assert range_width(n, signed=True).tolist() == [c.bit_length() + (c > 0) for c in codes]


def test_effective_frac_rounds_half_to_even_and_clips():
    f = torch.tensor([2.5, 3.5, -0.4, 30.0, -30.0])
    assert effective_frac(f).tolist() == [2.0, 4.0, -0.0, 24.0, -24.0]


def surrogate_weights(w, f, f0, g, c):
    """HGQ's model of the rounding around f0: the error scales with the step 2**-f, a live width
    moves one bit per bit of f. Returns sum(g * wq) + sum(c * width)."""
    wq0, width0 = WeightRound.apply(w, f0)
    delta0 = wq0 - w
    q = w + delta0 * torch.exp2(-(f - f0))
    width = width0 + (f - f0) * (width0 > 0)
    return (g * q).sum() + (c * width).sum()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), granularity=st.sampled_from(["element", "channel", "layer"]))
def test_weight_gradient_of_f_matches_finite_differences_of_the_surrogate(seed, granularity):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(6, 5, generator=gen, dtype=torch.float64) * 0.5
    shape = {"element": (6, 5), "channel": (6, 1), "layer": ()}[granularity]
    # fractional parts away from .5 so rounding f0 is unambiguous at +-h
    f0 = (torch.randint(-1, 6, shape, generator=gen) + 0.25 * torch.rand(shape, generator=gen)).double()
    g = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    c = torch.rand(6, 5, generator=gen, dtype=torch.float64)
    f = f0.clone().requires_grad_(True)
    wq, width = WeightRound.apply(w, f)
    ((g * wq).sum() + (c * width).sum()).backward()
    h = 1e-6
    fd = torch.zeros_like(f0)
    for idx in np.ndindex(*shape) if shape else [()]:
        e = torch.zeros_like(f0)
        e[idx] = h
        up = surrogate_weights(w, f0 + e, f0, g, c)
        down = surrogate_weights(w, f0 - e, f0, g, c)
        fd[idx] = (up - down) / (2 * h)
    assert torch.allclose(f.grad, fd, rtol=1e-6, atol=1e-8)
    # and the analytic form: df = -ln2 * sum(g * delta) + sum(c * [width > 0])
    expect = (-LN2 * g * (wq.detach() - w) + c * (width.detach() > 0)).sum_to_size(shape)
    assert torch.allclose(f.grad, expect)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), relu=st.booleans(), signed=st.booleans())
def test_data_gradients_straight_through_and_surrogate(seed, relu, signed):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(40, 7, generator=gen, dtype=torch.float64) * 3).requires_grad_(True)
    f0 = torch.randint(-1, 6, (7,), generator=gen).double() + 0.2
    f = f0.clone().requires_grad_(True)
    top = torch.zeros(7, dtype=torch.float64)
    g = torch.randn(40, 7, generator=gen, dtype=torch.float64)
    c = torch.rand(7, generator=gen, dtype=torch.float64)
    xq, width = DataRound.apply(x, f, top, (0,), 0.0, signed, relu)
    ((g * xq).sum() + (c * width).sum()).backward()
    xr = torch.relu(x.detach()) if relu else x.detach()
    assert torch.equal(top, xr.amax(0) if relu else x.detach().abs().amax(0))
    scale = torch.exp2(torch.round(f0))
    assert torch.equal(xq.detach(), torch.round(xr * scale) / scale)  # no saturation in training
    mask = (x.detach() > 0).double() if relu else torch.ones_like(g)
    assert torch.equal(x.grad, g * mask)
    delta = xq.detach() - xr
    h = 1e-6

    def surrogate(fv):
        return (g * (xr + delta * torch.exp2(-(fv - f0)))).sum() + (c * (width.detach() + (fv - f0) * (width.detach() > 0))).sum()

    fd = torch.stack([(surrogate(f0 + h * e) - surrogate(f0 - h * e)) / (2 * h) for e in torch.eye(7, dtype=torch.float64)])
    assert torch.allclose(f.grad, fd, rtol=1e-6, atol=1e-8)


def test_data_round_with_decay_shrinks_then_covers_the_batch():
    x = torch.tensor([[0.5, -3.0]])
    top = torch.tensor([4.0, 1.0])
    DataRound.apply(x, torch.zeros(2), top, (0,), 0.5, True, False)
    assert top.tolist() == [2.0, 3.0]


def test_surrogate_direction_more_bits_shrink_the_error():
    """Sanity of the sign: with the loss sum(delta**2)/2 (g = delta), more fractional bits
    (a finer step) lower it, so the gradient of f is negative."""
    w = torch.linspace(-1, 1, 101, dtype=torch.float64)
    f = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    wq, _ = WeightRound.apply(w, f)
    loss = 0.5 * ((wq - w) ** 2).sum()
    loss.backward()
    assert f.grad < 0 and math.isclose(float(f.grad), -LN2 * float(((wq - w) ** 2).sum().detach()), rel_tol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weight_round_values_are_exact_and_zero_codes_are_pruned(dtype):
    w = torch.tensor([0.3, -0.01, 0.0, -0.5, 1.7], dtype=dtype)
    wq, width = WeightRound.apply(w, torch.tensor(2.0, dtype=dtype))
    assert wq.tolist() == [0.25, -0.0, 0.0, -0.5, 1.75]
    assert width.tolist() == [2.0, 0.0, 0.0, 2.0, 4.0]  # codes 1, 0, 0, -2, 7


def saturating_reference(x, f, i, signed):
    """SaturatingRound written with plain autograd ops: a clip whose bounds move with i."""
    frac, integer = torch.round(f.detach()), torch.round(i.detach())
    width = (integer + frac).clamp_min(0)
    live = width.clamp_max(1)
    bound = torch.exp2(integer - 1 if signed else integer)
    di = (i - i.detach()) * LN2 * bound
    hi = (bound - torch.exp2(-frac)) * live + di
    lo = -(bound * live) - di if signed else torch.zeros_like(hi)
    xc = torch.clamp(x, lo, hi)
    delta = (torch.round(xc.detach() * torch.exp2(frac)) * torch.exp2(-frac) - xc.detach())
    xq = xc + delta - LN2 * delta * (f - f.detach())
    return xq, width + live * ((f - f.detach()) + (i - i.detach()))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), signed=st.booleans())
def test_saturating_round_matches_its_autograd_reference(seed, signed):
    from hqrun.quantizers.learned_ops import SaturatingRound

    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(50, 6, generator=gen, dtype=torch.float64) * 4).requires_grad_(True)
    f0 = torch.randint(-1, 5, (6,), generator=gen).double() + 0.2
    i0 = torch.randint(-3, 4, (6,), generator=gen).double() - 0.2  # some elements empty
    g = torch.randn(50, 6, generator=gen, dtype=torch.float64)
    c = torch.rand(6, generator=gen, dtype=torch.float64)
    grads = []
    for fn in (lambda *a: SaturatingRound.apply(*a), saturating_reference):
        f, i = f0.clone().requires_grad_(True), i0.clone().requires_grad_(True)
        x.grad = None
        xq, width = fn(x, f, i, signed)
        ((g * xq).sum() + (c * width).sum()).backward()
        grads.append((xq.detach(), width.detach(), x.grad.clone(), f.grad, i.grad))
    live = (torch.round(f0) + torch.round(i0)) > 0
    for a, b in zip(grads[0][:4], grads[1][:4]):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    assert torch.allclose(grads[0][4][live], grads[1][4][live], rtol=1e-12, atol=1e-12)
    # an empty element (I + F <= 0, always 0) still feels the clip: it can come back to life
    # (torch.clamp gives degenerate bounds min == max no such gradient, hence the explicit sum)
    xs = x.detach()
    for col in torch.nonzero(~live).flatten().tolist():
        bound = 2.0 ** (torch.round(i0[col]) - (1 if signed else 0))
        above = g[:, col][xs[:, col] > 0].sum()
        below = g[:, col][xs[:, col] < 0].sum() if signed else 0.0
        assert torch.isclose(grads[0][4][col], LN2 * bound * (above - below), rtol=1e-12)


@pytest.mark.parametrize("float_bias", [False, True])
def test_learned_linear_equals_rounding_then_linear(float_bias):
    """The fused dense node (one autograd node) against WeightRound twice plus F.linear: same
    output and widths, same gradients for x, the weights and their fractional bits."""
    from hqrun.quantizers.learned_ops import LearnedLinear, WeightRound

    gen = torch.Generator().manual_seed(7)
    x = torch.randn(40, 16, generator=gen)
    w = torch.randn(8, 16, generator=gen) * 0.5
    b = torch.randn(8, generator=gen) * 0.1
    fw = torch.randint(0, 7, (8, 16), generator=gen).float() + 0.2
    fb = torch.randint(0, 7, (8,), generator=gen).float()
    g = torch.randn(40, 8, generator=gen)
    gww = torch.rand(8, 16, generator=gen)
    gwb = torch.rand(8, generator=gen)

    def run(fused):
        leaves = [t.clone().requires_grad_(True) for t in (x, w, fw, b, fb)]
        lx, lw, lfw, lb, lfb = leaves
        if fused:
            y, ww, wb = LearnedLinear.apply(lx, lw, lfw, lb, None if float_bias else lfb)
        else:
            wq, ww = WeightRound.apply(lw, lfw)
            bq, wb = (lb, None) if float_bias else WeightRound.apply(lb, lfb)
            y = torch.nn.functional.linear(lx, wq, bq)
        outs, grads = [y, ww], [g, gww]
        if not float_bias:
            outs, grads = outs + [wb], grads + [gwb]
        torch.autograd.backward(outs, grads)
        return [o.detach() for o in outs], [t.grad for t in leaves]

    (outs_f, grads_f), (outs_u, grads_u) = run(True), run(False)
    for a, c in zip(outs_f, outs_u):
        assert torch.allclose(a, c, rtol=1e-6, atol=1e-6)
    for a, c in zip(grads_f, grads_u):
        if c is None:
            assert a is None or not a.abs().sum()
            continue
        assert torch.allclose(a, c, rtol=1e-5, atol=1e-6)
