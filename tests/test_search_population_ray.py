"""search.population=K end to end on Ray Tune: one journal line per configuration with the fields
of lone trials, members outside the population's menu trained alone, resume after a SIGKILL.

One local Ray session (2 CPUs) is shared by the whole module: starting Ray costs seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import ray
import torch
from omegaconf import OmegaConf

from hqrun.raystart import start_ray
from hqrun.search.backend import HqrunBackend
from hqrun.search.config import SearchConfig
from hqrun.search.costcap import config_key
from hqrun.search.journal import Journal, member_index
from hqrun.search.results import write_results
from hqrun.search.runner import run_search
from hqrun.search.trial import Split, TrialData

pytestmark = pytest.mark.slow  # Ray: the full suite runs it, the fast lane does not

OUTSIDE = "quantized_po2(4,1)"     # a kernel the population cannot batch
MENU = {"kernel": {"quantized_bits(4,0,1,alpha=1)": 4, "quantized_bits(6,0,1,alpha=1)": 6, OUTSIDE: 4},
        "bias": {"quantized_bits(4,0,1,alpha=1)": 4},
        "activation": {"quantized_relu(3,1)": 3}}
# po2 offered on dense_1's kernel only: half the configurations can be batched, half cannot
LIMITS = {"^dense_1$": [["quantized_bits(4,0,1,alpha=1)", OUTSIDE], ["quantized_bits(4,0,1,alpha=1)"]],
          "Dense": [["quantized_bits(4,0,1,alpha=1)", "quantized_bits(6,0,1,alpha=1)"],
                    ["quantized_bits(4,0,1,alpha=1)"]],
          "Activation": [["quantized_relu(3,1)"]]}
MODEL = {"name": "jet_dnn", "hidden": [8, 8]}   # 3 dense kernels: 8 configurations in all


def blobs(n: int, seed: int) -> Split:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(5, 16, generator=torch.Generator().manual_seed(99))
    y = torch.randint(0, 5, (n,), generator=g)
    return Split(centres[y] + torch.randn(n, 16, generator=g), y)


DATA = TrialData(blobs(512, 1), blobs(256, 2))


@pytest.fixture(scope="module")
def ray_session():
    if ray.is_initialized():
        ray.shutdown()
    start_ray(num_cpus=2)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def make_cfg(**over) -> object:
    cfg = OmegaConf.structured(SearchConfig)
    cfg.max_trials = 6
    cfg.epochs = 2
    cfg.batch_size = 128
    cfg.reference_epochs = 1
    cfg.goal.type = "bits"
    cfg.progress = False
    cfg.retries = 0
    cfg.space.menu = MENU
    cfg.space.limits = LIMITS
    for key, value in over.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def test_population_journals_each_configuration_as_lone_trials_do(ray_session, tmp_path, capsys):
    lone = run_search(make_cfg(population=1), HqrunBackend(MODEL), DATA, tmp_path / "lone", seed=1)
    capsys.readouterr()
    out = run_search(make_cfg(population=4), HqrunBackend(MODEL), DATA, tmp_path / "pop", seed=1)
    log = capsys.readouterr().out
    assert len(out.records) == 6 and len(lone.records) == 6
    assert {frozenset(r) for r in out.records} == {frozenset(r) for r in lone.records}
    assert all(r["status"] == "ok" and r["epochs"] == 2 for r in out.records), out.records
    assert len({config_key(r["config"]) for r in out.records}) == 6
    member = {r["trial_id"]: member_index(r["trial_id"])[1] for r in out.records}
    outside = [r for r in out.records if OUTSIDE in str(r["plan"])]
    assert outside, "the draw should include a configuration outside the population's menu"
    assert all(member[r["trial_id"]] == -1 for r in outside)     # each its own lone Ray trial
    assert all(r["accuracy"] is not None for r in outside)       # trained, not failed
    batched = [r for r in out.records if member[r["trial_id"]] >= 0]
    assert len(batched) >= 2 and all(OUTSIDE not in str(r["plan"]) for r in batched)
    assert len({member_index(r["trial_id"])[0] for r in batched}) < len(batched)   # shared trials
    assert log.count("train as lone trials") == 1                # said once
    written = write_results(out, "bits")
    assert (tmp_path / "pop" / "trials.csv").read_text().count("\n") == 7
    assert written["winner"]["trial_id"] in {r["trial_id"] for r in out.records}


@pytest.mark.parametrize("algorithm", ["bayesian", "evolution"])
def test_searchers_asked_k_times(ray_session, tmp_path, algorithm):
    over = {"algorithm": algorithm, "population": 3, "bayesian.n_startup_trials": 2,
            "evolution.population": 3, "evolution.batch": 1, "evolution.tournament": 2,
            "space.limits": {"Dense": LIMITS["Dense"],      # all batchable: 32 configurations
                             "Activation": [["quantized_relu(3,1)", "quantized_relu(4,2)"]]}}
    out = run_search(make_cfg(**over), HqrunBackend(MODEL), DATA, tmp_path, seed=2)
    assert len(out.records) == 6 and all(r["status"] == "ok" for r in out.records)
    assert all(member_index(r["trial_id"])[1] >= 0 for r in out.records)   # all in populations
    assert len({config_key(r["config"]) for r in out.records}) == 6


DRIVER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from test_search_population_ray import make_cfg, DATA, MODEL
    from hqrun.search.backend import HqrunBackend
    from hqrun.search.runner import run_search

    class SlowBackend(HqrunBackend):      # defined in __main__: Ray ships it by value
        def build(self, plan, widths):
            if plan.get("name") != "float":
                time.sleep(0.3)
            return super().build(plan, widths)

    cfg = make_cfg(max_trials=6, population=2, **{{"ray.address": {address!r}}})
    run_search(cfg, SlowBackend(MODEL), DATA, {run_dir!r}, seed=5)
""")


def test_resume_after_sigkill_does_not_retrain_journaled_configurations(ray_session, tmp_path):
    run_dir = tmp_path / "run"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(tests=str(Path(__file__).parent), address=ray_session,
                                    run_dir=str(run_dir)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    journal = Journal(run_dir / "trials.jsonl")
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None and len(journal.trials()) < 2:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = journal.trials()
    assert 2 <= len(before) < 6
    out = run_search(make_cfg(max_trials=6, population=2), HqrunBackend(MODEL), DATA, run_dir, seed=5)
    assert [r["trial_id"] for r in out.records[:len(before)]] == [r["trial_id"] for r in before]
    assert len(out.records) == 6 and all(r["status"] == "ok" for r in out.records)
    keys = [config_key(r["config"]) for r in out.records]
    assert len(set(keys)) == 6          # no journaled configuration was trained again
