"""search.population without Ray: the setting's checks, a population trial's members (batched,
fallen back, failed), the searcher that hands out populations, and breeding order by member."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from hqrun.errors import HqrunError
from hqrun.search.backend import HqrunBackend
from hqrun.search.config import SearchConfig, parse_search_config
from hqrun.search.costcap import config_key
from hqrun.search.objectives import ForgivingFactor
from hqrun.search.space import build_space
from hqrun.search.trial import Split, TrialData, TrialSettings, run_trial, train_model

torch.set_num_threads(1)

BATCHABLE = "quantized_bits(4,0,1,alpha=1)"
OUTSIDE = "quantized_po2(4,1)"       # a power-of-two kernel: the population cannot batch it
MENU = {"kernel": {BATCHABLE: 4, "quantized_bits(6,0,1,alpha=1)": 6, OUTSIDE: 4},
        "bias": {"quantized_bits(4,0,1,alpha=1)": 4},
        "activation": {"quantized_relu(3,1)": 3, "quantized_relu(4,2)": 4}}


def blobs(n: int, seed: int) -> Split:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(5, 16, generator=torch.Generator().manual_seed(99))
    y = torch.randint(0, 5, (n,), generator=g)
    return Split(centres[y] + torch.randn(n, 16, generator=g), y)


# ----------------------------------------------------------------------------- the setting

@pytest.mark.parametrize("value", [0, -2, 2.5, "four", True])
def test_bad_population_is_one_paragraph_naming_the_setting(value) -> None:
    with pytest.raises(HqrunError) as err:
        parse_search_config({"population": value})
    text = str(err.value)
    assert "search.population=" in text and "search.population=1" in text   # culprit and fix
    assert "\n" not in text


def test_bad_population_is_refused_by_the_composed_config_too() -> None:
    from hqrun.config import validate_config

    cfg = OmegaConf.create({"command": "search", "seed": 0, "threads": 1,
                            "search": {"population": 0, "max_trials": 3}})
    with pytest.raises(HqrunError, match=r"search\.population=0 must be a whole number >= 1"):
        validate_config(cfg)


def test_population_is_not_the_evolution_pool() -> None:
    cfg = parse_search_config({"population": 8, "evolution": {"population": 3}})
    assert (cfg.population, cfg.evolution.population) == (8, 3)
    assert SearchConfig().population == 1


def test_check_config_refuses_a_bad_population_built_in_code() -> None:
    from hqrun.search.runner import check_config

    with pytest.raises(HqrunError, match=r"search\.population=0"):
        check_config(SearchConfig(population=0))


# ----------------------------------------------------------------------------- one population trial

def setup():
    backend = HqrunBackend({"name": "jet_dnn", "hidden": [8, 8]})
    space = build_space({"menu": MENU}, backend.describe())
    data = TrialData(blobs(512, 1), blobs(256, 2))
    reference = backend.build({"name": "float"}, {})
    train_model(reference, data, 1, 128, 1e-3, 0)
    ref_cost = backend.reference_cost(reference).totals["bits"]
    state = {k: v.clone() for k, v in reference.state_dict().items()}
    settings = TrialSettings(2, 128, 3e-3, "bits", ForgivingFactor(), ref_cost, seed=3, patience=0)
    return backend, space, data, state, settings


def config(space, kernel: str, relu: str = "quantized_relu(3,1)") -> dict:
    out = {}
    for c in space.choices:
        slot = c.key.rsplit("__", 1)[1]
        out[c.key] = {"kernel": kernel, "activation": relu}.get(slot, c.options[0])
        assert out[c.key] in c.options, (c.key, c.options)
    return out


def test_members_outside_the_menu_train_alone_and_the_others_together() -> None:
    from hqrun.search.population_run import train_population

    backend, space, data, state, settings = setup()
    members = [config(space, BATCHABLE), config(space, OUTSIDE),
               config(space, BATCHABLE, "quantized_relu(4,2)")]
    outcomes = train_population(members, space, backend, data, state, settings, retries=0)
    assert [o["batched"] for o in outcomes] == [1, 0, 1]
    assert "quantized_po2" in outcomes[1]["fallback"] and "population" in outcomes[1]["fallback"]
    alone = run_trial(members[1], space, backend, data, state, settings, lambda m: None)
    for key in ("accuracy", "score", "cost", "epoch", "loss"):   # the fallback is the lone trial
        assert outcomes[1][key] == alone[key], key
    for o in (outcomes[0], outcomes[2]):
        assert not o.get("failed") and o["epoch"] == 2 and 0.0 <= o["accuracy"] <= 1.0
        assert o["trial_time"] > 0


def test_a_member_that_cannot_be_built_fails_alone() -> None:
    from hqrun.search.population_run import train_population

    backend, space, data, state, settings = setup()
    broken = dict(config(space, BATCHABLE))
    key = next(iter(broken))
    broken[key] = "quantized_bitz(4,0,1)"          # not a quantizer: the build raises
    outcomes = train_population([config(space, BATCHABLE), broken], space, backend, data, state,
                                settings, retries=1)
    assert not outcomes[0].get("failed") and outcomes[0]["epoch"] == 2
    assert outcomes[1]["failed"] == 1 and outcomes[1]["attempts"] == 2    # retried alone once
    assert outcomes[1]["epoch"] == 0 and outcomes[1]["error"]


# ----------------------------------------------------------------------------- handing out populations

def test_populations_hold_k_new_configurations_each_and_skip_journaled_ones() -> None:
    from ray.tune.search import Searcher

    from hqrun.search.population_searcher import ISSUE_KEY, PopulationSearcher, RandomMembers

    backend, space, *_ = setup()
    journaled = [config(space, BATCHABLE), config(space, OUTSIDE)]
    point = config(space, "quantized_bits(6,0,1,alpha=1)")
    searcher = PopulationSearcher(RandomMembers(space, 0, [point], journaled), 4, 10, "members")
    trials = []
    while (s := searcher.suggest(f"t{len(trials)}")) != Searcher.FINISHED:
        trials.append(s)
    assert [len(t["members"]) for t in trials] == [4, 4, 2]
    assert [t[ISSUE_KEY] for t in trials] == [0, 1, 2]
    configs = [c for t in trials for c in t["members"]]
    assert configs[0] == point                               # given points come first
    keys = [config_key(c) for c in configs]
    assert len(set(keys)) == 10                               # no configuration twice...
    assert not set(keys) & {config_key(c) for c in journaled}   # ...nor one already journaled


def test_configurations_a_population_cannot_batch_become_lone_trials() -> None:
    from ray.tune.search import Searcher

    from hqrun.search.population_searcher import ISSUE_KEY, PopulationSearcher, RandomMembers

    backend, space, *_ = setup()
    points = [config(space, OUTSIDE), config(space, BATCHABLE), config(space, OUTSIDE, "quantized_relu(4,2)"),
              config(space, BATCHABLE, "quantized_relu(4,2)"), config(space, "quantized_bits(6,0,1,alpha=1)")]
    refused: list[str] = []
    told: dict[str, tuple] = {}

    class Source(RandomMembers):
        def complete(self, member_id, result, error):
            told[member_id] = (result, error)

    searcher = PopulationSearcher(Source(space, 0, points, []), 3, 5, "members",
                                  refusal=lambda c: "po2" if OUTSIDE in str(c) else None,
                                  on_refusal=refused.append)
    trials = {}
    while (s := searcher.suggest(f"t{len(trials)}")) != Searcher.FINISHED:
        trials[f"t{len(trials)}"] = s
    assert [t[ISSUE_KEY] for t in trials.values()] == list(range(len(trials)))
    populations = [t for t in trials.values() if "members" in t]
    lone = [t for t in trials.values() if "members" not in t]
    # first draw of 3: two refused and one left alone -> three lone trials; then 3 and 4 together
    assert [t["members"] for t in populations] == [points[3:]]
    assert refused == ["po2", "po2"]
    assert sorted(config_key({k: v for k, v in t.items() if k != ISSUE_KEY}) for t in lone) == \
        sorted(config_key(p) for p in points[:3])
    first_lone = next(tid for tid, t in trials.items() if "members" not in t)
    searcher.on_trial_complete(first_lone, {"score": 0.25})
    assert list(told.values()) == [({"score": 0.25}, False)]        # its own result, as a lone trial


def test_a_searcher_is_asked_again_for_repeats_and_told_each_members_result() -> None:
    from ray.tune.search import Searcher

    from hqrun.search.population_searcher import PopulationSearcher, SearcherMembers

    class Repeating(Searcher):
        """Proposes a, a, b, c, ...; records what it is told."""

        def __init__(self) -> None:
            super().__init__(metric="score", mode="max")
            self.queue = [{"x": "a"}, {"x": "a"}, {"x": "b"}, {"x": "c"}]
            self.told: dict[str, tuple] = {}

        def suggest(self, trial_id):
            return self.queue.pop(0) if self.queue else None

        def on_trial_complete(self, trial_id, result=None, error=False):
            self.told[trial_id] = (result, error)

    inner = Repeating()
    pop = PopulationSearcher(SearcherMembers(inner, tried=[{"x": "c"}]), 3, 3, "members")
    trial = pop.suggest("T")
    assert trial["members"] == [{"x": "a"}, {"x": "b"}]    # the repeat of a skipped; c journaled
    assert inner.told == {"T.m01": (None, True), "T.m02": (None, True)}   # repeats: told not run
    pop.on_trial_complete("T", {"members": [{"score": 0.5}, {"score": 0.7}]})
    assert inner.told["T.m00"] == ({"score": 0.5}, False)
    assert inner.told["T.m01.redraw1"] == ({"score": 0.7}, False)
    assert pop.suggest("U") == Searcher.FINISHED           # the searcher ran dry


def test_member_ids_sort_in_issue_order() -> None:
    from hqrun.search.algorithms.evolution import issue_order
    from hqrun.search.journal import member_index, member_trial_id

    ids = ["part_000-9f_00000.m00", "part_000-9f_00000.m01", "part_000-9f_00000.m10",
           "part_000-1a_00001.m00", "part_001-ee_00000.m00"]
    assert member_index(ids[2]) == ("part_000-9f_00000", 10)
    assert member_index("part_000-ab12c_00003") == ("part_000-ab12c_00003", -1)
    assert member_trial_id("9f_00000", 3) == "9f_00000.m03"
    shuffled = [ids[i] for i in (3, 1, 4, 0, 2)]
    assert sorted(shuffled, key=lambda t: issue_order({"trial_id": t})) == ids
