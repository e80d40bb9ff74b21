"""search.algorithm=beta: β values, bad settings, the epoch front, one trial without Ray, and
(slow) the sweep on Ray Tune with its journal, artefacts and resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from hqrun.errors import SearchError
from hqrun.search.algorithms.beta import (BetaContext, beta_values, candidate_records,
                                          learned_plan, train_beta_trial, trainer_settings)
from hqrun.search.config import SearchConfig, parse_search_config
from hqrun.search.epochfront import EpochFront
from hqrun.search.pareto import dominates, pareto_front
from hqrun.search.runner import check_config
from hqrun.search.toy import toy_data

CONF = Path(__file__).resolve().parents[1] / "conf"
TINY_MODEL = {"name": "jet_dnn", "n_inputs": 16, "n_classes": 5, "hidden": [8, 8]}


def beta_cfg(**over):
    """search=beta as conf/search/beta.yaml composes it, small."""
    cfg = OmegaConf.structured(SearchConfig)
    cfg.merge_with(OmegaConf.create({k: v for k, v in yaml.safe_load(
        (CONF / "search" / "beta.yaml").read_text()).items() if k != "defaults"}))
    cfg.beta.plan = yaml.safe_load((CONF / "quant" / "learned.yaml").read_text())
    cfg.beta.trainer = yaml.safe_load((CONF / "trainer" / "learned.yaml").read_text())
    cfg.beta.trainer.update({"batch_size": 64, "batches_per_step": 1, "deterministic": False})
    cfg.update({"max_trials": 2, "epochs": 4, "batch_size": 64, "reference_epochs": 1,
                "progress": False})
    for key, value in over.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg


# ------------------------------------------------------------------------- β values and settings


def test_grid_is_taken_as_given_and_draws_are_log_uniform_and_resume_stable():
    assert beta_values(parse_search_config(beta_cfg(**{"beta.grid": [0.0, 1e-6]})), 3) == [0.0, 1e-6]
    few = beta_values(parse_search_config(beta_cfg(max_trials=3)), 7)
    many = beta_values(parse_search_config(beta_cfg(max_trials=40)), 7)
    assert many[:3] == few                      # more trials on resume keep the first ones
    assert all(1e-7 <= b <= 3e-5 for b in many)
    logs = [math.log10(b) for b in many]
    assert min(logs) < -6 and max(logs) > -5     # spread over the decades, not bunched
    assert beta_values(parse_search_config(beta_cfg(max_trials=3)), 8) != few


@pytest.mark.parametrize("over, culprit", [
    ({"beta.grid": [1e-6, -1e-6]}, "search.beta.grid=.*>= 0"),
    ({"beta.grid": []}, "search.beta.grid=.*one or more"),
    ({"beta.beta_min": -1e-6}, "search.beta.beta_min=-1e-06 .*must be finite and > 0"),
    ({"beta.beta_min": 1e-4, "beta.beta_max": 1e-6}, "beta_min=0.0001 is larger than .*beta_max=1e-06"),
    ({"goal.type": "energy"}, "search.goal.type=energy does not fit search.algorithm=beta"),
    ({"retrain": "winner"}, "search.retrain=winner does not apply"),
    ({"beta.plan.granularity": "atom"}, "search.beta.plan: .*granularity"),
    ({"beta.trainer.scheduler": "wobbly"}, "search.beta.trainer.scheduler='wobbly'"),
])
def test_bad_settings_are_one_paragraph_naming_the_setting(over, culprit):
    with pytest.raises(SearchError, match=culprit) as err:
        check_config(beta_cfg(**over))
    assert "\n" not in str(err.value) and "Traceback" not in str(err.value)


def test_trial_plan_and_trainer_carry_beta_and_search_epochs():
    cfg = parse_search_config(beta_cfg(epochs=7))
    plan = learned_plan(cfg, 2e-6, 3)
    assert plan["name"] == "beta_003" and plan["beta"] == 2e-6
    assert "learned_bits" in str(plan["default"]["kernel"])
    trainer = trainer_settings(cfg)
    assert trainer["max_epochs"] == 7 and trainer["checkpoint"] is False


# ------------------------------------------------------------------------- the epoch front

points = st.lists(st.tuples(st.sampled_from([0.5, 0.6, 0.65, 0.7, float("nan")]),
                            st.sampled_from([100.0, 200.0, 300.0, 1000.0, float("inf")])),
                  max_size=30)


@settings(max_examples=200, deadline=None)
@given(points)
def test_epoch_front_is_the_pareto_set_of_all_epochs(epochs):
    front = EpochFront()
    for e, (acc, cost) in enumerate(epochs):
        front.offer(e, acc, cost, lambda e=e: {"epoch": e})
    finite = [(a, c) for a, c in epochs if math.isfinite(a) and math.isfinite(c)]
    expected = {finite[i] for i in pareto_front(finite)}
    kept = front.points
    assert {p.point for p in kept} == expected
    assert len(kept) == len(expected)                       # one epoch per point: the first one
    for p in kept:
        assert epochs[p.epoch] == p.point and p.payload == {"epoch": p.epoch}
        assert p.epoch == min(i for i, pt in enumerate(epochs) if pt == p.point)
        assert not any(dominates(q, p.point) for q in finite)
    assert [p.cost for p in kept] == sorted(p.cost for p in kept)


def test_snapshot_is_taken_only_for_epochs_that_join():
    taken = []
    front = EpochFront()
    for e, (acc, cost) in enumerate([(0.5, 100.0), (0.4, 200.0), (0.6, 100.0), (0.6, 100.0)]):
        front.offer(e, acc, cost, lambda e=e: taken.append(e))
    assert taken == [0, 2] and [p.epoch for p in front.points] == [2]


# ------------------------------------------------------------------------- journal lines


def test_candidate_and_failed_records():
    ok = {"index": 1, "beta": 1e-6, "epochs": 9, "trial_time": 2.0, "failed": 0,
          "candidates": [{"epoch": 3, "accuracy": 0.6, "cost": 500.0, "test_accuracy": 0.59,
                          "model": "candidates/beta_001/epoch_0003/model.pt"},
                         {"epoch": 9, "accuracy": 0.7, "cost": 900.0, "test_accuracy": 0.71,
                          "model": "candidates/beta_001/epoch_0009/model.pt"}]}
    recs = candidate_records(ok, {"name": "beta_001"}, lambda a, c: a - c / 1e4, "part_000")
    assert [r["trial_id"] for r in recs] == ["beta_001-e0003", "beta_001-e0009"]
    assert [r["score"] for r in recs] == [pytest.approx(0.55), pytest.approx(0.61)]
    assert all(r["status"] == "ok" and r["config"]["beta"] == 1e-6 for r in recs)
    bad = candidate_records({"index": 2, "beta": 1e-5, "failed": 1, "candidates": [],
                             "error": "TrialFailed: nan"}, {"name": "beta_002"}, max, "part_000")
    assert len(bad) == 1 and bad[0]["status"] == "failed" and bad[0]["accuracy"] is None
    assert bad[0]["error"] == "TrialFailed: nan"


# ------------------------------------------------------------------------- one trial, no Ray


def _ctx(tmp_path, data, **trainer):
    cfg = parse_search_config(beta_cfg(epochs=5))
    t = trainer_settings(cfg)
    t.update(trainer)
    return cfg, BetaContext(TINY_MODEL, data, t, None, str(tmp_path), 0, 1, {})


def test_one_trial_keeps_its_epoch_front_with_loadable_weights(tmp_path):
    from hqrun.modelfile import load_model_file
    from hqrun.models import build_model

    data = toy_data(n_train=256, n_val=128, n_test=128)
    cfg, ctx = _ctx(tmp_path, data)
    plan = learned_plan(cfg, 1e-5, 0)
    result = train_beta_trial({"index": 0, "beta": 1e-5, "plan": plan}, ctx)
    assert result["failed"] == 0 and result["epochs"] == 5
    cands = result["candidates"]
    assert cands and all(1 <= c["epoch"] <= 5 for c in cands)
    pts = [(c["accuracy"], c["cost"]) for c in cands]
    assert not any(dominates(a, b) for a in pts for b in pts)
    for c in cands:
        loaded = load_model_file(tmp_path / c["model"])
        assert loaded.record["plan"]["beta"] == 1e-5 and loaded.record["epoch"] == c["epoch"]
        model = build_model(TINY_MODEL, loaded.record["plan"])
        model.load_state_dict(loaded.state)
        model.eval()
        with torch.no_grad():
            acc = float((model(data.test.x).argmax(1) == data.test.y).float().mean())
        assert acc == pytest.approx(c["test_accuracy"])


def test_non_finite_training_is_a_failed_trial_not_a_crash(tmp_path):
    data = toy_data(n_train=128, n_val=64, n_test=64)
    data.train.x[5, 3] = float("nan")
    cfg, ctx = _ctx(tmp_path, data)
    result = train_beta_trial({"index": 4, "beta": 1e-6, "plan": learned_plan(cfg, 1e-6, 4)}, ctx)
    assert result["failed"] == 1 and result["candidates"] == []
    assert "non-finite" in result["error"] and "beta=1e-06" in result["error"]
    assert not (tmp_path / "candidates" / "beta_004").exists()


# ------------------------------------------------------------------------- on Ray (slow)


@pytest.mark.slow
def test_sweep_on_ray_journals_candidates_writes_artefacts_and_resumes(tmp_path):
    import ray

    from hqrun.raystart import start_ray
    from hqrun.search.backend import HqrunBackend
    from hqrun.search.algorithms import get_algorithm
    from hqrun.search.results import write_results
    from hqrun.search.runner import run_search

    if ray.is_initialized():
        ray.shutdown()
    start_ray(num_cpus=2)
    try:
        data = toy_data(n_train=256, n_val=128, n_test=128)
        backend = HqrunBackend(TINY_MODEL)
        cfg = beta_cfg(**{"beta.grid": [1e-7, 3e-5], "epochs": 3})
        out = run_search(cfg, backend, data, tmp_path, seed=1)
        recs = out.records
        assert {r["trial"] for r in recs} == {"beta_000", "beta_001"}
        assert all(r["status"] == "ok" and (tmp_path / r["model"]).is_file() for r in recs)
        written = write_results(out, "ebops", "pareto")
        written.update(get_algorithm("beta").write_artefacts(out, written, None))
        assert (tmp_path / "pareto.png").is_file() and (tmp_path / "candidates.csv").is_file()
        assert (tmp_path / "winner" / "model.pt").is_file()
        winner = json.loads((tmp_path / "winner" / "metrics.json").read_text())
        assert winner["trial_id"] == written["winner"]["trial_id"]
        assert len(written["front_dirs"]) == len(written["front"]) >= 1
        assert yaml.safe_load((tmp_path / "winner.yaml").read_text())["beta"] in (1e-7, 3e-5)
        lines = (tmp_path / "trials.jsonl").read_text().splitlines()
        # resume: the same search again trains nothing; one more grid value trains one trial
        again = run_search(cfg, backend, data, tmp_path, seed=1)
        assert (tmp_path / "trials.jsonl").read_text().splitlines() == lines
        assert len(again.records) == len(recs)
        more = run_search(beta_cfg(**{"beta.grid": [1e-7, 3e-5, 1e-6], "epochs": 3}), backend,
                          data, tmp_path, seed=1)
        assert {r["trial"] for r in more.records} == {"beta_000", "beta_001", "beta_002"}
    finally:
        ray.shutdown()


def test_resume_trains_only_unjournaled_betas_under_fresh_indices():
    from hqrun.search.algorithms.beta import pending_points

    journal = [{"config": {"index": 0, "beta": 1e-6, "epoch": 4}},
               {"config": {"index": 0, "beta": 1e-6, "epoch": 9}},
               {"config": {"index": 1, "beta": 3e-5}}]          # a failed trial counts as run
    assert pending_points([1e-6, 3e-5], journal) == []
    assert pending_points([1e-6, 3e-5, 2e-7, 2e-7], journal) == [(2, 2e-7)]
    assert pending_points([5e-6, 1e-6], []) == [(0, 5e-6), (1, 1e-6)]


def test_search_beta_composes_with_the_learned_plan_and_trainer():
    from hydra import compose, initialize_config_module

    schema_keys = set(OmegaConf.structured(SearchConfig).keys())
    with initialize_config_module("hqrun.conf", version_base="1.3"):
        cfg = compose("config", overrides=["command=search", "search=beta",
                                           "search.beta.plan.granularity=layer"])
    assert set(cfg.search.keys()) == schema_keys
    parsed = check_config(cfg.search)
    assert parsed.algorithm == "beta" and parsed.goal.type == "ebops"
    assert parsed.beta.plan["granularity"] == "layer" and parsed.beta.plan["learn"]
    assert parsed.beta.trainer["scheduler"] == "cosine" and parsed.retrain == "none"
