"""Wall time of the paper's study on this machine: `quickstart` (and, with --full, `jet_tagging`).

Each study runs as the user would run it (`hqrun experiment=...`) in a fresh run directory, so the
time includes data loading, Ray start-up, every training, both searches, the C compiles of the
firmware and the report. Usage:

    .venv/bin/python bench/study_walltime.py                # quickstart on the embedded sample
    .venv/bin/python bench/study_walltime.py --full         # + jet_tagging (default budget)
    .venv/bin/python bench/study_walltime.py --full --data /path/jets.npz
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_study(experiment: str, extra: list[str], root: Path) -> dict:
    run_dir = root / experiment
    cmd = [sys.executable, "-m", "hqrun.cli", f"experiment={experiment}", f"hydra.run.dir={run_dir}", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{experiment} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    report = json.loads((run_dir / "report.json").read_text())
    exact = sum(1 for m in report["models"] if m["bit_exact"])
    return {"experiment": experiment, "wall_s": round(wall, 1), "bit_exact_models": exact,
            "run_dir": str(run_dir)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also time experiment=jet_tagging")
    parser.add_argument("--data", help="a jet .npz for jet_tagging (default: the embedded sample)")
    parser.add_argument("--keep", help="directory to keep the runs in (default: a temp dir)")
    args = parser.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="hqrun-bench-"))
    print(f"machine: {os.cpu_count()} cores; runs under {root}")
    results = [run_study("quickstart", [], root)]
    if args.full:
        extra = ["data=jets_file", f"data.path={args.data}"] if args.data else []
        results.append(run_study("jet_tagging", extra, root))
    for r in results:
        print(f"{r['experiment']:>12}: {r['wall_s']:8.1f} s wall, {r['bit_exact_models']} bit-exact "
              f"firmware projects ({r['run_dir']})")


if __name__ == "__main__":
    main()
