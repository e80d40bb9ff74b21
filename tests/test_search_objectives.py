"""Forgiving factor against hand-computed values; Pareto front against brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hqrun.errors import SearchError
from hqrun.search.blocks import block_trials, schedule_blocks
from hqrun.search.objectives import ForgivingFactor, forgiving_from_config
from hqrun.search.pareto import dominates, pareto_front


def test_forgiving_factor_hand_values():
    ff = ForgivingFactor()                       # AutoQKeras defaults: 8 %, 8 %, rate 2
    assert ff.delta(1000, 500) == pytest.approx(0.08)          # half the cost: +8 %
    assert ff.delta(1000, 250) == pytest.approx(0.16)          # a quarter: +16 %
    assert ff.delta(1000, 4000) == pytest.approx(-0.16)        # 4x dearer: -16 %
    assert ff.delta(1000, 1000) == 0.0
    assert ff.score(0.7, 1000, 500) == pytest.approx(0.756)
    asym = ForgivingFactor(delta_p=10, delta_n=2, rate=4)
    assert asym.delta(1000, 250) == pytest.approx(0.10)
    assert asym.delta(1000, 4000) == pytest.approx(-0.02)
    assert asym.delta(1000, 2000) == pytest.approx(-0.01)
    stressed = ForgivingFactor(stress=0.5)                     # reference = 500
    assert stressed.delta(1000, 500) == 0.0
    assert stressed.delta(1000, 1000) == pytest.approx(-0.08)


@settings(deadline=None, max_examples=60)
@given(st.floats(1, 1e7), st.floats(1, 1e7), st.floats(0, 20), st.floats(0, 20),
       st.sampled_from([1.5, 2.0, 4.0]), st.sampled_from([0.5, 1.0, 2.0]))
def test_matches_autoqkeras_formula(ref, trial, dp, dn, rate, stress):
    """QKeras's ForgivingFactor.delta with reference_size = stress x reference."""
    ref_size = np.float64(ref * stress)
    expected = np.where(trial < ref_size,
                        dp / 100.0 * (np.log(ref_size / trial) / np.log(rate)),
                        dn / 100.0 * (np.log(ref_size / trial) / np.log(rate)))
    got = ForgivingFactor(dp, dn, rate, stress).delta(ref, trial)
    assert got == pytest.approx(float(expected), rel=1e-9, abs=1e-12)


def test_bad_goal_settings():
    with pytest.raises(SearchError, match="rate"):
        ForgivingFactor(rate=1.0)
    with pytest.raises(SearchError, match="stress"):
        ForgivingFactor(stress=0)
    with pytest.raises(SearchError, match="watts"):
        forgiving_from_config({"type": "watts"})


points = st.lists(st.tuples(st.integers(0, 20).map(lambda v: v / 20),
                            st.integers(1, 30).map(float)), min_size=0, max_size=40)


@settings(deadline=None, max_examples=150)
@given(points)
def test_pareto_front_is_exactly_the_non_dominated_set(pts):
    front = pareto_front(pts)
    brute = [i for i, p in enumerate(pts) if not any(dominates(q, p) for q in pts)]
    assert sorted(front) == sorted(brute)
    costs = [pts[i][1] for i in front]
    assert costs == sorted(costs)


def test_pareto_ignores_nan():
    assert pareto_front([(math.nan, 1.0), (0.5, 2.0), (0.6, math.nan)]) == [1]


def test_block_trial_counts_and_order():
    names = ["dense_1", "relu_1", "dense_2", "relu_2", "dense_3"]
    costs = {"dense_1": 100.0, "relu_1": 20.0, "dense_2": 600.0, "relu_2": 30.0, "dense_3": 50.0}
    pats = ["^(dense_1|relu_1)$", "^(dense_2|relu_2)$", "^dense_3$"]
    seq = schedule_blocks(pats, names, costs, 1000.0, 100, "sequential")
    assert [b.index for b in seq] == [0, 1, 2]
    assert [b.cost for b in seq] == [120.0, 630.0, 50.0]
    assert [b.trials for b in seq] == [12, 63, 10]   # max(10, 100 * cost / 1000)
    by_cost = schedule_blocks(pats, names, costs, 1000.0, 100, "cost")
    assert [b.index for b in by_cost] == [1, 0, 2]
    assert by_cost[0].layers == ("dense_2", "relu_2")
    assert block_trials(7, 1.0, 2.0) == 10
    assert block_trials(400, 250.0, 1000.0) == 100


def test_block_patterns_must_match():
    with pytest.raises(SearchError, match="dense_9"):
        schedule_blocks(["^dense_9$"], ["dense_1"], {}, 1.0, 10)
    with pytest.raises(SearchError, match="schedule"):
        schedule_blocks(["^dense_1$"], ["dense_1"], {}, 1.0, 10, "random")
