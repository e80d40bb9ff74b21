"""A β sweep's chosen candidates as run directories: winner/ and front/point_NN/, candidates.csv.

Why: the candidates of ``search.algorithm=beta`` are trained models (an epoch of a learned-bits
training), not plans to retrain. Each chosen one is copied into a directory shaped like a
``hqrun train`` run (model.pt + model.json, plan.yaml, scaler.json, config.yaml, metrics.json), so
``hqrun cost run=...`` and ``hqrun firmware run=...`` and the study read it as they read any
trained model. candidates.csv lists every candidate with its validation and test accuracy.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from hqrun import atomic

__all__ = ["export_candidates", "candidate_rows", "write_candidate_dir"]

CSV_FIELDS = ("trial_id", "trial", "beta", "epoch", "val_accuracy", "test_accuracy", "ebops",
              "pareto", "model")


def candidate_rows(records: list[dict], front_ids: set[str]) -> list[dict]:
    """One row per journaled candidate (failed trials have none), cheapest first."""
    rows = [{"trial_id": r["trial_id"], "trial": r.get("trial"), "beta": r.get("beta"),
             "epoch": (r.get("config") or {}).get("epoch"), "val_accuracy": r.get("accuracy"),
             "test_accuracy": r.get("test_accuracy"), "ebops": r.get("cost"),
             "pareto": r["trial_id"] in front_ids, "model": r.get("model")}
            for r in records if r.get("model") and r.get("status") == "ok"]
    return sorted(rows, key=lambda row: (row["ebops"], -(row["val_accuracy"] or 0)))


def write_candidate_dir(run_dir: Path, record: dict, out_dir: Path, metrics_file: bool = True
                        ) -> dict:
    """Copy one candidate's weights into ``out_dir`` as a trained-run directory; return its
    metrics (what ``metrics.json`` holds; ``metrics_file=False``: the caller writes its own)."""
    from hqrun.modelfile import load_model_file, save_model_file
    from hqrun.models import load_plan

    loaded = load_model_file(run_dir / record["model"], "search candidate")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_model_file(out_dir / "model.pt", loaded.state, loaded.record)
    load_plan(record["plan"]).to_yaml(out_dir / "plan.yaml")
    for name in ("scaler.json", "config.yaml"):
        if (run_dir / name).is_file():
            atomic.write_bytes(out_dir / name, (run_dir / name).read_bytes())
    metrics = {"trial_id": record["trial_id"], "beta": record.get("beta"),
               "epoch": (record.get("config") or {}).get("epoch"),
               "val_accuracy": record.get("accuracy"), "test_accuracy": record.get("test_accuracy"),
               "cost": {"ebops": record.get("cost")}, "source": record["model"],
               "search_score": record.get("score")}
    if metrics_file:
        atomic.write_json(out_dir / "metrics.json", metrics, default=str)
    return metrics


def export_candidates(run_dir: Any, written: dict) -> dict:
    """winner/, front/point_NN/ (the front in the order of front/point_NN.yaml) and
    candidates.csv; returns what was written."""
    from hqrun.search.journal import Journal

    run_dir = Path(run_dir)
    front = [r for r in written.get("front", []) if r.get("model")]
    records = Journal(run_dir / "trials.jsonl").trials()
    fh = io.StringIO(newline="")
    w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
    w.writeheader()
    for row in candidate_rows(records, {r["trial_id"] for r in front}):
        w.writerow(row)
    atomic.write_text(run_dir / "candidates.csv", fh.getvalue())
    out: dict = {"candidates_csv": str(run_dir / "candidates.csv")}
    winner = written.get("winner")
    if winner is not None and winner.get("model"):
        out["winner_dir"] = write_candidate_dir(run_dir, winner, run_dir / "winner")
    import shutil

    for old in (run_dir / "front").glob("point_*"):   # a resumed search's earlier front
        if old.is_dir():
            shutil.rmtree(old)
    out["front_dirs"] = [write_candidate_dir(run_dir, r, run_dir / "front" / f"point_{i:02d}")
                         for i, r in enumerate(written.get("front", [])) if r.get("model")]
    return out
