"""search.goal.type=lut: trials priced by the calibrated RTL LUT estimate, capped and forgiven."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from hqrun.cost import estimate
from hqrun.search.backend import HqrunBackend
from hqrun.search.config import SearchConfig, parse_search_config
from hqrun.search.costcap import draw_under_cap, price
from hqrun.search.objectives import GOAL_KEYS, GOAL_UNITS, cost_of, forgiving_from_config
from hqrun.search.space import build_space
from hqrun.search.toy import ToyBackend

torch.set_num_threads(1)

MODEL = {"name": "mlp", "n_inputs": 16, "n_classes": 5, "hidden": [8]}
LIMITS = {"Dense": [["ternary", "quantized_bits(4,0,1,alpha=1)", "quantized_bits(8,0,1,alpha=1)"],
                    ["quantized_bits(4,0,1,alpha=1)"]],
          "Activation": [["quantized_relu(2,0)", "quantized_relu(4,2)", "quantized_relu(8,2)"]]}


def space_for(backend):
    cfg = OmegaConf.structured(SearchConfig).space
    cfg.limits = LIMITS
    return build_space(cfg, backend.describe())


def test_lut_is_a_goal_with_its_unit():
    assert GOAL_KEYS["lut"] == "lut" and "LUT" in GOAL_UNITS["lut"]
    assert parse_search_config({"goal": {"type": "lut"}}).goal.type == "lut"
    assert forgiving_from_config({"type": "lut"}).rate == 2.0
    assert cost_of({"lut": 1234.0, "bits": 1.0}, "lut") == 1234.0


def test_backend_prices_trials_and_reference_in_calibrated_luts():
    backend = HqrunBackend(MODEL)
    model = backend.build({"name": "q4", "input": None, "layers": {}, "default": {
        "kernel": "quantized_bits(4,0,1,alpha=1)", "bias": "quantized_bits(4,0,1,alpha=1)",
        "activation": "quantized_relu(4,2)"}}, {})
    info = backend.cost(model)
    assert info.totals["lut"] == float(estimate(model).totals["lut"]) > 0
    assert info.totals["lut"] == pytest.approx(sum(r["lut"] for r in info.layers.values()), abs=5)
    float_model = backend.build({"name": "float"}, {})
    ref = backend.reference_cost(float_model)
    assert ref.totals["lut"] > info.totals["lut"]       # the 8-bit reference is dearer than 4 bits
    assert set(ref.layers["dense_1"]) >= {"bits", "energy", "ebops", "lut"}


def test_capped_lut_draw_on_the_real_cost_model():
    """Every configuration a capped LUT search would train fits the cap, priced by hqrun.cost."""
    backend = HqrunBackend(MODEL)
    space = space_for(backend)
    costs = sorted(price(space, backend, {c.key: c.options[i % len(c.options)] for c in space.choices},
                         "lut") for i in range(3))
    cap = costs[1]
    drawn = draw_under_cap(space, backend, "lut", cap, n=4, seed=1, max_draws=60)
    assert drawn.configs and drawn.cheapest <= cap
    assert all(price(space, backend, c, "lut") <= cap for c in drawn.configs)


def test_capped_lut_draw_on_the_toy_backend():
    backend = ToyBackend()
    space = space_for(backend)
    drawn = draw_under_cap(space, backend, "lut", 5000.0, n=5, seed=0, max_draws=200)
    assert drawn.configs
    assert all(price(space, backend, c, "lut") <= 5000.0 for c in drawn.configs)
    assert math.isfinite(drawn.cheapest)


@pytest.mark.slow
def test_capped_lut_search_end_to_end(tmp_path):
    """A random search with goal lut and a LUT cap: every trial is journaled with its LUT cost,
    within the cap, and scored against the 8-bit reference's LUTs."""
    import ray

    from hqrun.raystart import start_ray
    from hqrun.search.runner import run_search
    from hqrun.search.toy import toy_data

    backend = HqrunBackend(MODEL)
    space = space_for(backend)
    import itertools
    import statistics

    prices = [price(space, backend, dict(zip(space.keys, values)), "lut")
              for values in itertools.product(*(c.options for c in space.choices))]
    cap = 1.5 * statistics.median(prices)      # some configurations fit, the dearest do not
    assert max(prices) > cap
    cfg = OmegaConf.structured(SearchConfig)
    cfg.update({"max_trials": 2, "epochs": 1, "batch_size": 128, "reference_epochs": 1,
                "progress": False, "retries": 0, "retrain": "none"})
    cfg.goal.type = "lut"
    cfg.goal.max_cost = float(cap)
    cfg.ray.cpus_per_trial = 2
    cfg.space.limits = LIMITS
    if ray.is_initialized():
        ray.shutdown()
    start_ray(num_cpus=2)
    try:
        out = run_search(cfg, backend, toy_data(n_train=256, n_val=128, n_test=128), tmp_path, seed=0)
    finally:
        ray.shutdown()
    ok = [r for r in out.records if r["status"] in ("ok", "stopped")]
    assert len(ok) == 2
    for r in ok:
        assert r["cost"] == r["costs"]["lut"] <= cap
        expected = r["accuracy"] * (1 + 0.08 * math.log2(out.reference_cost / r["cost"]))
        assert r["score"] == pytest.approx(expected)
