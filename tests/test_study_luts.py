"""The study report in LUTs: a second backend's firmware (rtl, Yosys counts) per model fills the
measured columns, the LUT section names the cheapest model at each accuracy, the figure gets a
LUT column, and study.backends is checked before anything trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from hqrun.errors import HqrunError
from hqrun.study.luts import LutPoint, cheapest_by_accuracy
from hqrun.study.report import write_report

CLASSES = ["g", "q", "t", "w", "z"]
PLAN = {"name": "x", "input": None, "layers": {},
        "default": {"kernel": "quantized_bits(6,0,alpha=1)", "bias": "quantized_bits(6,0,alpha=1)",
                    "activation": "quantized_relu(6,0)"}}


def _json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _model(root: Path, label: str, acc: float, lut_estimate: int, yosys: dict | None,
           rtl_error: str | None = None) -> None:
    d = root / label
    totals = {"energy": 1000, "size_bits": 500, "ebops": 5000, "lut": lut_estimate, "ff": 0,
              "hls_dsp": 0, "hls_latency_cycles": 9, "hls_latency_ns": 45.0}
    _json(d / "metrics.json", {"test": {"accuracy": acc, "n": 10000, "roc_auc": {c: 0.9 for c in CLASSES}},
                               "val": {"accuracy": acc}, "best_epoch": 5, "epochs_run": 10,
                               "max_epochs": 10})
    _json(d / "cost.json", {"totals": totals, "basis": {}})
    (d / "plan.yaml").write_text(yaml.safe_dump({**PLAN, "name": label}))
    _json(d / "firmware" / "report.json", {
        "status": "PASSED", "backend": "hls4ml", "config": {"part": "xcvu9p-flgb2104-2-e"},
        "verification": {"n_samples": 100, "accuracy": {"model": acc, "firmware": acc}},
        "estimate": {"totals": totals}, "synthesis": {"status": "not run"}})
    if rtl_error:
        _json(d / "firmware_rtl_error.json", {"error": rtl_error})
    elif yosys is not None:
        _json(d / "firmware_rtl" / "report.json", {
            "status": "PASSED", "backend": "rtl", "simulator": "RTL simulation (verilator)",
            "verification": {"n_samples": 100, "accuracy": {"model": acc, "firmware": acc}},
            "estimate": {"totals": totals},
            "synthesis": {"status": "done", "tool": "yosys", "seconds": yosys["seconds"],
                          "resources": {"lut": yosys["lut"], "ff": yosys["ff"], "dsp": 0,
                                        "latency_cycles": 0}}})


@pytest.fixture()
def study(tmp_path: Path) -> Path:
    root = tmp_path / "study"
    root.mkdir()
    (root / "study_config.yaml").write_text(yaml.safe_dump({"study": {"max_cost": {}}}))
    _model(root, "Q6", 0.745, 40000, {"lut": 45356, "ff": 0, "seconds": 206.0})
    _model(root, "QE", 0.741, 41000, {"lut": 46520, "ff": 0, "seconds": 136.0})   # dominated by Q6
    _model(root, "QB", 0.738, 20000, {"lut": 22343, "ff": 0, "seconds": 79.0})
    _model(root, "Q3", 0.70, 11000, None, rtl_error="RTL backend refused the model: a reason. More.")
    return root


def _write(root: Path) -> str:
    models = [(label, root / label) for label in ("Q6", "QE", "QB", "Q3")]
    write_report(root, models, {}, CLASSES, 3, "hqrun experiment=test", extra_backends=["rtl"])
    return (root / "report.md").read_text()


def test_lut_section_names_the_cheapest_model_at_each_accuracy(study: Path) -> None:
    text = _write(study)
    section = text.split("## LUTs (synthesis)")[1].split("\n## ")[0]
    assert "Measured by yosys" in section
    listed = [line for line in section.splitlines() if line.startswith("- **")]
    assert [line.split("**")[1] for line in listed] == ["QB", "Q6", "QE"]        # cheapest first
    assert "22,343 LUT" in listed[0] and "synthesised in 79 s" in listed[0]
    assert "hqrun.cost estimated 20,000 (-10%)" in listed[0]
    cheapest = section.split("Cheapest in LUTs at each accuracy")[1]
    assert "test accuracy up to 0.7380: **QB**, 22,343 LUT" in cheapest
    assert "above 0.7380, up to 0.7450: **Q6**, 45,356 LUT" in cheapest
    assert "not cheapest at any accuracy: QE" in cheapest
    summary = json.loads((study / "report.json").read_text())
    assert summary["luts"]["cheapest_by_accuracy"] == ["QB", "Q6"]
    q6 = next(m for m in summary["models"] if m["label"] == "Q6")
    assert q6["measured"]["lut"] == 45356 and q6["builds"]["rtl"]["synthesis_s"] == 206.0
    assert q6["builds"]["rtl"]["simulator"] == "RTL simulation (verilator)"


def test_models_table_shows_measured_luts_and_the_rtl_build(study: Path) -> None:
    text = _write(study)
    table = text.split("## The models")[1].split("\n\n")[1].splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert {"LUT (RTL, estimated)", "LUT (measured)", "FF (measured)", "rtl firmware",
            "rtl synthesis (s, measured)"} <= set(header)
    rows = {r.split("|")[1].strip(): dict(zip(header, (c.strip() for c in r.strip("|").split("|"))))
            for r in table[2:]}
    assert rows["**Q6**"]["LUT (measured)"] == "45,356" and rows["**Q6**"]["rtl firmware"] == "bit-exact"
    assert rows["**Q6**"]["rtl synthesis (s, measured)"] == "206"
    assert rows["**Q3**"]["LUT (measured)"] == "—"
    assert rows["**Q3**"]["rtl firmware"] == "refused: RTL backend refused the model: a reason"


def test_figure_gets_a_measured_lut_column(study: Path) -> None:
    from matplotlib.image import imread

    _write(study)
    assert imread(study / "pareto.png").shape[1] == pytest.approx(6.2 * 120, abs=2)   # one column
    for label in ("Q6", "QE", "QB"):       # no synthesis anywhere: no LUT column, no figure
        (study / label / "firmware_rtl" / "report.json").unlink()
    (study / "pareto.png").unlink()
    _write(study)
    text = (study / "report.md").read_text()
    assert "No model of rtl was synthesised" in text and not (study / "pareto.png").exists()


points = st.lists(st.tuples(st.integers(1, 10**5), st.floats(0.2, 0.8)), min_size=1, max_size=12)


@settings(max_examples=100, deadline=None)
@given(points)
def test_lut_front_is_the_cheapest_at_each_accuracy(raw) -> None:
    pts = [LutPoint(f"m{i}", acc, None, float(lut), None, "yosys", None, None)
           for i, (lut, acc) in enumerate(raw)]
    front = cheapest_by_accuracy(pts)
    assert all(a.lut <= b.lut and a.accuracy < b.accuracy for a, b in zip(front, front[1:]))
    for p in pts:   # every model is matched by a front entry at least as accurate and no dearer
        assert any(f.lut <= p.lut and f.accuracy >= p.accuracy for f in front)
    best = max(p.accuracy for p in pts)
    assert front[-1].accuracy == best
    assert front[-1].lut == min(p.lut for p in pts if p.accuracy == best)


def _cfg(**study) -> OmegaConf:
    return OmegaConf.create({"firmware": {"backend": "hls4ml"}, "search": {"objective": "pareto"},
                             "study": {"baselines": ["float"], "goals": ["energy"], "max_cost": {},
                                       **study}})


def test_study_backends_default_and_check() -> None:
    from hqrun.study.command import _check_study, study_backends

    assert study_backends(_cfg()) == ["hls4ml"]
    assert study_backends(_cfg(backends=["hls4ml", "rtl"])) == ["hls4ml", "rtl"]
    _check_study(_cfg(backends=["hls4ml", "rtl"]))
    with pytest.raises(HqrunError, match="vivado is not one"):
        _check_study(_cfg(backends=["hls4ml", "vivado"]))
    with pytest.raises(HqrunError, match="distinct firmware backends"):
        _check_study(_cfg(backends=["rtl", "rtl"]))
    with pytest.raises(HqrunError, match="distinct firmware backends"):
        _check_study(_cfg(backends=[]))


def test_firmware_step_writes_each_backend_into_its_own_folder(tmp_path, monkeypatch) -> None:
    import hqrun.firmware_command as fw
    from hqrun.study.steps import firmware_step

    seen = []
    monkeypatch.setattr(fw, "run", lambda job: seen.append(job) or {"status": "PASSED"})
    cfg = _cfg()
    firmware_step(cfg, tmp_path / "Q6", "rtl", "firmware_rtl")
    firmware_step(cfg, tmp_path / "Q6", "hls4ml", "firmware")
    assert seen[0].firmware.backend == "rtl"
    assert seen[0].firmware.out_dir == str(tmp_path / "Q6" / "firmware_rtl")
    assert seen[1].firmware.backend == "hls4ml" and "out_dir" not in seen[1].firmware
    assert seen[0].run == str(tmp_path / "Q6") and cfg.firmware.backend == "hls4ml"
    _json(tmp_path / "Q6" / "firmware_rtl" / "report.json", {"status": "PASSED"})
    assert firmware_step(cfg, tmp_path / "Q6", "rtl", "firmware_rtl") == {"status": "PASSED"}
    assert len(seen) == 2                                  # a verified build is not redone


def test_firmware_jobs_cover_each_backend_and_record_refusals(tmp_path, monkeypatch) -> None:
    import hqrun.study.steps as steps
    from hqrun.study.firmware_jobs import plan_jobs, run_jobs

    models = [(label, tmp_path / label, tmp_path / (label + "_ptq" if label == "BF" else label))
              for label in ("BF", "Q6", "QB")]
    jobs = plan_jobs(models, ["hls4ml", "rtl"], {"Q6", "QB"})
    assert [(j.label, j.backend, j.folder) for j in jobs] == [
        ("BF", "hls4ml", "firmware"), ("Q6", "hls4ml", "firmware"), ("Q6", "rtl", "firmware_rtl"),
        ("QB", "hls4ml", "firmware"), ("QB", "rtl", "firmware_rtl")]
    assert jobs[0].target == tmp_path / "BF_ptq" and jobs[0].directory == tmp_path / "BF"
    assert len(plan_jobs(models, ["hls4ml", "rtl"], None)) == 6

    def fake(cfg, target, backend, folder):
        if backend == "rtl" and target.name == "QB":
            raise HqrunError("the RTL backend refused QB. Because.")

    monkeypatch.setattr(steps, "firmware_step", fake)
    (tmp_path / "Q6").mkdir()
    (tmp_path / "QB").mkdir()
    (tmp_path / "Q6" / "firmware_rtl_error.json").write_text("{}")     # an earlier failure
    run_jobs(_cfg(), jobs, workers=1)
    assert not (tmp_path / "Q6" / "firmware_rtl_error.json").exists()  # built now: cleared
    assert "refused QB" in json.loads((tmp_path / "QB" / "firmware_rtl_error.json").read_text())["error"]
    with pytest.raises(HqrunError, match="firmware_workers"):
        from hqrun.study.command import _check_study

        _check_study(_cfg(firmware_workers=0))
