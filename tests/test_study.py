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
          "study.learned.enabled=false",   # tests/test_study_learned.py covers the learned family
          f"hydra.run.dir={run_dir}"])


def test_quickstart_study_ends_with_report_and_bit_exact_firmware(tmp_path: Path, jets_file: Path,
                                                                  capsys, monkeypatch) -> None:
    run_dir = tmp_path / "study"
    _study(run_dir, jets_file)
    printed = capsys.readouterr().out
    summary = json.loads((run_dir / "report.json").read_text())
    trained = summary["models"]
    assert [m["label"] for m in trained] == ["BF", "Q6", "QB"]
    assert all(m["bit_exact"] is True for m in trained), trained
    assert all(m["cost"]["size_bits"] > 0 for m in trained)
    bits = {m["label"]: m["cost"]["size_bits"] for m in trained}
    assert bits["Q6"] < bits["BF"]
    report = (run_dir / "report.md").read_text()
    assert report.split("\n## ")[1].startswith("Deploy this")
    assert "| **BF** |" in report and "| **QB** |" in report and "post-training" in report
    assert (run_dir / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    for label in ("Q6", "QB", "BF_ptq"):
        fw = json.loads((run_dir / label / "firmware" / "report.json").read_text())
        assert fw["status"] == "PASSED"
    _report_numbers_equal_every_firmware_report(run_dir, report, summary)
    _no_chance_level_trial_on_a_front(run_dir, summary)
    _every_next_command_exists(printed)

    # Rerunning the same command on the finished directory redoes nothing and keeps the report.
    _study(run_dir, jets_file)
    out = capsys.readouterr().out
    assert out.count("skipped") >= 6
    assert json.loads((run_dir / "report.json").read_text()) == summary
    _firmware_of_a_run_writes_only_into_it(run_dir, tmp_path / "cwd", monkeypatch, capsys)


#: The firmware report's estimate lines and the study table's columns, in the same units.
_FIELDS = (("energy", "energy"), ("size", "size_bits"), ("EBOPs", "ebops"), ("LUT", "lut"),
           ("DSP", "hls_dsp"), ("FF", "ff"))


def _report_numbers_equal_every_firmware_report(run_dir: Path, report: str, summary: dict) -> None:
    """One cost per model: report.md, report.json, the model's cost.json and its firmware report
    (JSON and Markdown) hold the same numbers."""
    table = report.split("## The models")[1].split("\n\n")[1].splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    for m in summary["models"]:
        model_dir = Path(m["dir"])
        fw_json = json.loads((model_dir / "firmware" / "report.json").read_text())
        cost = json.loads((model_dir / "cost.json").read_text())
        assert fw_json["estimate"]["totals"] == cost["totals"] == m["cost"], m["label"]
        assert fw_json["estimate"]["basis"] == cost["basis"] == m["cost_basis"]
        fw_md = (model_dir / "firmware" / "report.md").read_text()
        row = next(r for r in table if r.startswith(f"| **{m['label']}** |"))
        cells = dict(zip(header, (c.strip() for c in row.strip("|").split("|"))))
        for md_name, key in _FIELDS:
            shown = f"{m['cost'][key]:,.0f}"
            assert f"- {md_name}: {shown}" in fw_md, (m["label"], md_name)
            column = next(h for h in header if h.lower().startswith(md_name.lower() + " ("))
            assert cells[column] == shown, (m["label"], column)


def _no_chance_level_trial_on_a_front(run_dir: Path, summary: dict) -> None:
    import csv

    from hqrun.search.learning import LearningFloor

    for goal, points in summary["fronts"].items():
        search = json.loads((run_dir / f"search_{goal}" / "search_summary.json").read_text())
        floor = LearningFloor.from_dict(search["learning_floor"])
        assert all(floor.learned(p["val_accuracy"]) for p in points), points
        with (run_dir / f"search_{goal}" / "trials.csv").open(newline="") as handle:
            for row in csv.DictReader(handle):
                if row["pareto"] == "True":
                    assert row["learned"] == "True" and floor.learned(row["accuracy"]), row


def _every_next_command_exists(printed: str) -> None:
    """Each command a `next:` line offers names files that exist, with a known command word."""
    import re
    import shlex

    from hqrun.cli import HYDRA_COMMANDS, PLAIN_COMMANDS
    from hqrun.hints import trained_run

    commands = [c for line in printed.splitlines() if "next:" in line
                for c in re.findall(r"`([^`]+)`", line.split("next:", 1)[1])]
    assert commands, "the quickstart printed no next step"
    for command in commands:
        words = shlex.split(command)
        assert words[0] == "hqrun" and words[1] in {**HYDRA_COMMANDS, **PLAIN_COMMANDS}, command
        for word in words[2:]:
            key, _, value = word.partition("=")
            if key in ("plan", "checkpoint"):
                assert Path(value).exists(), command
            if key == "run":
                assert trained_run(value) is not None, command


def _firmware_of_a_run_writes_only_into_it(run_dir: Path, cwd: Path, monkeypatch, capsys) -> None:
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    main(["firmware", f"run={run_dir / 'Q6'}", "firmware.max_samples=40"])
    assert list(cwd.iterdir()) == []          # no runs/firmware/<date>/ holding only cli.log
    assert "report" in capsys.readouterr().out
    assert (run_dir / "Q6" / "firmware" / "report.json").exists()


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
          "study.learned.enabled=false", f"hydra.run.dir={run_dir}"])
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
    ("study.max_cost.energy=null", "study.max_cost.energy"),   # quickstart ranks by accuracy
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
