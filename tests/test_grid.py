"""FixedPointGrid: per-element formats agree with FixedPointType element by element."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hqrun.errors import QuantizerSpecError
from hqrun.quantizers import FixedPointType
from hqrun.quantizers.grid import FixedPointGrid

modes = st.sampled_from(["RND_CONV", "RND", "TRN"])
overflows = st.sampled_from(["SAT", "SAT_SYM", "WRAP"])


@settings(max_examples=60, deadline=None)
@given(width=st.integers(1, 20), integer=st.integers(-4, 12), signed=st.booleans(), rnd=modes,
       ovf=overflows, seed=st.integers(0, 2**31 - 1))
def test_uniform_grid_quantizes_like_its_type(width, integer, signed, rnd, ovf, seed):
    t = FixedPointType(width, integer, signed, rnd, ovf)
    g = FixedPointGrid.uniform(t)
    x = torch.from_numpy(np.random.default_rng(seed).normal(0, 2.0**integer, 200))
    assert torch.equal(g.quantize(x), t.quantize(x))
    assert g.union() == t
    assert g.min_values() == t.min_value and g.max_values() == t.max_value


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), ovf=st.sampled_from(["SAT", "SAT_SYM"]), rnd=modes)
def test_each_element_follows_its_own_type_and_the_union_holds_them_all(seed, ovf, rnd):
    rng = np.random.default_rng(seed)
    shape = (3, 5)
    signed = rng.integers(0, 2, shape).astype(bool)
    integer = rng.integers(-2, 5, shape)
    fractional = rng.integers(-1, 7, shape)
    g = FixedPointGrid(signed, integer, fractional, rnd, ovf)
    x = torch.from_numpy(rng.normal(0, 4.0, shape))
    q = g.quantize(x)
    for idx in np.ndindex(shape):
        w = int(integer[idx] + fractional[idx])
        if w <= 0:
            assert q[idx] == 0
            continue
        t = FixedPointType(w, int(integer[idx]), bool(signed[idx]), rnd, ovf)
        assert q[idx] == t.quantize(x[idx])
    assert g.contains(q)
    assert g.union().contains(q)
    assert g.union().contains(torch.from_numpy(g.min_values())) and g.union().contains(
        torch.from_numpy(g.max_values()))


def test_empty_elements_cost_no_bits_and_are_zero():
    g = FixedPointGrid(np.array([True, False, True]), np.array([1, 0, -3]), np.array([3, 0, 2]))
    assert g.bits().tolist() == [4, 0, 0]
    assert g.quantize(torch.tensor([0.7, 5.0, -3.0])).tolist() == [0.75, 0.0, 0.0]
    assert not g.is_uniform
    assert "1 empty" not in repr(g) and "2 empty" in repr(g)


def test_grid_refuses_impossible_widths():
    with pytest.raises(QuantizerSpecError, match="integer numbers of bits"):
        FixedPointGrid(np.array(True), np.array(2.5), np.array(3))
    with pytest.raises(QuantizerSpecError, match="do not broadcast"):
        FixedPointGrid(np.ones(3, bool), np.ones(4, int), np.ones(3, int))
