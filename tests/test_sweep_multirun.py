"""``hqrun -m train ...`` sweeps: basic and Ray launchers, failing jobs, the collected table."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hqrun.cli import main
from jets_data import write_tiny_jets

COMMON = ["data=jets_file", "model=jet_dnn", "trainer.max_epochs=1", "trainer.batch_size=64",
          "trainer.progress_bar=false", "trainer.roc_plot=false"]


@pytest.fixture(scope="module")
def jets_file(tmp_path_factory) -> Path:
    return write_tiny_jets(tmp_path_factory.mktemp("sweepdata") / "tiny.npz", n=300, seed=3, spread=2.0)


def _table(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "sweep.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_basic_launcher_sweep_records_failures_and_goes_on(tmp_path: Path, jets_file: Path, capsys) -> None:
    sweep = tmp_path / "sweep"
    missing = tmp_path / "missing.npz"
    with pytest.raises(SystemExit) as exit_info:
        main(["-m", "train", *COMMON, f"data.path={jets_file},{missing}", "quant=q4,q8",
              f"hydra.sweep.dir={sweep}"])
    assert exit_info.value.code == 1  # some jobs failed: the sweep says so in its exit status
    rows = _table(sweep)
    assert len(rows) == 4
    assert sorted((r["quant"], r["data.path"] == str(jets_file)) for r in rows) == [
        ("q4", False), ("q4", True), ("q8", False), ("q8", True)]
    for row in rows:
        if row["data.path"] == str(jets_file):
            assert row["status"] == "ok", row
            assert 0.0 <= float(row["test.accuracy"]) <= 1.0
            assert float(row["cost.size_bits"]) > 0 and float(row["cost.energy"]) > 0
        else:
            assert row["status"] == "failed"
            assert "missing.npz" in row["error"]
    assert "2 failed" in capsys.readouterr().out
    bits = {r["quant"]: float(r["cost.size_bits"]) for r in rows if r["status"] == "ok"}
    assert bits["q4"] < bits["q8"]  # the table reads as accuracy versus bits


@pytest.mark.slow
def test_ray_launcher_runs_the_sweep_locally(tmp_path: Path, jets_file: Path) -> None:
    sweep = tmp_path / "sweep"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "hqrun.cli", "-m", "train", *COMMON, f"data.path={jets_file}",
         "quant=q4,q8", "hydra/launcher=ray", "hydra.launcher.num_cpus=2",
         f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = _table(sweep)
    assert sorted(r["quant"] for r in rows) == ["q4", "q8"]
    assert all(r["status"] == "ok" for r in rows)
    assert (sweep / "0" / "metrics.json").is_file() and (sweep / "1" / "metrics.json").is_file()
