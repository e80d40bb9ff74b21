"""Cost-capped sampling (search.goal.max_cost): every drawn configuration fits the cap."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from hqrun.errors import SearchError
from hqrun.search.config import SearchConfig
from hqrun.search.costcap import config_key, draw_under_cap, price
from hqrun.search.runner import check_config
from hqrun.search.space import build_space
from hqrun.search.toy import ToyBackend

MENU_LIMITS = {"Dense": [[ "binary", "ternary", "quantized_bits(4,0,1)", "quantized_bits(8,0,1)"],
                         ["quantized_bits(4,0,1)", "quantized_bits(8,3,1)"]],
               "Activation": [["quantized_relu(2,0)", "quantized_relu(4,2)", "quantized_relu(8,2)"]]}


def toy_space():
    backend = ToyBackend()
    space_cfg = OmegaConf.structured(SearchConfig).space
    space_cfg.limits = MENU_LIMITS
    return backend, build_space(space_cfg, backend.describe())


def all_costs(space, backend):
    import itertools

    keys = [c.key for c in space.choices]
    out = []
    for values in itertools.product(*(c.options for c in space.choices)):
        config = dict(zip(keys, values))
        out.append((config, price(space, backend, config, "bits")))
    return out


BACKEND, SPACE = toy_space()
COSTS = sorted(c for _, c in all_costs(SPACE, BACKEND)) if len(SPACE.choices) <= 12 else None


@settings(max_examples=15, deadline=None)
@given(quantile=st.floats(0.02, 0.9), n=st.integers(1, 12), seed=st.integers(0, 10_000))
def test_every_drawn_configuration_fits_the_cap(quantile, n, seed):
    cap = COSTS[int(quantile * (len(COSTS) - 1))]
    drawn = draw_under_cap(SPACE, BACKEND, "bits", cap, n, seed)
    feasible = sum(c <= cap for c in COSTS)
    assert len(drawn.configs) == min(n, feasible)
    assert len({config_key(c) for c in drawn.configs}) == len(drawn.configs)   # no repeats
    assert all(price(SPACE, BACKEND, c, "bits") <= cap for c in drawn.configs)
    assert drawn.cheapest >= COSTS[0]


def test_same_seed_same_draw_and_exclusions_respected():
    cap = COSTS[len(COSTS) // 3]
    a = draw_under_cap(SPACE, BACKEND, "bits", cap, 5, seed=7)
    b = draw_under_cap(SPACE, BACKEND, "bits", cap, 5, seed=7)
    assert a.configs == b.configs
    c = draw_under_cap(SPACE, BACKEND, "bits", cap, 5, seed=7, exclude=a.configs)
    assert not {config_key(x) for x in a.configs} & {config_key(x) for x in c.configs}


def test_cap_below_every_configuration_names_the_cheapest():
    with pytest.raises(SearchError, match=r"max_cost=.*cheapest of \d+ priced was"):
        draw_under_cap(SPACE, BACKEND, "bits", COSTS[0] - 1, 3, seed=0)


@pytest.mark.parametrize("cap", [0, -5.0, float("nan"), float("inf")])
def test_nonsense_cap_is_refused(cap):
    with pytest.raises(SearchError, match="max_cost"):
        draw_under_cap(SPACE, BACKEND, "bits", cap, 3, seed=0)


@pytest.mark.parametrize("algorithm", ["bayesian", "blocks"])
def test_cap_with_an_algorithm_that_cannot_honour_it_is_refused(algorithm):
    cfg = OmegaConf.structured(SearchConfig)
    cfg.algorithm = algorithm
    cfg.goal.max_cost = 1000.0
    with pytest.raises(SearchError, match="max_cost.*asha, evolution or random"):
        check_config(cfg)


@pytest.mark.parametrize("trainer", ["lightning", "lean"])
def test_trial_reports_its_best_epoch_like_keras_tuner(trainer):
    """accuracy/score of a trial are those of its best epoch so far (Keras Tuner's trial score)."""
    from hqrun.search.objectives import ForgivingFactor
    from hqrun.search.toy import toy_data
    from hqrun.search.trial import TrialSettings, run_trial

    config = {c.key: c.options[0] for c in SPACE.choices}
    settings_ = TrialSettings(epochs=8, batch_size=64, learning_rate=0.2, goal="bits",
                              forgiving=ForgivingFactor(), reference_cost=5000.0, trainer=trainer)
    rows: list[dict] = []
    run_trial(config, SPACE, BACKEND, toy_data(n_train=256, n_val=128, n_test=64), None,
              settings_, rows.append)
    assert len(rows) == 8
    assert any(r["accuracy"] > r["last_accuracy"] for r in rows)   # the curve did dip here
    for i, row in enumerate(rows):
        seen = [r["last_accuracy"] for r in rows[:i + 1]]
        assert row["accuracy"] == max(seen)
        assert row["last_accuracy"] == seen[-1]
        assert rows[row["best_epoch"] - 1]["last_accuracy"] == row["accuracy"]


def test_accuracy_objective_needs_a_cap():
    cfg = OmegaConf.structured(SearchConfig)
    cfg.objective = "accuracy"
    with pytest.raises(SearchError, match="objective=accuracy.*max_cost"):
        check_config(cfg)
    cfg.goal.max_cost = 1000.0
    check_config(cfg)


@given(acc=st.floats(0, 1), ref=st.floats(1, 1e6), cost=st.floats(1, 1e6))
def test_accuracy_objective_scores_accuracy_alone(acc, ref, cost):
    from hqrun.search.objectives import score_rule

    goal = OmegaConf.structured(SearchConfig).goal
    assert score_rule("accuracy", goal).score(acc, ref, cost) == pytest.approx(acc)
    forgiving = score_rule("forgiving", goal).score(acc, ref, cost)
    assert (forgiving > acc) == (cost < ref and acc > 0) or forgiving == pytest.approx(acc)
