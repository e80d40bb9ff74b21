"""Type inference: QTools's width rule, exact accumulator sizing (never overflows, no wider than
needed), layer coverage and the error for unknown layers."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from hqrun.errors import CostModelError
from hqrun.quantizers import FixedPointType
from hqrun.quantizers.layers import QActivation, QDense, QInput
from hqrun.quantizers.typeinfer import fit_type, infer_types, qtools_multiplier, Operand

torch.set_num_threads(1)


def _seq(*layers: tuple[str, nn.Module]) -> nn.Sequential:
    m = nn.Sequential()
    for name, layer in layers:
        m.add_module(name, layer)
    return m


def _dense(n_in: int, n_out: int, wb: int, bb: int, seed: int = 0, wi: int = 0, bi: int = 0):
    torch.manual_seed(seed)
    layer = QDense(n_in, n_out, f"quantized_bits({wb},{wi},alpha=1)",
                   f"quantized_bits({bb},{bi},alpha=1)")
    with torch.no_grad():
        layer.weight.uniform_(-1.5, 1.5)
        layer.bias.uniform_(-1.0, 1.0)
    return layer


def test_qtools_rule_6bit_weights_8bit_inputs_16_inputs_gives_19_bits():
    m = _seq(("input", QInput(None)), ("dense_1", _dense(16, 4, 6, 6)))
    t = infer_types(m, FixedPointType(8, 1), "qtools")
    d = t[1]
    assert d.operands["product"].bits == 14
    assert d.operands["accumulator"].bits == 19  # ceil(log2(16 + 1)) + 8 + 6
    assert d.accumulator.width == 19
    assert d.policy == "qtools" and d.n_ops == 64 and d.fan_in == 16


def test_exact_accumulator_hand_computed():
    layer = QDense(2, 1, "quantized_bits(4,0,alpha=1)", "quantized_bits(4,0,alpha=1)")
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -0.25]]))
        layer.bias.copy_(torch.tensor([0.125]))
    m = _seq(("dense", layer))
    (d,) = infer_types(m, FixedPointType(4, 1), "exact")
    # inputs in [-1, 0.875] step 1/8, weights/bias step 1/8: sums on a 1/64 grid;
    # partial sums in [-0.5 - 0.21875, 0.4375 + 0.25 + 0.125] = [-0.71875, 0.8125]
    assert (d.accumulator.width, d.accumulator.integer, d.accumulator.signed) == (7, 1, True)
    assert (d.product.width - d.product.integer) == 6
    assert d.output == d.accumulator
    assert d.weight == FixedPointType(4, 1, rounding=d.weight.rounding,
                                      overflow=d.weight.overflow)
    assert d.flags == []


def test_exact_relu_chain_and_float_softmax_flag():
    m = _seq(("input", QInput("quantized_bits(8,0,alpha=1)")),
             ("dense_1", _dense(8, 4, 6, 6)),
             ("relu_1", QActivation("quantized_relu(6,0)")),
             ("dense_2", _dense(4, 3, 6, 6, seed=1)),
             ("softmax", QActivation("softmax")))
    t = infer_types(m, None, "exact")
    names = [x.name for x in t]
    assert names == ["input", "dense_1", "relu_1", "dense_2", "softmax"]
    assert t[1].input == t[0].output and t[0].output.width == 8
    assert t[2].output.signed is False and t[2].output.width == 6
    assert t[3].input == t[2].output
    assert t[4].output is None and "float_softmax" in t[4].flags


def test_float_input_is_flagged_not_guessed_under_exact():
    m = _seq(("dense_1", _dense(4, 2, 6, 6)))
    (d,) = infer_types(m, None, "exact")
    assert d.accumulator is None and "float_input" in d.flags


def test_unknown_layer_names_its_type():
    m = _seq(("dense_1", _dense(4, 4, 6, 6)), ("weird", nn.GELU()))
    with pytest.raises(CostModelError, match="GELU"):
        infer_types(m, FixedPointType(8, 1), "exact")


def test_bad_policy_is_refused():
    with pytest.raises(CostModelError, match="policy"):
        infer_types(_seq(("d", _dense(2, 2, 4, 4))), FixedPointType(8, 1), "wide")


def test_fit_type_is_minimal():
    t = fit_type(Fraction(-1), Fraction(1), 3)  # 1.0 needs one more integer bit than -1.0
    assert (t.width, t.integer) == (5, 2)
    t = fit_type(0, Fraction(7, 8), 3)
    assert (t.width, t.integer, t.signed) == (3, 0, False)


def test_qtools_mux_and_shifter_rules():
    relu3 = Operand("fixed", 3, 1, False)
    tern = Operand("ternary", 2, 2, True)
    m = qtools_multiplier(tern, relu3)
    assert (m.impl, m.output.bits, m.gate_factor, m.gate_bits) == ("mux", 4, 0.6, 3)
    po2 = Operand("po2", 4, 4, True, max_value=1.0)
    relu4 = Operand("fixed", 4, 0, False)
    m = qtools_multiplier(po2, relu4)
    assert m.impl == "shifter" and m.output.bits == 9
    assert m.gate_bits == pytest.approx(8 * np.log10(8))


def _partial_sums_fit(kernel, bias, acc, x):
    """Every partial sum (bias first and bias last) of every output lies in acc and on its grid."""
    lsb = Fraction(2) ** (acc.integer - acc.width)
    lo, hi = Fraction(acc.min_value), Fraction(acc.max_value)
    for j in range(kernel.shape[0]):
        for start in (Fraction(bias[j]), Fraction(0)):
            s = start
            assert lo <= s <= hi
            for i in range(kernel.shape[1]):
                s += Fraction(kernel[j, i]) * Fraction(x[i])
                assert lo <= s <= hi, (s, lo, hi)
                assert (s / lsb).denominator == 1
            if start == 0:
                s += Fraction(bias[j])
                assert lo <= s <= hi


@settings(deadline=None, max_examples=40)
@given(n_in=st.integers(1, 12), n_out=st.integers(1, 4), wb=st.integers(2, 8),
       wi=st.integers(0, 2), bb=st.integers(2, 8), xw=st.integers(2, 9), xi=st.integers(0, 3),
       xsigned=st.booleans(), seed=st.integers(0, 10_000))
def test_exact_accumulator_never_overflows_and_is_tight(n_in, n_out, wb, wi, bb, xw, xi, xsigned,
                                                        seed):
    layer = _dense(n_in, n_out, wb, bb, seed=seed, wi=min(wi, wb - 1))
    xt = FixedPointType(xw, min(xi, xw), signed=xsigned)
    (d,) = infer_types(_seq(("d", layer)), xt, "exact")
    kernel = layer.quantized_kernel().detach().double().numpy()
    bias = layer.quantized_bias().detach().double().numpy()
    acc = d.accumulator
    rng = np.random.default_rng(seed)
    xmin, xmax = xt.min_value, xt.max_value
    # extreme inputs: the per-output maximiser and minimiser, plus random corners
    cands = []
    for j in range(n_out):
        cands.append(np.where(kernel[j] > 0, xmax, xmin))
        cands.append(np.where(kernel[j] > 0, xmin, xmax))
    cands += [rng.choice([xmin, xmax], size=n_in) for _ in range(3)]
    for x in cands:
        _partial_sums_fit(kernel, bias, acc, x)
    # tight: one bit narrower (same LSB) cannot hold the extreme partial sums
    up = max(max(b, 0) + sum(max(w * xmax, w * xmin, 0) for w in row)
             for row, b in zip(kernel, bias))
    lo = min(min(b, 0) + sum(min(w * xmax, w * xmin, 0) for w in row)
             for row, b in zip(kernel, bias))
    assert acc.signed  # hls4ml's accum_t convention (and the firmware's check) is signed
    if acc.width > 2:
        narrower = FixedPointType(acc.width - 1, acc.integer - 1, signed=True)
        assert lo < narrower.min_value or up > narrower.max_value
