"""The study report from a study directory written by the test: "Deploy this", one cost per model,
fronts without failed-to-learn trials, columns and figure series passed as data."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml

from hqrun.study.collect import Trial, read_model, spread_points
from hqrun.study.deploy import recommend
from hqrun.study.plots import Point, Series
from hqrun.study.report import write_report
from hqrun.study.tables import Column

CLASSES = ["g", "q", "t", "w", "z"]
BASIS = {"kind": "estimated", "what": "deployed", "input_type": "ap_fixed<16,6,AP_RND_CONV,AP_SAT>",
         "input_from": "firmware.input_type", "energy_size_policy": "qtools",
         "fpga_types": "exact", "part": "xcvu9p-flgb2104-2-e", "clock_period_ns": 5.0,
         "reuse_factor": 1, "strategy": "Latency", "backend": "hls4ml"}
PLAN_Q = {"name": "x", "input": None, "layers": {},
          "default": {"kernel": "quantized_bits(6,0,alpha=1)", "bias": "quantized_bits(6,0,alpha=1)",
                      "activation": "quantized_relu(6,0)"}}


def _json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _model(root: Path, label: str, acc: float, energy: int, bits: int, *, lut: int = 1000,
           synthesis: dict | None = None, still_improving: bool = False, plan: dict = PLAN_Q,
           name: str | None = None) -> Path:
    d = root / label
    totals = {"energy": energy, "size_bits": bits, "ebops": 10 * bits, "lut": lut, "dsp": 0,
              "ff": 500, "latency_cycles": 20, "latency_ns": 100.0, "clock_period_ns": 5.0}
    _json(d / "metrics.json", {
        "test": {"accuracy": acc, "n": 4000, "roc_auc": {c: 0.9 for c in CLASSES}},
        "val": {"accuracy": acc}, "best_epoch": 19 if still_improving else 9, "epochs_run": 20,
        "max_epochs": 20 if still_improving else 100, "still_improving": still_improving,
        "data": {"n_train": 12800, "n_val": 3200, "n_test": 4000, "class_names": CLASSES}})
    _json(d / "cost.json", {"totals": totals, "basis": BASIS})
    (d / "plan.yaml").write_text(yaml.safe_dump({**plan, "name": name or label}))
    _json(d / "firmware" / "report.json", {
        "status": "PASSED", "project_dir": str(d / "firmware" / "project"), "backend": "hls4ml",
        "input_type": BASIS["input_type"],
        "config": {"vendor": "Vitis", "part": "xcvu9p-flgb2104-2-e", "clock_period": 5.0,
                   "reuse_factor": 1},
        "verification": {"n_samples": 1000, "check_layer": "dense_4",
                         "softmax": {"argmax_agreement": 0.99},
                         "accuracy": {"model": acc, "firmware": acc - 0.001}},
        "estimate": {"totals": totals},
        "synthesis": synthesis or {"status": "not run", "command": f"cd {d} && vitis-run"}})
    return d


def _search(root: Path, goal: str, rows: list[tuple[str, float, float, dict]]) -> Path:
    d = root / f"search_{goal}"
    d.mkdir(parents=True)
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=["trial_id", "status", "accuracy", "cost", "plan", "widths"])
    w.writeheader()
    for trial_id, acc, cost, plan in rows:
        w.writerow({"trial_id": trial_id, "status": "ok", "accuracy": acc, "cost": cost,
                    "plan": json.dumps(plan), "widths": "{}"})
    (d / "trials.csv").write_text(out.getvalue())
    _json(d / "search_summary.json", {"seed": 0, "epochs_per_trial": 4, "learning_floor": {
        "chance": 0.2, "n_samples": 3200, "margin": 0.0212}})
    return d


def _plan(bits: int) -> dict:
    spec = f"quantized_bits({bits},0,alpha=1)"
    return {"name": "t", "input": None, "layers": {},
            "default": {"kernel": spec, "bias": spec, "activation": f"quantized_relu({bits},0)"}}


@pytest.fixture()
def study(tmp_path: Path) -> Path:
    root = tmp_path / "study"
    (root).mkdir()
    (root / "study_config.yaml").write_text(yaml.safe_dump({
        "model": {"name": "jet_dnn"}, "data": {"name": "jets_sample"},
        "study": {"max_cost": {"energy": None, "bits": None}, "init_from_float": True}}))
    _model(root, "BF", 0.70, 190000, 36000, plan={**PLAN_Q, "name": "float"})
    _model(root, "BF_ptq", 0.705, 95000, 72000,
           plan={**PLAN_Q, "default": {"kernel": "quantized_bits(16,5,alpha=1)",
                                       "bias": "quantized_bits(16,5,alpha=1)",
                                       "activation": "quantized_relu(16,6)"}})
    _model(root, "Q6", 0.69, 40000, 27000)
    _model(root, "QE", 0.68, 21000, 35000, plan=_plan(4), still_improving=True)
    _model(root, "QB", 0.675, 36000, 9000, plan=_plan(3),
           synthesis={"status": "done", "tool": "yosys",
                      "resources": {"lut": 4321, "ff": 99, "dsp": 0, "latency_cycles": 3}})
    _search(root, "energy", [("dead", 0.2, 100.0, _plan(2)), ("a", 0.64, 200.0, _plan(4)),
                             ("b", 0.66, 300.0, _plan(6)), ("c", 0.30, 250.0, _plan(8))])
    _search(root, "bits", [("dead2", 0.21, 10.0, _plan(2)), ("d", 0.62, 20.0, _plan(3)),
                           ("e", 0.65, 30.0, _plan(5))])
    return root


def _write(root: Path, **extra) -> str:
    models = [(label, root / label) for label in ("BF", "Q6", "QE", "QB")]
    searches = {"energy": root / "search_energy", "bits": root / "search_bits"}
    write_report(root, models, searches, CLASSES, 3, "hqrun experiment=test", **extra)
    return (root / "report.md").read_text()


def test_report_opens_with_what_to_deploy(study: Path) -> None:
    text = _write(study)
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections[0] == "## Deploy this"
    deploy = text.split("## Deploy this")[1].split("## The models")[0]
    assert "### Lowest energy: QE" in deploy and "### Smallest size (bits): QB" in deploy
    assert "0.6800 ± 0.0074 (4,000 test samples)" in deploy
    assert "21,000 pJ per inference (estimated)" in deploy
    assert "`QE/firmware/project`" in deploy and "part xcvu9p-flgb2104-2-e, 5 ns clock, reuse factor 1" in deploy
    assert "bit-exact: yes" in deploy and "99.0 %" in deploy
    assert "still improving" in deploy.split("### Smallest")[0]      # QE's training was cut off
    assert "LUT 4,321" in deploy and "measured by yosys" in deploy   # QB was synthesised
    summary = json.loads((study / "report.json").read_text())
    assert summary["deploy"] == {"energy": {"model": "QE", "reason": summary["deploy"]["energy"]["reason"]},
                                 "bits": {"model": "QB", "reason": summary["deploy"]["bits"]["reason"]}}


def test_every_model_shows_its_cost_json_and_bf_its_built_firmware(study: Path) -> None:
    text = _write(study)
    table = text.split("## The models")[1].split("## Accuracy against cost")[0]
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()
            if line.startswith("| **")}
    assert "95,000" in rows["**BF**"] and "190,000" not in rows["**BF**"]   # the PTQ model
    assert "0.7050 ±" in rows["**BF**"]
    for label in ("Q6", "QE", "QB"):
        totals = json.loads((study / label / "cost.json").read_text())["totals"]
        assert f"{totals['energy']:,}" in rows[f"**{label}**"]
        assert f"{totals['size_bits']:,}" in rows[f"**{label}**"]
    header = next(line for line in text.splitlines() if line.startswith("| model | test accuracy"))
    assert "energy (pJ, estimated)" in header and "LUT (measured)" in header
    assert "4,321" in rows["**QB**"] and rows["**QE**"].count("—") >= 4   # measured only for QB
    assert "float model (test accuracy 0.7000)" in text
    models = json.loads((study / "report.json").read_text())["models"]
    assert all(set(m) >= {"label", "accuracy", "accuracy_sigma", "cost", "cost_basis", "bit_exact"}
               for m in models)


def test_fronts_leave_out_failed_to_learn_trials(study: Path) -> None:
    text = _write(study)
    fronts = text.split("## Search fronts")[1].split("## Quantizers")[0]
    assert "`dead`" not in fronts and "`dead2`" not in fronts
    assert "`c`" not in fronts                       # learned, but dominated by `a`
    assert "1 trial failed to learn" in fronts
    summary = json.loads((study / "report.json").read_text())
    for goal, points in summary["fronts"].items():
        assert points and all(p["val_accuracy"] > 0.2212 for p in points), goal
    assert summary["searches"]["energy"]["failed_to_learn"] == 1


def test_columns_and_series_are_added_by_passing_data(study: Path, monkeypatch) -> None:
    drawn: list = []
    import hqrun.study.report as report

    real = report.accuracy_cost_figure
    monkeypatch.setattr(report, "accuracy_cost_figure",
                        lambda series, goals, panels: drawn.append(series) or real(series, goals, panels))
    family = Series("learned bit widths", [Point("", 0.67, {"energy": 15000, "size_bits": 5000}),
                                           Point("", 0.69, {"energy": 25000, "size_bits": 8000})],
                    "models", style="line")
    text = _write(study, extra_columns=[Column("slices", "slices", kind="measured"),
                                        Column("latency (ms)", "nothing_has_this")],
                  extra_series=[family])
    header = next(line for line in text.splitlines() if line.startswith("| model | test accuracy"))
    assert "slices" not in header and "latency (ms)" not in header   # no value: not shown
    assert family in drawn[0]


def test_recommendation_is_replaced_by_a_model_that_dominates_it(study: Path) -> None:
    models = [read_model(label, study / label, goal) for label, goal in
              (("Q6", None), ("QE", "energy"))]
    models[1].cost["energy"] = 50000          # QE now dearer than Q6 and less accurate
    rec = recommend("energy", models)
    assert rec.model.label == "Q6" and "replaces" in rec.reason


@pytest.mark.parametrize("limit", [1, 2, 3, 5])
def test_spread_points_cover_the_cost_range_and_keep_the_most_accurate(limit: int) -> None:
    points = [Trial(str(i), 0.5 + 0.01 * i, True, None, {}, {}, {"energy": 10.0 * 2 ** i})
              for i in range(8)]
    chosen = spread_points(points, "energy", limit)
    assert len(chosen) == min(limit, 8) and chosen[-1] is points[-1]
    if limit > 1:
        assert chosen[0] is points[0]
    assert chosen == sorted(chosen, key=lambda t: t.cost["energy"])
