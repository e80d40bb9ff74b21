"""The study's learned-bit-width family: budgets to models, settings refused early, and (slow)
a tiny quickstart with the β sweep beside the AutoQ search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from hqrun.cli import main
from hqrun.errors import HqrunError
from hqrun.study.learned import beta_search_config, budget_label, check_learned, pick_candidates
from jets_data import write_tiny_jets


def _rec(tid, acc, cost, status="ok"):
    return {"trial_id": tid, "status": status, "accuracy": acc, "cost": cost,
            "model": f"candidates/{tid}/model.pt"}


def test_each_budget_gets_the_most_accurate_candidate_at_or_under_it():
    recs = [_rec("a", 0.60, 2500.0), _rec("b", 0.66, 2900.0), _rec("c", 0.70, 3100.0),
            _rec("d", 0.71, 11000.0), _rec("e", 0.99, 500.0, status="failed"),
            _rec("f", 0.66, 2000.0)]
    picked = pick_candidates(recs, [1000, 3000, 12000])
    assert [(b, r["trial_id"]) for b, r in picked] == [(3000.0, "f"), (12000.0, "d")]


def test_labels_name_the_budget():
    assert [budget_label(b) for b in (3000, 12000, 12500, 800)] == ["LB3k", "LB12k", "LB12.5k",
                                                                     "LB800"]


def _cfg(**learned):
    return OmegaConf.create({"study": {"goals": ["bits"], "learned": {
        "enabled": True, "budgets": [3000], "search": {}, **learned}},
        "search": {"ray": {"num_cpus": 1, "cpus_per_trial": 1, "address": None}}})


def test_sweep_settings_come_from_search_beta_with_the_study_changes():
    node = beta_search_config(_cfg(search={"epochs": 7, "beta": {"grid": [1e-6]}}))
    assert node.algorithm == "beta" and node.goal.type == "ebops" and node.epochs == 7
    assert list(node.beta.grid) == [1e-6] and node.beta.plan.granularity == "element"
    assert node.beta.trainer.scheduler == "cosine" and node.ray.num_cpus == 1


@pytest.mark.parametrize("learned, culprit", [
    ({"budgets": []}, "study.learned.budgets"),
    ({"budgets": [-5]}, "study.learned.budgets"),
    ({"search": {"beta": {"grid": [-1e-6]}}}, "search.beta.grid"),
    ({"search": {"beta": {"beta_min": 1e-3, "beta_max": 1e-6}}}, "beta_min=0.001 is larger"),
])
def test_bad_learned_settings_are_one_paragraph(learned, culprit):
    with pytest.raises(HqrunError, match=culprit) as err:
        check_learned(_cfg(**learned))
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_quickstart_with_learned_family_adds_its_rows_and_front(tmp_path: Path) -> None:
    data = write_tiny_jets(tmp_path / "tiny.npz", n=600, seed=7, spread=2.5)
    run_dir = tmp_path / "study"
    main(["experiment=quickstart", "data=jets_file", f"data.path={data}", "study.goals=[bits]",
          "study.baselines=[q6]", "trainer.max_epochs=2", "trainer.batch_size=64",
          "trainer.progress_bar=false", "search.max_trials=2", "search.epochs=1",
          "search.reference_epochs=1", "search.batch_size=64", "search.ray.num_cpus=1",
          "firmware.max_samples=60", "study.learned.budgets=[1e9]",
          "study.learned.search.epochs=3", "study.learned.search.reference_epochs=1",
          "study.learned.search.beta.grid=[1e-6,1e-5]",
          "+study.learned.search.beta.trainer.batch_size=64",
          f"hydra.run.dir={run_dir}"])
    summary = json.loads((run_dir / "report.json").read_text())
    labels = [m["label"] for m in summary["models"]]
    assert labels == ["Q6", "QB", "LB1000000k"]
    lb = summary["models"][-1]
    assert lb["accuracy"] is not None and lb["cost"]["ebops"] > 0
    assert summary["fronts"]["ebops"], "the sweep's front is in the report"
    sweep = run_dir / "search_learned"
    assert (sweep / "candidates.csv").is_file() and (sweep / "pareto.png").is_file()
    metrics = json.loads((run_dir / "LB1000000k" / "metrics.json").read_text())
    assert metrics["trial_id"].startswith("beta_") and metrics["test"]["n"] > 0
    # firmware was attempted like every model's: a report or a recorded refusal
    assert ((run_dir / "LB1000000k" / "firmware" / "report.json").is_file()
            or (run_dir / "LB1000000k" / "firmware_error.json").is_file())
    report = (run_dir / "report.md").read_text()
    assert "| **LB1000000k** |" in report and "EBOPs" in report
