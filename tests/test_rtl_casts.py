"""The RTL backend's casts equal hqrun's reference requantization, for every mode.

Property tests over random source formats, power-of-two scales and offsets (what a constant-
matrix product hands to the cast), random target types and every rounding/overflow pair: the
traced alkaid program, evaluated by alkaid's own exact interpreter on *every* input code, must
equal :func:`hqrun.firmware.emulate.requantize`. (That the Verilog equals the program is what the
simulation tests check.) Also per-element grids and folded constants.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hqrun.firmware.backends.rtl.alkaid_api import alkaid
from hqrun.firmware.backends.rtl.casts import cast, cast_grid, fold_constant
from hqrun.firmware.emulate import requantize, requantize_grid
from hqrun.quantizers.fixedpoint import OVERFLOW_MODES, ROUNDING_MODES, FixedPointType
from hqrun.quantizers.grid import FixedPointGrid
from rtl_support import needs_alkaid

pytestmark = needs_alkaid

FINE = 16  # fractional bits at which the scaled source values are exact (for the reference)

types = st.builds(
    lambda w, i, s, r, o: FixedPointType(w, i, s, r, o),
    st.integers(1, 7), st.integers(-2, 6), st.booleans(),
    st.sampled_from(ROUNDING_MODES), st.sampled_from(OVERFLOW_MODES))


def _source(k: int, i: int, f: int):
    return alkaid().FVArray.from_kif(np.array([k]), np.array([i]), np.array([f]))


def _all_codes(k: int, i: int, f: int) -> np.ndarray:
    t = FixedPointType(k + i + f, k + i, bool(k))
    return np.arange(t.min_code, t.max_code + 1)


@settings(max_examples=150, deadline=None)
@given(k=st.integers(0, 1), i=st.integers(1, 3), f=st.integers(0, 4),
       scale_exp=st.integers(-2, 2), negate=st.booleans(), offset=st.integers(-40, 40), t=types)
def test_cast_of_scaled_shifted_variable_equals_requantize(k, i, f, scale_exp, negate, offset, t):
    scale = (-1.0 if negate else 1.0) * 2.0 ** scale_exp
    bias = offset / 32.0
    x = _source(k, i, f)
    comb = alkaid().trace(x, cast(x * scale + bias, t))
    codes = _all_codes(k, i, f)
    values = np.ldexp(codes.astype(np.float64), -f)
    got = np.array([comb(np.array([v]))[0] for v in values])
    exact = np.round(np.ldexp(values * scale + bias, FINE)).astype(np.int64)
    ref = np.ldexp(requantize(exact, FINE, t).astype(np.float64), -t.fractional)
    assert np.array_equal(got, ref), (t, scale, bias)


@settings(max_examples=150, deadline=None)
@given(code=st.integers(-(2**20), 2**20), frac=st.integers(-4, 20), t=types)
def test_folded_constant_equals_requantize(code, frac, t):
    value = float(np.ldexp(float(code), -frac))
    ref = requantize(np.array([code << max(-frac, 0)]), max(frac, 0), t)
    assert fold_constant(value, t) == float(np.ldexp(float(ref[0]), -t.fractional))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), rounding=st.sampled_from(ROUNDING_MODES),
       overflow=st.sampled_from(OVERFLOW_MODES))
def test_cast_grid_equals_requantize_grid(seed, rounding, overflow):
    rng = np.random.default_rng(seed)
    n = 6
    grid = FixedPointGrid(rng.random(n) < 0.5, rng.integers(-1, 4, n), rng.integers(-1, 4, n),
                          rounding, overflow)
    declared = grid.union()
    x = alkaid().FVArray.from_kif(np.ones(n, int), np.full(n, 2), np.full(n, 4))
    comb = alkaid().trace(x, cast_grid(x, grid, declared, "test"))
    codes = rng.integers(-(2**6), 2**6, size=(32, n))
    got = np.array([comb(np.ldexp(c.astype(np.float64), -4)) for c in codes])
    ref = requantize_grid(codes, 4, grid, declared, "test")
    assert np.array_equal(np.ldexp(got, declared.fractional), ref.astype(np.float64))
