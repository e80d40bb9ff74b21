"""Search algorithms plug in by registration: one defined here runs a search, the runner untouched;
a name nobody registered is refused with the list of valid ones."""

from __future__ import annotations

import pytest
import ray
from omegaconf import OmegaConf

from hqrun.errors import SearchError
from hqrun.raystart import start_ray
from hqrun.search import algorithms
from hqrun.search.algorithms import SearchAlgorithm, algorithm_names, register_algorithm
from hqrun.search.config import SearchConfig, parse_search_config
from hqrun.search.runner import check_config, run_search
from hqrun.search.toy import ToyBackend, toy_data


def _cfg(**over):
    cfg = OmegaConf.structured(SearchConfig)
    cfg.update({"max_trials": 3, "epochs": 1, "batch_size": 128, "reference_epochs": 1,
                "progress": False, "retries": 0})
    cfg.goal.type = "bits"
    cfg.ray.cpus_per_trial = 2
    cfg.space.limits = {"Dense": [4, 4], "Activation": [4]}
    for key, value in over.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg


@pytest.fixture
def corners(monkeypatch):
    """An algorithm that trains the all-first and the all-last configuration, then stops."""
    monkeypatch.setattr(algorithms, "_REGISTRY", dict(algorithms._REGISTRY))

    @register_algorithm("corners")
    class Corners(SearchAlgorithm):
        calls: list = []

        def validate(self, cfg):
            if cfg.max_trials < 2:
                raise SearchError("corners needs search.max_trials >= 2")

        def run(self, run):
            Corners.calls.append(run.cfg.algorithm)
            points = [{c.key: c.options[0] for c in run.space.choices},
                      {c.key: c.options[-1] for c in run.space.choices}]
            done = run.finished()
            progress = run.progress(len(points), done)
            run.run_trials(len(points) - len(done), progress, previous=done,
                           points=points[len(done):])
            return {}, None

    return Corners


def test_registry_lists_and_refuses_by_name():
    assert {"random", "bayesian", "asha", "blocks", "evolution"} <= set(algorithm_names())
    with pytest.raises(SearchError, match="search.algorithm='tabu'; use one of .*random"):
        check_config(_cfg(algorithm="tabu"))


def test_config_is_parsed_once_into_its_schema():
    cfg = check_config(_cfg())
    assert isinstance(cfg, SearchConfig) and cfg.goal.type == "bits"
    with pytest.raises(SearchError, match="invalid search setting"):
        parse_search_config({"max_trials": "many"})


def test_algorithm_validation_runs_before_any_work(corners, tmp_path):
    with pytest.raises(SearchError, match="corners needs"):
        run_search(_cfg(algorithm="corners", max_trials=1), ToyBackend(), toy_data(64, 32, 32),
                   tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_an_algorithm_defined_here_runs_a_search(corners, tmp_path):
    if ray.is_initialized():
        ray.shutdown()
    start_ray(num_cpus=2)
    try:
        out = run_search(_cfg(algorithm="corners"), ToyBackend(),
                         toy_data(n_train=256, n_val=128, n_test=128), tmp_path, seed=1)
    finally:
        ray.shutdown()
    assert corners.calls == ["corners"]
    configs = [r["config"] for r in out.records]
    assert len(out.records) == 2 and configs[0] != configs[1]
    assert all(r["status"] in ("ok", "stopped") for r in out.records)
