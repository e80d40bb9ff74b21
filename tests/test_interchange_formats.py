"""The one table between ap_fixed types and QONNX Quant parameters: it means the same numbers in
both directions, as qonnx's own operator computes them, and refuses what QONNX cannot say."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from qonnx.custom_op.general.intquant import int_quant

from hqrun.errors import InterchangeError
from hqrun.interchange.formats import FLOAT32_CODE_BITS, QuantFormat, format_of_type, type_of_format
from hqrun.interchange.spec_formats import activation_spec, param_candidates
from hqrun.quantizers import FixedPointType, get

types = st.builds(
    FixedPointType,
    width=st.integers(1, FLOAT32_CODE_BITS),
    integer=st.integers(-6, 12),
    signed=st.booleans(),
    rounding=st.sampled_from(["RND_CONV", "TRN"]),
    overflow=st.sampled_from(["SAT", "SAT_SYM"]),
)


def _qonnx(x: np.ndarray, fmt: QuantFormat) -> np.ndarray:
    return int_quant(x.astype(np.float32), fmt.scale.astype(np.float32), np.float32(0),
                     np.float32(fmt.bits), int(fmt.signed), int(fmt.narrow), fmt.rounding)


@given(t=types, seed=st.integers(0, 2**31 - 1))
def test_qonnx_quant_computes_the_ap_fixed_cast(t, seed):
    """Clip-then-round (QONNX) equals round-then-saturate (ap_fixed) on integer bounds."""
    if t.width == 1 and t.signed:
        return  # qonnx treats a 1-bit signed Quant as bipolar; hqrun never emits one
    fmt = format_of_type(t, "test")
    rng = np.random.default_rng(seed)
    codes = rng.integers(t.min_code - 40, t.max_code + 40, size=512)
    halves = codes + rng.choice([0.0, 0.5, 0.25, -0.5], size=512)
    x = (halves * t.lsb).astype(np.float32)
    expected = t.quantize(torch.from_numpy(x)).numpy()
    assert np.array_equal(_qonnx(x, fmt), expected)


@given(t=types)
def test_type_and_format_map_back_to_each_other(t):
    if t.width == 1 and t.signed:
        return
    narrowable = t.signed or t.overflow == "SAT"
    if not narrowable:  # unsigned SAT_SYM is plain SAT: the same numbers
        t = FixedPointType(t.width, t.integer, False, t.rounding, "SAT")
    back = type_of_format(format_of_type(t, "test"), "test")
    assert back == t


def test_wrap_and_signed_half_up_and_wide_codes_are_refused_by_name():
    with pytest.raises(InterchangeError, match="slot X.*wraps"):
        format_of_type(FixedPointType(8, 3, True, "RND_CONV", "WRAP"), "slot X")
    with pytest.raises(InterchangeError, match="AP_RND"):
        format_of_type(FixedPointType(8, 3, True, "RND", "SAT"), "slot X")
    assert format_of_type(FixedPointType(8, 3, False, "RND", "SAT"), "x").rounding == "HALF_UP"
    with pytest.raises(InterchangeError, match="float32"):
        format_of_type(FixedPointType(25, 3, True), "slot X")
    assert format_of_type(FixedPointType(25, 3, True), "x", max_bits=None).bits == 25


def test_activation_specs_compute_the_node():
    fmt = QuantFormat("Quant", 6, np.float64(2.0**-5), True, False, "ROUND")
    assert activation_spec(fmt, False, "n") == "quantized_bits(6,0,alpha=1)"
    relu = QuantFormat("Quant", 4, np.float64(2.0**-2), False, False, "ROUND")
    assert activation_spec(relu, True, "n") == "quantized_relu(4,2)"
    # Brevitas's QuantReLU may keep a sign bit the ReLU never uses
    signed_relu = QuantFormat("Quant", 5, np.float64(2.0**-2), True, False, "ROUND")
    assert activation_spec(signed_relu, True, "n") == "quantized_relu(4,2)"
    x = torch.linspace(-9, 9, 2001)
    assert torch.equal(get("quantized_relu(4,2)")(x),
                       torch.from_numpy(_qonnx(np.maximum(x.numpy(), 0), signed_relu)))
    with pytest.raises(InterchangeError, match="FLOOR"):
        activation_spec(QuantFormat("Quant", 6, np.float64(0.25), True, False, "FLOOR"), False, "n")
    with pytest.raises(InterchangeError, match="power-of-two"):
        activation_spec(QuantFormat("Quant", 6, np.float64(0.3), True, False, "ROUND"), False, "n")


def test_weight_candidates_refuse_float_and_non_power_of_two_scales():
    w = np.array([[0.25, -0.5]])
    with pytest.raises(InterchangeError, match="float constant"):
        param_candidates(None, w, "the kernel of node 'fc'")
    with pytest.raises(InterchangeError, match="not powers of two.*FixedPoint"):
        param_candidates(QuantFormat("Quant", 8, np.float64(0.0123), True, True), w, "the kernel")
    per_channel = QuantFormat("Quant", 4, np.array([[0.5], [0.125]]), True, True)
    assert param_candidates(per_channel, np.array([[1.0, -0.5], [0.25, 0.125]]), "k")[0] == \
        "quantized_bits(4,0,alpha='auto_po2')"
