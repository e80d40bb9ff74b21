"""End-to-end searches on Ray Tune with the toy backend: each algorithm, faults, resume, winner.

One local Ray session (2 CPUs) is shared by the whole module: starting Ray costs seconds.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import ray
from omegaconf import OmegaConf

from hqrun.search.config import SearchConfig
from hqrun.search.journal import Journal
from hqrun.search.results import front_records, write_results
from hqrun.search.runner import run_search
from hqrun.raystart import start_ray
from hqrun.search.toy import ToyBackend, toy_data

pytestmark = pytest.mark.slow  # Ray / whole-study runs: the full suite runs them, the fast lane not

LIMITS = {"Dense": [4, 4], "Activation": [4]}


@pytest.fixture(scope="module")
def ray_session():
    if ray.is_initialized():   # an earlier test's search (e.g. a study's) left its session up
        ray.shutdown()
    start_ray(num_cpus=2)    # hqrun's one way to start Ray: loopback only, no dashboard probes
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def make_cfg(**over) -> object:
    cfg = OmegaConf.structured(SearchConfig)
    cfg.max_trials = 4
    cfg.epochs = 2
    cfg.batch_size = 128
    cfg.learning_rate = 0.01
    cfg.reference_epochs = 2
    cfg.goal.type = "bits"
    cfg.progress = False
    cfg.ray.cpus_per_trial = 2     # one trial actor at a time: fewer torch imports on 2 cores
    cfg.retries = 0
    cfg.space.limits = LIMITS
    for key, value in over.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg


DATA = toy_data(n_train=256, n_val=128, n_test=128)


def finished(records):
    return [r for r in records if r["status"] in ("ok", "stopped", "failed")]


FAULTY = {"^dense_1$": [["ternary", "quantized_bits(4,0,1)", "quantized_bits(2,1,1,alpha=1.0)"],
                        ["quantized_bits(4,0,1)"]],
          "Dense": [["quantized_bits(4,0,1)", "quantized_bits(8,0,1)"], ["quantized_bits(4,0,1)"]],
          "Activation": [["quantized_relu(3,1)", "quantized_relu(4,2)"]]}


def test_random_search_with_faults_and_artefacts(ray_session, tmp_path):
    """A raising trial and a NaN trial are recorded as failed; the search goes on."""
    cfg = make_cfg(max_trials=6, **{"space.limits": FAULTY})
    backend = ToyBackend(fail_spec="ternary", nan_spec="quantized_bits(2,1,1,alpha=1.0)")
    out = run_search(cfg, backend, DATA, tmp_path, seed=3)
    assert len(out.records) == 6
    for r in out.records:
        kernels = {v["kernel"] for k, v in r["plan"]["layers"].items() if k.startswith("dense")}
        bad = "ternary" in kernels or "quantized_bits(2,1,1,alpha=1.0)" in kernels
        assert (r["status"] == "failed") == bad, r
        if "ternary" in kernels:
            assert "toy failure" in r["error"]
        elif bad:
            assert "not finite" in r["error"]
        else:
            assert 0.0 <= r["accuracy"] <= 1.0 and r["cost"] > 0
            expected = r["accuracy"] * (1 + 0.08 * math.log2(out.reference_cost / r["cost"]))
            assert r["score"] == pytest.approx(expected)
    kinds = {("ternary" in json.dumps(r["plan"]), r["status"]) for r in out.records}
    assert {(True, "failed"), (False, "ok"), (False, "failed")} <= kinds   # all three cases
    written = write_results(out, "bits")
    assert (tmp_path / "trials.csv").read_text().count("\n") == 7
    assert (tmp_path / "pareto.png").stat().st_size > 1000
    assert written["front"] == front_records(out.records)
    assert (tmp_path / "winner.yaml").exists()
    _winner_round_trip(tmp_path, out)


def _winner_round_trip(run_dir, out):
    """winner.yaml is a plan hqrun.models loads and builds as it is."""
    import hqrun.models as models

    plan = models.load_plan(str(run_dir / "winner.yaml"))
    best = max((r for r in out.records if r["status"] == "ok"), key=lambda r: r["score"])
    assert plan.to_dict()["layers"] == best["plan"]["layers"]
    assert plan.default == {"kernel": None, "bias": None, "activation": None}
    model = models.build_model({"name": "jet_dnn"}, plan)   # toy names are jet_dnn names
    assert set(best["plan"]["layers"]) <= set(dict(model.named_children()))


@pytest.mark.parametrize("algorithm", ["bayesian", "asha"])
def test_bayesian_and_asha(ray_session, tmp_path, algorithm):
    cfg = make_cfg(algorithm=algorithm, max_trials=4, epochs=3,
                   objective="pareto" if algorithm == "bayesian" else "forgiving",
                   **{"bayesian.n_startup_trials": 2})
    out = run_search(cfg, ToyBackend(), DATA, tmp_path, seed=1)
    assert len(finished(out.records)) == 4
    ok = [r for r in out.records if r["status"] in ("ok", "stopped")]
    assert len(ok) == 4
    if algorithm == "asha":    # early-stopped trials report fewer epochs
        assert all(1 <= r["epochs"] <= 3 for r in ok)
        assert all((r["status"] == "stopped") == (r["epochs"] < 3) for r in ok)


def test_capped_search_trains_only_configurations_within_the_cap(ray_session, tmp_path):
    """search.goal.max_cost: every trial Ray ran fits the cap; a rerun adds none twice."""
    from hqrun.search.costcap import config_key, price
    from hqrun.search.space import build_space

    cfg = make_cfg(max_trials=4, **{"space.limits": FAULTY})
    backend = ToyBackend()
    space = build_space(cfg.space, backend.describe())
    import itertools
    costs = sorted(price(space, backend, dict(zip(space.keys, v)), "bits")
                   for v in itertools.product(*(c.options for c in space.choices)))
    cap = costs[len(costs) // 4]     # a quarter of the space fits
    cfg.goal.max_cost = cap
    out = run_search(cfg, backend, DATA, tmp_path, seed=2)
    assert len(finished(out.records)) == 4
    assert all(r["cost"] <= cap for r in out.records)
    assert len({config_key(r["config"]) for r in out.records}) == 4
    cfg.max_trials = 6                # resume with a larger trial budget: two new configurations
    again = run_search(cfg, backend, DATA, tmp_path, seed=2)
    assert len(finished(again.records)) == 6
    assert len({config_key(r["config"]) for r in again.records}) == 6
    assert all(r["cost"] <= cap for r in again.records)


def test_evolution_breeds_capped_neighbours_and_resumes(ray_session, tmp_path):
    """algorithm=evolution: a random population, then one-mutation children of earlier trials,
    all within the cap and never repeated; a rerun with a larger budget continues."""
    from hqrun.search.costcap import config_key

    cfg = make_cfg(algorithm="evolution", max_trials=6, **{"space.limits": FAULTY,
                   "evolution.population": 3, "evolution.tournament": 2, "evolution.batch": 2,
                   "goal.max_cost": 1e9})
    out = run_search(cfg, ToyBackend(), DATA, tmp_path, seed=4)
    assert len(finished(out.records)) == 6
    keys = [config_key(r["config"]) for r in out.records]
    assert len(set(keys)) == 6
    for i, rec in enumerate(out.records[3:], start=3):   # bred: one choice away from an elder
        assert any(sum(rec["config"][k] != old["config"][k] for k in rec["config"]) == 1
                   for old in out.records[:i])
    cfg.max_trials = 8
    again = run_search(cfg, ToyBackend(), DATA, tmp_path, seed=4)
    assert len(finished(again.records)) == 8
    assert [config_key(r["config"]) for r in again.records][:6] == keys


def test_block_scheduler_freezes_earlier_blocks(ray_session, tmp_path):
    cfg = make_cfg(algorithm="blocks", max_trials=1,
                   **{"blocks.patterns": ["^(dense_2|relu_2)$", "^(dense_1|relu_1)$"],
                      "blocks.min_trials": 3,
                      "space.layers": ["^dense_[12]$", "^relu_[12]$"]})
    cfg.space.limits = {"Dense": [[ "quantized_bits(4,0,1)", "ternary"], 4], "Activation": [4]}
    out = run_search(cfg, ToyBackend(), DATA, tmp_path, seed=0)
    blocks = json.loads((tmp_path / "blocks.json").read_text())
    assert [b["trials"] for b in blocks] == [3, 3]            # max(min_trials, 1 * cost / ref)
    first = [r for r in out.records if r["block"] == 0]
    second = [r for r in out.records if r["block"] == 1]
    assert len(first) == 3 and len(second) == 3
    assert all(set(r["plan"]["layers"]) == {"dense_2", "relu_2"} for r in first)
    done = Journal(tmp_path / "trials.jsonl").blocks_done()
    best0 = next(r for r in first if r["trial_id"] == done[0]["trial_id"])
    for r in second:     # block 0's winner is frozen in every trial of block 1
        assert r["plan"]["layers"]["dense_2"] == best0["plan"]["layers"]["dense_2"]
        assert r["plan"]["layers"]["relu_2"] == best0["plan"]["layers"]["relu_2"]
    winner = write_results(out, "bits")["winner"]
    assert winner["block"] == 1 and out.final_block == 1
    # rerun: both blocks done, nothing new runs
    again = run_search(cfg, ToyBackend(), DATA, tmp_path, seed=0)
    assert len(again.records) == 6


DRIVER = textwrap.dedent("""
    import sys
    from omegaconf import OmegaConf
    sys.path.insert(0, {tests!r})
    from test_search_ray import make_cfg, DATA
    from hqrun.search.runner import run_search
    from hqrun.search.toy import ToyBackend
    cfg = make_cfg(max_trials=5, **{{"ray.address": {address!r}}})
    run_search(cfg, ToyBackend(slow=0.3), DATA, {run_dir!r}, seed=5)
""")


def test_resume_after_sigkill_keeps_finished_trials(ray_session, tmp_path):
    run_dir = tmp_path / "run"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(tests=str(Path(__file__).parent), address=ray_session,
                                    run_dir=str(run_dir)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    journal = Journal(run_dir / "trials.jsonl")
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and len(journal.trials()) < 2:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {r["trial_id"] for r in journal.trials()}
    assert 2 <= len(before) < 5
    cfg = make_cfg(max_trials=5)
    out = run_search(cfg, ToyBackend(), DATA, run_dir, seed=5)
    after = {r["trial_id"] for r in out.records}
    assert before <= after                     # nothing finished before the kill was lost
    assert len(finished(out.records)) == 5     # and the search completed its budget


def test_trials_whose_worker_died_run_again_and_are_journaled_once(ray_session, tmp_path, capsys):
    """A worker process that dies (as on a lost node) is not the trial's failure: with
    search.retries=0 Ray Tune gives such a trial up at once, and the runner runs it again."""
    crashes = tmp_path / "crashes"
    crashes.mkdir()
    cfg = make_cfg(max_trials=3, retries=0)
    out = run_search(cfg, ToyBackend(crash_once_in=str(crashes)), DATA, tmp_path / "run", seed=4)
    assert len(list(crashes.iterdir())) == 3            # every trial's first worker died
    assert len(out.records) == 3 and all(r["status"] == "ok" for r in out.records)
    plans = [json.dumps(r["plan"], sort_keys=True) for r in out.records]
    assert len(set(plans)) == 3                          # each configuration journaled once
    assert "3 trial(s) lost with their worker or node; running them again" in capsys.readouterr().out


def test_resume_refuses_other_settings(ray_session, tmp_path):
    from hqrun.errors import SearchError

    (tmp_path / "search.json").write_text(json.dumps({"fingerprint": "0" * 16}))
    with pytest.raises(SearchError, match="different search"):
        run_search(make_cfg(), ToyBackend(), DATA, tmp_path)


@pytest.mark.parametrize("over, culprit", [
    ({"space.limits": {"Dence": 4}}, "Dence"),
    ({"space.menu": {"kernel": {"quantized_bitz(4,0,1)": 4}}}, "quantized_bitz(4,0,1)"),
    ({"algorithm": "blocks", "blocks.patterns": ["^dense_9$"]}, "^dense_9$"),
])
def test_bad_space_fails_before_any_trial(tmp_path, over, culprit):
    """Refused before the reference is trained or Ray is touched (no ray_session needed)."""
    from hqrun.errors import SearchError

    with pytest.raises(SearchError) as err:
        run_search(make_cfg(**over), ToyBackend(), DATA, tmp_path)
    assert culprit in str(err.value)
    assert not (tmp_path / "reference.pt").exists()
    assert not (tmp_path / "trials.jsonl").exists()
