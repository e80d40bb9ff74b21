"""``hqrun experiment=quickstart`` end to end on tiny data: models, firmware, report, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hqrun.cli import main
from jets_data import write_tiny_jets

pytestmark = pytest.mark.slow  # Ray / whole-study runs: the full suite runs them, the fast lane not


@pytest.fixture(scope="module")
def jets_file(tmp_path_factory) -> Path:
    return write_tiny_jets(tmp_path_factory.mktemp("studydata") / "tiny.npz", n=600, seed=7, spread=2.5)


def _study(run_dir: Path, jets_file: Path) -> None:
    main(["experiment=quickstart", "data=jets_file", f"data.path={jets_file}", "study.goals=[bits]",
          "trainer.max_epochs=2", "trainer.batch_size=64", "trainer.progress_bar=false",
          "search.max_trials=2", "search.epochs=1", "search.reference_epochs=1",
          "search.batch_size=64", "search.ray.num_cpus=1", "firmware.max_samples=60",
          "search.seed=3",  # seeds the search only: every step keeps the split of `seed`
          f"hydra.run.dir={run_dir}"])


def test_quickstart_study_ends_with_report_and_bit_exact_firmware(tmp_path: Path, jets_file: Path,
                                                                  capsys) -> None:
    run_dir = tmp_path / "study"
    _study(run_dir, jets_file)
    summary = json.loads((run_dir / "report.json").read_text())
    trained = [m for m in summary["models"] if m["dir"]]
    assert [m["label"] for m in trained] == ["BF", "Q6", "QB"]
    assert all(m["bit_exact"] is True for m in trained), trained
    assert all(m["cost"]["size_bits"] > 0 for m in trained)
    bits = {m["label"]: m["cost"]["size_bits"] for m in trained}
    assert bits["Q6"] < bits["BF"]
    report = (run_dir / "report.md").read_text()
    assert "| BF |" in report and "| QB |" in report and "post-training" in report
    assert (run_dir / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    for label in ("Q6", "QB", "BF_ptq"):
        fw = json.loads((run_dir / label / "firmware" / "report.json").read_text())
        assert fw["status"] == "PASSED"
    capsys.readouterr()

    # Rerunning the same command on the finished directory redoes nothing and keeps the report.
    _study(run_dir, jets_file)
    out = capsys.readouterr().out
    assert out.count("skipped") >= 6
    assert json.loads((run_dir / "report.json").read_text()) == summary


def test_capped_search_candidates_and_restarts_pick_the_best_validation_model(
        tmp_path: Path, jets_file: Path) -> None:
    """study.max_cost caps every trial; study.candidates retrains the top trials, study.restarts
    trains each model again with the next training seed on the same split, and the best
    validation accuracy is kept (recorded in candidates.json and the report)."""
    run_dir = tmp_path / "capped"
    cap = 12000
    main(["experiment=quickstart", "data=jets_file", f"data.path={jets_file}", "study.goals=[bits]",
          "study.baselines=[float]", "study.firmware=false", "study.candidates=2",
          "study.restarts=2", "trainer.seed=5", "search.seed=9", f"study.max_cost.bits={cap}", "trainer.max_epochs=2", "trainer.batch_size=64",
          "trainer.progress_bar=false", "search.max_trials=3", "search.epochs=1",
          "search.reference_epochs=1", "search.batch_size=64", "search.ray.num_cpus=1",
          f"hydra.run.dir={run_dir}"])
    trials = [json.loads(line) for line in (run_dir / "search_bits" / "trials.jsonl").open()]
    trials = [t for t in trials if t.get("event") == "trial"]
    assert len(trials) == 3 and all(t["cost"] <= cap for t in trials)
    rows = json.loads((run_dir / "QB" / "candidates.json").read_text())
    assert sorted((r["candidate"], r["seed"]) for r in rows) == [(0, 5), (0, 6), (1, 5), (1, 6)]
    assert sum(r["chosen"] for r in rows) == 1
    chosen = next(r for r in rows if r["chosen"])
    assert chosen["val_accuracy"] == max(r["val_accuracy"] for r in rows)
    qb = json.loads((run_dir / "QB" / "metrics.json").read_text())
    assert qb["val"]["accuracy"] == chosen["val_accuracy"]
    assert json.loads((run_dir / "QB" / "cost.json").read_text())["totals"]["size_bits"] <= cap
    for r in rows:   # study.fill_to_cap: parameters raised within the cap before training
        assert r["trial_cost"] <= r["cost"] <= cap
    assert json.loads((run_dir / "QB" / "cost.json").read_text())["totals"]["size_bits"] == \
        chosen["cost"]
    # the search split the data as the trainings did (search.seed does not move the split)
    assert (run_dir / "search_bits" / "scaler.json").read_text() == \
        (run_dir / "BF" / "scaler.json").read_text()
    report = (run_dir / "report.md").read_text()
    assert "QB: trainings compared, chosen on validation accuracy" in report
    assert "BF: trainings compared" in report
    # restarts of a baseline: same split (same scaler, same validation size), other weights
    bf = [json.loads((run_dir / "BF" / "candidates.json").read_text())][0]
    assert [r["seed"] for r in bf] == [5, 6]
    first, second = (Path(r["dir"]) for r in bf)
    assert second.name == "c0_s6"
    assert (first / "scaler.json").read_text() == (second / "scaler.json").read_text()
    import torch
    w1, w2 = (torch.load(d / "model.pt") for d in (first, second))
    assert any(not torch.equal(w1[k], w2[k]) for k in w1)
    assert json.loads((first / "metrics.json").read_text())["seed"] == 5


@pytest.mark.parametrize("override, culprit", [
    ("study.max_cost.energy=-5", "study.max_cost.energy"),
    ("study.candidates=0", "study.candidates"),
    ("study.restarts=0", "study.restarts"),
    ("trainer.seed=-1", "trainer.seed"),
    ("search.objective=accuracy", "study.max_cost.energy"),
])
def test_bad_study_settings_are_refused_before_training(tmp_path: Path, capsys, override: str,
                                                         culprit: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment=quickstart", override, f"hydra.run.dir={tmp_path}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert culprit in err and "Traceback" not in err
    assert not (tmp_path / "BF").exists()


def test_candidates_of_a_block_search_come_from_the_block_searched_last(tmp_path: Path) -> None:
    """With schedule=cost the last block searched may have the lower index."""
    from hqrun.search.journal import Journal
    from hqrun.study.steps import candidate_plans

    journal = Journal(tmp_path / "trials.jsonl")

    def trial(block: int, n: int, score: float) -> dict:
        plan = {"name": "t", "input": None, "default": {}, "layers": {
            "dense_1": {"kernel": f"quantized_bits({n},0,1)"}}}
        return {"event": "trial", "trial_id": f"b{block}-{n}", "block": block, "status": "ok",
                "config": {"k": n}, "plan": plan, "widths": {}, "accuracy": score,
                "cost": 1.0, "score": score}

    journal.append(trial(1, 4, 0.9))
    journal.append({"event": "block_done", "block": 1, "trial_id": "b1-4", "frozen": {}})
    journal.append(trial(0, 6, 0.5))
    journal.append(trial(0, 8, 0.6))
    journal.append({"event": "block_done", "block": 0, "trial_id": "b0-8", "frozen": {}})
    picked = candidate_plans(tmp_path, 3)
    assert [rec["trial_id"] for rec, _ in picked] == ["b0-8", "b0-6"]
    assert all(path.exists() for _, path in picked)
