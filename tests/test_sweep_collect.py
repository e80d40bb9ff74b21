"""The sweep collector: one row per job with overrides, metrics, cost and failures."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from hqrun.errors import HqrunError
from hqrun.sweep.collect import collect, collect_rows, main
from hqrun.sweep.jobstatus import read_status, write_status


def _job(sweep: Path, num: int, overrides: list[str], accuracy: float | None, bits: int | None,
         error: Exception | None = None) -> Path:
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if error is not None:
        write_status(job, "failed", error)
        return job
    (job / "metrics.json").write_text(json.dumps({"test": {"accuracy": accuracy, "auc": {"g": 0.9}}}))
    (job / "cost.json").write_text(json.dumps({"totals": {"bits": bits, "energy_pj": 10.0 * bits}}))
    write_status(job, "ok")
    return job


def test_rows_hold_overrides_metrics_cost_and_failures(tmp_path: Path) -> None:
    _job(tmp_path, 0, ["quant=q4", "seed=0"], 0.61, 400)
    _job(tmp_path, 1, ["quant=q8", "seed=0"], 0.70, 800)
    _job(tmp_path, 10, ["quant=q2", "seed=0"], None, None, error=ValueError("bits must be > 1\nmore"))
    (tmp_path / "2" / ".hydra").mkdir(parents=True)  # a job killed before it wrote its status

    rows = collect_rows(tmp_path)

    assert [r["job"] for r in rows] == ["0", "1", "2", "10"]
    by_job = {r["job"]: r for r in rows}
    assert by_job["1"]["quant"] == "q8" and by_job["1"]["seed"] == "0"
    assert by_job["1"]["test.accuracy"] == pytest.approx(0.70)
    assert by_job["1"]["test.auc.g"] == pytest.approx(0.9)
    assert by_job["1"]["cost.bits"] == 800 and by_job["1"]["cost.energy_pj"] == pytest.approx(8000.0)
    assert by_job["10"]["status"] == "failed"
    assert by_job["10"]["error"] == "ValueError: bits must be > 1"
    assert by_job["2"]["status"] == "unfinished"


def test_collect_writes_csv_and_plot_and_counts_failures(tmp_path: Path) -> None:
    _job(tmp_path, 0, ["quant=q4"], 0.61, 400)
    _job(tmp_path, 1, ["quant=q8"], 0.70, 800)
    _job(tmp_path, 2, ["quant=q3"], None, None, error=RuntimeError("boom"))

    summary = collect(tmp_path)

    assert summary["jobs"] == 3 and summary["failed"] == 1
    with open(tmp_path / "sweep.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [r["quant"] for r in table] == ["q4", "q8", "q3"]
    assert table[2]["status"] == "failed" and table[2]["error"] == "RuntimeError: boom"
    assert (tmp_path / "sweep.png").stat().st_size > 1000
    assert main([str(tmp_path)]) == 1  # a failed job makes `hqrun collect` exit non-zero


def test_status_records_traceback_for_failures(tmp_path: Path) -> None:
    try:
        raise KeyError("missing")
    except KeyError as err:
        write_status(tmp_path, "failed", err)
    assert read_status(tmp_path)["status"] == "failed"
    assert "KeyError" in (tmp_path / "error.txt").read_text()


def test_collect_refuses_a_directory_that_is_not_a_sweep(tmp_path: Path) -> None:
    with pytest.raises(HqrunError, match="no job directories"):
        collect_rows(tmp_path)
    with pytest.raises(HqrunError, match="does not exist"):
        collect_rows(tmp_path / "nope")
