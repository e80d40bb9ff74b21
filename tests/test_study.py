"""``hqrun experiment=quickstart`` end to end on tiny data: models, firmware, report, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hqrun.cli import main
from hqrun.data import JET_CLASSES, JET_FEATURES


@pytest.fixture(scope="module")
def jets_file(tmp_path_factory) -> Path:
    rng = np.random.default_rng(7)
    y = np.arange(600) % 5
    X = (rng.normal(size=(600, 16)) + 2.5 * rng.normal(size=(5, 16))[y]).astype(np.float32)
    path = tmp_path_factory.mktemp("studydata") / "tiny.npz"
    np.savez(path, X=X, y=y.astype(np.int64), feature_names=np.array(JET_FEATURES),
             class_names=np.array(JET_CLASSES))
    return path


def _study(run_dir: Path, jets_file: Path) -> None:
    main(["experiment=quickstart", "data=jets_file", f"data.path={jets_file}", "study.goals=[bits]",
          "trainer.max_epochs=2", "trainer.batch_size=64", "trainer.progress_bar=false",
          "search.max_trials=2", "search.epochs=1", "search.reference_epochs=1",
          "search.batch_size=64", "search.ray.num_cpus=1", "firmware.max_samples=60",
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
