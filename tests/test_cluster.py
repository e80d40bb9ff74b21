"""A real two-node Ray cluster on this machine's loopback: a sweep and a search join it by
address, and the worker node is lost in the middle of the search.

The cluster is two ``ray start --block`` processes (``hqrun.localcluster``): a head with one
CPU and a worker with two CPUs and a ``worker_node`` resource, each with its Ray state in a
private temp dir, on 127.0.0.1 only. ``hqrun -m train ... hydra/launcher=ray
hydra.launcher.address=<addr>`` runs two jobs on it; ``hqrun search ...
search.ray.address=<addr>`` runs six trials, three at a time (one on the head, two on the
worker), and the worker node's processes are SIGKILLed while one of its trials computes. With ``search.retries=0`` Ray Tune gives
that trial up at once, so what brings it back is hqrun's runner (lost trials run again). The
search must finish with every one of its six trials journaled exactly once. Everything is torn
down at the end, pass or fail. The numbers are printed (pytest -s) for the record.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from hqrun.localcluster import LocalCluster
from jets_data import write_tiny_jets

pytestmark = pytest.mark.slow

TRIALS = 6


@pytest.fixture
def cluster():
    # Ray's socket paths must fit in 107 bytes: a short private dir, not pytest's tmp_path
    root = Path(tempfile.mkdtemp(prefix="hqc", dir="/tmp"))
    made = LocalCluster(root)
    try:
        made.start_head(num_cpus=1)
        made.add_worker("worker", num_cpus=2, resources={"worker_node": 1})
        yield made
    finally:
        made.stop()
        shutil.rmtree(root, ignore_errors=True)


def hqrun(*argv: str, cwd: Path, env: dict, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hqrun.cli", *argv], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def journaled(run: Path) -> list[dict]:
    path = run / "trials.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_sweep_and_a_search_on_a_two_node_cluster_that_loses_a_node(cluster, tmp_path):
    data = write_tiny_jets(tmp_path / "tiny.npz", n=3000, seed=2, spread=2.0)
    env = {**cluster.env(), "OMP_NUM_THREADS": "1"}

    # 1. a two-job sweep through the Ray launcher, by address
    sweep_dir = tmp_path / "sweep"
    proc = hqrun("-m", "train", "data=jets_file", f"data.path={data}", "quant=q4,q8",
                 "trainer.max_epochs=1", "trainer.progress_bar=false", "trainer.roc_plot=false",
                 "hydra/launcher=ray", f"hydra.launcher.address={cluster.address}",
                 f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path, env=env)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    rows = list(csv.DictReader((sweep_dir / "sweep.csv").open()))
    assert [r["status"] for r in rows] == ["ok", "ok"], rows

    # 2. a search by address; the worker node is killed while one of its trials runs
    run = tmp_path / "search"
    proc = hqrun("search", "data=jets_file", f"data.path={data}", f"search.max_trials={TRIALS}",
                 "search.epochs=30", "search.patience=0", "search.batch_size=64",
                 "search.reference_epochs=1", "search.retrain=none",
                 "search.retries=0", "search.ray.cpus_per_trial=1", "search/space=deployable",
                 f"search.ray.address={cluster.address}", f"hydra.run.dir={run}",
                 cwd=tmp_path, env=env)
    worker = cluster.nodes[1]
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None:
        if len(journaled(run)) >= 1 and worker.busy_workers() > 0:    # a trial computes there
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stdout.read()[-4000:]
    before = len(journaled(run))
    killed = cluster.kill(worker)
    out, _ = proc.communicate(timeout=1200)
    records = journaled(run)
    trial_ids = [r["trial_id"] for r in records if r.get("event") == "trial"]
    lost = sum(int(line.split("[search] ")[1].split()[0]) for line in out.splitlines()
               if "trial(s) lost with their worker or node" in line)
    duplicated = len(trial_ids) - len(set(trial_ids))
    print(f"\ncluster {cluster.address}: worker node killed ({killed} processes) with "
          f"{before} trial(s) journaled; after: {len(trial_ids)} journaled, lost and re-run: "
          f"{lost}, duplicated: {duplicated}")
    assert proc.returncode == 0, out[-4000:]
    assert not cluster.nodes[1].alive() and cluster.nodes[0].alive()
    assert 1 <= before < TRIALS
    assert lost >= 1, out[-4000:]                       # the worker's trial was lost ...
    assert len(trial_ids) == TRIALS and duplicated == 0  # ... and run again, journaled once
    assert all(r["status"] == "ok" for r in records if r.get("event") == "trial")
    assert (run / "search_summary.json").exists()
    # Ray's state stayed in the cluster's own temp dirs (and Tune's in the run dir)
    assert any(cluster.root.glob("head/session_*")) and any(cluster.root.glob("worker/session_*"))
    assert (run / "ray").is_dir()
    os.sync()
