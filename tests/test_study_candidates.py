"""What a study retrains: trials spread over activation-width families, filled to the cost cap."""

from __future__ import annotations

import json
import random
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from hqrun.search.costcap import fill_to_cap, price
from hqrun.search.evolution import random_configs
from hqrun.study.diversity import activation_widths, plan_family, spread_over_families
from test_search_costcap import BACKEND, COSTS, SPACE

PARAMETER_SLOTS = ("kernel", "bias")


def _is_parameter(choice) -> bool:
    return all(slot in PARAMETER_SLOTS for _, slot in choice.targets)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), quantile=st.floats(0.05, 0.95))
def test_filling_raises_only_parameters_and_stops_at_the_cap(seed, quantile):
    cap = COSTS[int(quantile * (len(COSTS) - 1))]
    accept = lambda c: price(SPACE, BACKEND, c, "bits") <= cap  # noqa: E731
    start = next((c for c in random_configs(SPACE, 50, random.Random(seed), set()) if accept(c)),
                 None)
    if start is None:
        return
    filled = fill_to_cap(start, SPACE, accept)
    assert accept(filled)
    for choice in SPACE.choices:
        before, after = choice.bits[start[choice.key]], choice.bits[filled[choice.key]]
        if not _is_parameter(choice):
            assert filled[choice.key] == start[choice.key]     # activations stay the search's
        else:
            assert after >= before
            # nothing left to buy: no parameter can take a wider option within the cap
            assert not any(accept({**filled, choice.key: o}) for o in choice.options
                           if choice.bits[o] > after)


def test_filling_the_energy_winner_of_the_jet_study_buys_8_bit_parameters():
    """Run F's QE (2/3/2-bit ReLUs; 6-bit, 8-bit, ternary and po2 kernels; po2 biases) at
    18,034 pJ: under the 19,168 pJ cap every kernel and bias becomes 8-bit for 159 pJ, the
    ReLUs stay (one more activation bit would cost ~1,300 pJ)."""
    from omegaconf import OmegaConf

    from hqrun.search.backend import HqrunBackend
    from hqrun.search.space import build_space

    space_cfg = OmegaConf.load(Path(__file__).parents[1] / "conf/search/space/deployable.yaml")
    backend = HqrunBackend({"name": "jet_dnn"})
    space = build_space(space_cfg, backend.describe())
    kernels = ["quantized_bits(6,0,1,alpha=1)", "quantized_bits(8,0,1,alpha=1)", "ternary",
               "quantized_po2(4,1)"]
    relus = ["quantized_relu(2,0)", "quantized_relu(3,1)", "quantized_relu(2,0)"]
    config = {**{f"dense_{i}__kernel": k for i, k in enumerate(kernels, 1)},
              **{f"dense_{i}__bias": "quantized_po2(4,8)" for i in range(1, 5)},
              **{f"relu_{i}__activation": r for i, r in enumerate(relus, 1)}}
    energy = lambda c: price(space, backend, c, "energy")  # noqa: E731
    assert energy(config) == 18034
    filled = fill_to_cap(config, space, lambda c: energy(c) <= 19168)
    assert energy(filled) == 18193
    assert all(filled[f"dense_{i}__kernel"] == "quantized_bits(8,0,1,alpha=1)" for i in range(1, 5))
    assert all(filled[f"dense_{i}__bias"] == "quantized_bits(8,3,1,alpha=1)" for i in range(1, 5))
    assert [filled[f"relu_{i}__activation"] for i in (1, 2, 3)] == relus


def _plan(relus: list[str], kernel: str = "ternary") -> dict:
    layers = {f"relu_{i}": {"activation": r} for i, r in enumerate(relus, 1)}
    layers["dense_1"] = {"kernel": kernel}
    return {"name": "t", "input": None, "default": {}, "layers": layers}


def test_activation_widths_ignore_integer_bits_and_parameters():
    a = _plan(["quantized_relu(2,0)", "quantized_relu(3,1)"], "ternary")
    b = _plan(["quantized_relu(2,1)", "quantized_relu(3,1)"], "quantized_bits(8,0,1)")
    c = _plan(["quantized_relu(3,1)", "quantized_relu(2,0)"])
    assert activation_widths(a) == (("relu_1", 2), ("relu_2", 3))
    assert activation_widths(a) == activation_widths(b) != activation_widths(c)


def test_spread_takes_the_best_of_each_family_first_then_the_next_best():
    families = ["A", "A", "A", "B", "A", "C", "B"]
    ranked = [{"id": i, "family": f} for i, f in enumerate(families)]
    pick = lambda k: [r["id"] for r in spread_over_families(ranked, k, lambda r: r["family"])]  # noqa: E731
    assert pick(1) == [0]                  # the search's winner always comes first
    assert pick(3) == [0, 3, 5]            # one per family, in rank order
    assert pick(5) == [0, 3, 5, 1, 2]      # then the best of the rest
    assert pick(9) == list(pick(3)) + [1, 2, 4, 6]


def test_study_candidates_are_spread_and_filled(tmp_path: Path):
    """candidate_plans on a journal: the two best trials share a family, so the second
    candidate comes from the other family; with ``fill`` the plan written is the filled one and
    the record keeps the trial's own plan and cost."""
    from hqrun.search.journal import Journal
    from hqrun.study.steps import candidate_plans

    journal = Journal(tmp_path / "trials.jsonl")
    trials = [("t0", ["quantized_relu(2,0)", "quantized_relu(3,1)"], 0.70),
              ("t1", ["quantized_relu(2,1)", "quantized_relu(3,1)"], 0.69),
              ("t2", ["quantized_relu(3,1)", "quantized_relu(2,0)"], 0.68)]
    for tid, relus, acc in trials:
        journal.append({"event": "trial", "trial_id": tid, "block": None, "status": "ok",
                        "config": {"relus": relus}, "plan": _plan(relus), "widths": {},
                        "accuracy": acc, "cost": 10.0, "score": acc})

    def fill(config: dict) -> tuple[dict, dict, float]:
        return ({**config, "kernel": "wide"}, _plan(config["relus"], "quantized_bits(8,0,1)"), 12.0)

    plain = candidate_plans(tmp_path, 2)
    assert [rec["trial_id"] for rec, _ in plain] == ["t0", "t1"]
    spread = candidate_plans(tmp_path, 2, spread=True, fill=fill)
    assert [rec["trial_id"] for rec, _ in spread] == ["t0", "t2"]
    rec, path = spread[1]
    assert plan_family(rec) == activation_widths(_plan(trials[2][1]))
    assert rec["cost"] == 12.0 and rec["trial_cost"] == 10.0
    assert rec["trial_plan"]["layers"]["dense_1"]["kernel"] == "ternary"
    import yaml

    assert yaml.safe_load(path.read_text())["layers"]["dense_1"]["kernel"] == "quantized_bits(8,0,1)"
    assert json.loads((tmp_path / "trials.jsonl").read_text().splitlines()[0])["cost"] == 10.0


def test_trials_that_fill_to_the_same_plan_are_trained_once(tmp_path: Path):
    from hqrun.search.journal import Journal
    from hqrun.study.steps import candidate_plans

    journal = Journal(tmp_path / "trials.jsonl")
    a, b = ["quantized_relu(2,0)"], ["quantized_relu(3,1)"]
    for tid, relus, kernel, acc in [("t0", a, "ternary", 0.70), ("t1", a, "binary", 0.69),
                                    ("t2", b, "ternary", 0.68)]:
        journal.append({"event": "trial", "trial_id": tid, "block": None, "status": "ok",
                        "config": {"relus": relus, "kernel": kernel},
                        "plan": _plan(relus, kernel), "widths": {}, "accuracy": acc,
                        "cost": 10.0, "score": acc})

    def fill(config: dict) -> tuple[dict, dict, float]:   # every kernel becomes 8-bit
        wide = {**config, "kernel": "quantized_bits(8,0,1)"}
        return wide, _plan(config["relus"], "quantized_bits(8,0,1)"), 12.0

    assert [r["trial_id"] for r, _ in candidate_plans(tmp_path, 2)] == ["t0", "t1"]
    filled = candidate_plans(tmp_path, 2, fill=fill)
    assert [r["trial_id"] for r, _ in filled] == ["t0", "t2"]      # t1 filled is t0 filled
    assert [p.name for _, p in filled] == ["c0.yaml", "c1.yaml"]
