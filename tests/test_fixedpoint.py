"""FixedPointType: exact quantize() against an independent int64 reference, ranges, HLS names."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hqrun.errors import QuantizerSpecError
from hqrun.quantizers import FixedPointType

torch.set_num_threads(1)


def reference_codes(x: np.ndarray, t: FixedPointType) -> np.ndarray:
    """Integer codes by int64 arithmetic: floor + fraction decides the rounding, masks wrap."""
    y = x.astype(np.float64) * math.ldexp(1.0, t.width - t.integer)  # exact: power-of-two scale
    fl = np.floor(y)
    frac = y - fl  # exact for |y| < 2**52
    n = fl.astype(np.int64)
    if t.rounding == "TRN":
        pass
    elif t.rounding == "RND":
        n = n + (frac >= 0.5).astype(np.int64)
    else:  # RND_CONV: half to even
        up = (frac > 0.5) | ((frac == 0.5) & (n % 2 == 1))
        n = n + up.astype(np.int64)
    if t.overflow == "WRAP":
        mask = np.int64((1 << t.width) - 1)
        n = n & mask
        if t.signed:
            n = np.where(n >= (1 << (t.width - 1)), n - (1 << t.width), n)
    else:
        if t.signed:
            lo = -(1 << (t.width - 1)) + (1 if t.overflow == "SAT_SYM" else 0)
            hi = (1 << (t.width - 1)) - 1
        else:
            lo, hi = 0, (1 << t.width) - 1
        n = np.clip(n, lo, hi)
    return n


types = st.builds(
    FixedPointType,
    width=st.integers(1, 24),
    integer=st.integers(-6, 30),
    signed=st.booleans(),
    rounding=st.sampled_from(["RND_CONV", "RND", "TRN"]),
    overflow=st.sampled_from(["SAT", "SAT_SYM", "WRAP"]),
)


def _inputs(t: FixedPointType, raw: list[float], codes: list[int]) -> np.ndarray:
    """Arbitrary floats plus exact grid points and half-way points (the rounding edge cases)."""
    lsb = t.lsb
    edge = [c * lsb for c in codes] + [(c + 0.5) * lsb for c in codes]
    return np.asarray(raw + edge, dtype=np.float64)


@settings(deadline=None, max_examples=150)
@given(
    t=types,
    raw=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=20),
    codes=st.lists(st.integers(-(1 << 26), 1 << 26), min_size=1, max_size=10),
)
def test_quantize_matches_int64_reference(t: FixedPointType, raw: list[float], codes: list[int]):
    x = _inputs(t, raw, codes)
    want = reference_codes(x, t)
    got = t.to_int(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got, want)
    values = t.quantize(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(values, want.astype(np.float64) * t.lsb)
    assert t.contains(torch.from_numpy(values))


@settings(deadline=None, max_examples=60)
@given(t=types)
def test_range_and_lsb_consistent(t: FixedPointType):
    assert t.lsb == 2.0 ** (t.integer - t.width)
    assert t.max_value == t.max_code * t.lsb
    assert t.min_value == t.min_code * t.lsb
    assert t.max_code - t.min_code + 1 <= 2**t.width
    grid = t.from_int(torch.arange(t.min_code, min(t.min_code + 64, t.max_code + 1)))
    assert t.contains(grid)
    assert not t.contains(torch.tensor([t.max_value + t.lsb]))
    if t.width + 1 <= 60:
        assert not t.contains(torch.tensor([t.lsb / 2]))
    np.testing.assert_array_equal(t.to_int(grid).numpy(), np.arange(t.min_code, t.min_code + grid.numel()))


def test_known_values():
    t = FixedPointType(6, 1)  # what quantized_bits(6,0,alpha=1) produces
    assert (t.lsb, t.min_value, t.max_value) == (1 / 32, -1.0, 31 / 32)
    x = torch.tensor([0.015625, 0.046875, -0.015625, 2.0, -3.0, 0.98])  # halves round to even
    assert t.quantize(x).tolist() == [0.0, 0.0625, 0.0, 31 / 32, -1.0, 31 / 32]
    rnd = FixedPointType(6, 1, rounding="RND")
    assert rnd.quantize(torch.tensor([0.015625, -0.015625])).tolist() == [1 / 32, 0.0]
    trn = FixedPointType(6, 1, rounding="TRN", overflow="WRAP")
    assert trn.quantize(torch.tensor([1.0, -0.01])).tolist() == [-1.0, -1 / 32]
    sym = FixedPointType(4, 1, overflow="SAT_SYM")
    assert sym.min_value == -7 / 8
    u = FixedPointType(6, 0, signed=False)
    assert (u.min_value, u.max_value) == (0.0, 63 / 64)


def test_large_integer_and_negative_integer_bits():
    t = FixedPointType(4, 8)  # lsb 16, like ap_fixed<4,8>
    assert t.lsb == 16.0 and t.max_value == 112.0 and t.min_value == -128.0
    assert t.quantize(torch.tensor([24.0, 40.0])).tolist() == [32.0, 32.0]
    f = FixedPointType(4, -2)  # all fractional: lsb 2**-6
    assert f.lsb == 2.0**-6 and f.max_value == 7 * 2.0**-6


def test_quantize_keeps_float_dtype_and_accepts_numpy():
    t = FixedPointType(8, 3)
    assert t.quantize(torch.zeros(3, dtype=torch.float32)).dtype == torch.float32
    assert t.quantize(np.array([0.3])).dtype == torch.float64
    assert t.quantize(torch.tensor([1, 2])).dtype == torch.float64


@pytest.mark.parametrize(
    "t, name",
    [
        (FixedPointType(6, 1), "ap_fixed<6,1,AP_RND_CONV,AP_SAT>"),
        (FixedPointType(6, 0, False), "ap_ufixed<6,0,AP_RND_CONV,AP_SAT>"),
        (FixedPointType(8, 3, True, "RND", "SAT_SYM"), "ap_fixed<8,3,AP_RND,AP_SAT_SYM>"),
        (FixedPointType(16, 6, True, "TRN", "WRAP"), "ap_fixed<16,6>"),
        (FixedPointType(8, 8, True, "TRN", "WRAP"), "ap_int<8>"),
        (FixedPointType(4, 4, False, "TRN", "WRAP"), "ap_uint<4>"),
        (FixedPointType(8, 8), "ap_fixed<8,8,AP_RND_CONV,AP_SAT>"),
    ],
)
def test_hls_names_round_trip(t: FixedPointType, name: str):
    assert t.hls_name == name
    assert FixedPointType.from_hls_name(name) == t


def test_modes_accept_ap_prefix():
    assert FixedPointType(8, 2, rounding="AP_RND", overflow="AP_WRAP") == FixedPointType(
        8, 2, rounding="RND", overflow="WRAP"
    )


@pytest.mark.parametrize(
    "kwargs, culprit",
    [
        ({"width": 0, "integer": 0}, "width"),
        ({"width": -3, "integer": 0}, "width"),
        ({"width": 2.5, "integer": 0}, "width"),
        ({"width": 8, "integer": "x"}, "integer"),
        ({"width": 8, "integer": 1, "rounding": "CEIL"}, "rounding"),
        ({"width": 8, "integer": 1, "overflow": "SAT_ZERO"}, "overflow"),
    ],
)
def test_validation_names_the_argument(kwargs, culprit):
    with pytest.raises(QuantizerSpecError, match=culprit):
        FixedPointType(**kwargs)


def test_bad_hls_name():
    with pytest.raises(QuantizerSpecError, match="ap_fixed"):
        FixedPointType.from_hls_name("float")
