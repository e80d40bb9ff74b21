"""Regularized evolution: mutation, tournament breeding, cap and no repeats."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from hqrun.search.costcap import config_key, price
from hqrun.search.evolution import children, mutate, random_configs
from test_search_costcap import BACKEND, COSTS, SPACE


def _diff(a: dict, b: dict) -> list[str]:
    return [k for k in a if a[k] != b[k]]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_mutation_changes_exactly_one_choice_to_a_valid_option(seed):
    rng = random.Random(seed)
    parent = random_configs(SPACE, 1, rng, set())[0]
    child = mutate(parent, SPACE, rng)
    changed = _diff(parent, child)
    assert len(changed) == 1
    assert child[changed[0]] in SPACE.choice(changed[0]).options


def _records(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    configs = random_configs(SPACE, n, rng, set())
    return [{"status": "ok", "config": c, "score": rng.random(), "accuracy": 0.5} for c in configs]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), tournament=st.integers(1, 6))
def test_children_descend_from_tournament_winners_of_the_recent_pool(seed, tournament):
    records = _records(12, seed)
    population = 6
    pool = records[-population:]
    tried = {config_key(r["config"]) for r in records}
    kids = children(SPACE, records, 5, random.Random(seed), population, tournament, tried)
    assert len(kids) == 5
    assert len({config_key(k) for k in kids}) == 5
    assert not {config_key(k) for k in kids} & {config_key(r["config"]) for r in records}
    for kid in kids:   # one mutation away from a pool member (old trials have aged out)
        assert any(len(_diff(r["config"], kid)) == 1 for r in pool)


def test_tournaments_favour_the_best_of_the_pool():
    records = _records(12, 5)
    pool = records[-6:]
    tried = {config_key(r["config"]) for r in records}
    many = children(SPACE, records, 120, random.Random(1), 6, 4, tried)
    best = max(pool, key=lambda r: r["score"])
    worst = min(pool, key=lambda r: r["score"])
    near = lambda r: sum(len(_diff(r["config"], k)) == 1 for k in many)  # noqa: E731
    assert near(best) > 3 * max(near(worst), 1)     # the worst never wins a 4-way tournament


def test_children_respect_the_cap_and_skip_failed_trials():
    cap = COSTS[len(COSTS) // 3]
    records = _records(10, 3)
    records[-1]["status"] = "failed"
    records[-1]["score"] = None
    tried = {config_key(r["config"]) for r in records}
    kids = children(SPACE, records, 8, random.Random(0), 10, 3, tried,
                    accept=lambda c: price(SPACE, BACKEND, c, "bits") <= cap)
    assert kids and all(price(SPACE, BACKEND, k, "bits") <= cap for k in kids)
    assert children(SPACE, [records[-1]], 3, random.Random(0), 10, 3, set()) == []


def test_breeding_order_is_issue_order_not_finishing_order():
    from hqrun.search.algorithms.evolution import issue_order

    ids = ["part_000-ab12c_00000", "part_000-ab12c_00001", "part_000-ab12c_00010",
           "part_001-ff00e_00000", "part_001-ff00e_00002", "part_010-0a0a0_00000"]
    shuffled = [ids[i] for i in (4, 0, 5, 2, 1, 3)]
    assert sorted(shuffled, key=lambda t: issue_order({"trial_id": t})) == ids
