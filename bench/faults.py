"""Fault bench: what a search keeps through each kind of fault, as one table.

Scenarios (toy backend, tiny data: the search machinery is under test, not the model):

- ``kill-9``: the driver is SIGKILLed once 2 trials are journaled, then the same search resumes;
- ``corrupt-journal``: a finished search's journal gets a garbage line in the middle, then the
  same search resumes;
- ``failing-trial``: trials that raise or produce NaN are journaled as failed, the search goes on;
- ``full-disk``: the third journal append fails with ENOSPC (injected, as tests/test_security.py
  does), then the same search resumes once space is back;
- ``worker-crash``: each trial's first worker process dies (local Ray), runs again;
- ``lost-node``: a two-node Ray cluster on loopback (hqrun.localcluster); the worker node is
  SIGKILLed while one of its trials runs.

Columns: trials journaled before the fault ("before"), after recovery ("after"), trials
journaled before that are missing after ("lost"), trial ids journaled twice ("duplicated"),
trials that were running when the fault hit and were run again (where the runner says so),
and what happened. Run: ``python bench/faults.py`` (about 5-10 minutes on 2 busy cores) or
``--only kill-9,full-disk``.
"""

from __future__ import annotations

import argparse
import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

TRIALS = 6
SETTINGS = dict(max_trials=TRIALS, epochs=2, batch_size=128, learning_rate=0.01,
                reference_epochs=2, progress=False, retries=0)


@dataclass
class Row:
    scenario: str
    before: int
    after: int
    lost: int
    duplicated: int
    rerun: str         # trials in flight at the fault and run again ("-": not measured)
    note: str


def search_cfg(**over):
    from omegaconf import OmegaConf

    from hqrun.search.config import SearchConfig

    cfg = OmegaConf.structured(SearchConfig)
    for key, value in {**SETTINGS, "goal.type": "bits", "ray.cpus_per_trial": 1,
                       "space.limits": {"Dense": [4, 4], "Activation": [4]}, **over}.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def data(n_train: int = 256):
    from hqrun.search.toy import toy_data

    return toy_data(n_train=n_train, n_val=128, n_test=128)


def ids(run: Path) -> list[str]:
    from hqrun.search.journal import Journal

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [r["trial_id"] for r in Journal(run / "trials.jsonl").trials()]


def row(name: str, before: list[str], after: list[str], note: str, rerun: int | None = None) -> Row:
    return Row(name, len(before), len(after), len(set(before) - set(after)),
               len(after) - len(set(after)), "-" if rerun is None else str(rerun), note)


def local_ray(num_cpus: int = 2) -> None:
    import ray

    from hqrun.raystart import start_ray

    if not ray.is_initialized():
        start_ray(num_cpus=num_cpus)


# --------------------------------------------------------------------------- scenarios

DRIVER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {bench!r})
    from faults import search_cfg, data
    from hqrun.search.runner import run_search
    from hqrun.search.toy import ToyBackend
    run_search(search_cfg(**{over!r}), ToyBackend(slow={slow!r}), data({n_train!r}), {run!r}, seed=5)
""")


def drive(run: Path, over: dict, slow: float, env: dict | None = None,
          n_train: int = 256) -> subprocess.Popen:
    """A search driver in its own process (so it can be killed like a user's `hqrun search`)."""
    script = run.parent / f"{run.name}_driver.py"
    script.write_text(DRIVER.format(bench=str(Path(__file__).parent), over=over, slow=slow,
                                    run=str(run), n_train=n_train))
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def wait_for(predicate: Callable[[], bool], proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not predicate():
        time.sleep(0.2)
    if proc.poll() is not None:
        raise RuntimeError(f"the driver ended before the fault:\n{proc.stdout.read()[-3000:]}")


def kill_9(root: Path) -> Row:
    import ray

    from hqrun.search.runner import run_search
    from hqrun.search.toy import ToyBackend

    run = root / "kill9"
    local_ray()
    over = {"ray.address": ray.get_runtime_context().gcs_address}
    proc = drive(run, over, slow=0.3)
    wait_for(lambda: len(ids(run)) >= 2, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = ids(run)
    run_search(search_cfg(), ToyBackend(), data(), run, seed=5)
    return row("kill-9", before, ids(run), "driver SIGKILLed; rerun resumed: in-flight trials run again")


def corrupt_journal(root: Path) -> Row:
    from hqrun.search.journal import JournalWarning
    from hqrun.search.runner import run_search
    from hqrun.search.toy import ToyBackend

    run = root / "corrupt"
    local_ray()
    run_search(search_cfg(), ToyBackend(), data(), run, seed=6)
    before = ids(run)
    lines = (run / "trials.jsonl").read_bytes().split(b"\n")
    lines[2] = lines[2][:25] + b"\x00garbage"
    (run / "trials.jsonl").write_bytes(b"\n".join(lines))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_search(search_cfg(), ToyBackend(), data(), run, seed=6)
    reported = {str(w.message).split(": ", 1)[0] for w in caught if w.category is JournalWarning}
    return row("corrupt-journal", before, ids(run),
               f"line 3 garbled: that trial's record is gone, reported as unreadable "
               f"({len(reported)} warning), and the budget refilled by a new trial", rerun=0)


def failing_trial(root: Path) -> Row:
    from hqrun.search.runner import run_search
    from hqrun.search.toy import ToyBackend

    run = root / "failing"
    local_ray()
    limits = {"^dense_1$": [["ternary", "quantized_bits(4,0,1)", "quantized_bits(2,1,1,alpha=1.0)"],
                            ["quantized_bits(4,0,1)"]],
              "Dense": [["quantized_bits(4,0,1)", "quantized_bits(8,0,1)"], ["quantized_bits(4,0,1)"]],
              "Activation": [["quantized_relu(3,1)", "quantized_relu(4,2)"]]}
    out = run_search(search_cfg(**{"space.limits": limits}), ToyBackend(
        fail_spec="ternary", nan_spec="quantized_bits(2,1,1,alpha=1.0)"), data(), run, seed=3)
    failed = sum(r["status"] == "failed" for r in out.records)
    after = ids(run)
    return row("failing-trial", after, after,
               f"{failed} trials raised or went NaN: journaled as failed with the error; search "
               "finished", rerun=0)


def full_disk(root: Path) -> Row:
    from hqrun.errors import StorageError
    from hqrun.search.runner import run_search
    from hqrun.search.toy import ToyBackend

    run = root / "fulldisk"
    local_ray()
    real, appends = os.write, []

    def write(fd, payload):
        if os.readlink(f"/proc/self/fd/{fd}").endswith("trials.jsonl"):
            appends.append(len(payload))
            if len(appends) >= 3:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, payload)

    os.write = write
    try:
        run_search(search_cfg(), ToyBackend(), data(), run, seed=2)
        note = "ENOSPC was not hit"
    except StorageError as err:
        note = f"ENOSPC on append 3: one StorageError ({str(err)[:40]}...)"
    finally:
        os.write = real
    before = ids(run)
    run_search(search_cfg(), ToyBackend(), data(), run, seed=2)
    return row("full-disk", before, ids(run), note + "; resumed after space came back")


def worker_crash(root: Path) -> Row:
    import io
    from contextlib import redirect_stdout

    from hqrun.search.runner import run_search
    from hqrun.search.toy import ToyBackend

    run = root / "crash"
    crashes = root / "crash_markers"
    crashes.mkdir()
    local_ray()
    printed = io.StringIO()
    with redirect_stdout(printed):
        run_search(search_cfg(), ToyBackend(crash_once_in=str(crashes)), data(), run, seed=7)
    lost = _lost_count(printed.getvalue())
    after = ids(run)
    return row("worker-crash", [], after,
               f"every trial's first worker died ({len(list(crashes.iterdir()))}); the runner "
               "ran them again", rerun=lost)


def lost_node(root: Path) -> Row:
    import ray

    from hqrun.localcluster import LocalCluster

    if ray.is_initialized():
        ray.shutdown()     # the driver below joins the cluster instead
    cluster_dir = Path(tempfile.mkdtemp(prefix="hqf", dir="/tmp"))
    run = root / "lostnode"
    try:
        with LocalCluster(cluster_dir) as cluster:
            cluster.start_head(num_cpus=1)
            worker = cluster.add_worker("worker", num_cpus=2, resources={"worker_node": 1})
            env = {**cluster.env(), "OMP_NUM_THREADS": "1"}
            # trials long enough (CPU-bound) that one is computing on the worker when it dies
            proc = drive(run, {"ray.address": cluster.address, "epochs": 30, "patience": 0},
                         slow=0.0, env=env, n_train=8192)
            wait_for(lambda: len(ids(run)) >= 1 and worker.busy_workers() > 0, proc)
            before = ids(run)
            killed = cluster.kill(worker)
            out, _ = proc.communicate(timeout=900)
            if proc.returncode != 0:
                raise RuntimeError(f"the search failed after the node was lost:\n{out[-3000:]}")
            lost = _lost_count(out)
    finally:
        shutil.rmtree(cluster_dir, ignore_errors=True)
    return row("lost-node", before, ids(run),
               f"worker node SIGKILLed ({killed} processes) while a trial ran there; the runner "
               "ran the lost trial(s) again on the head", rerun=lost)


def _lost_count(printed: str) -> int:
    return sum(int(line.split("[search] ")[1].split()[0]) for line in printed.splitlines()
               if "trial(s) lost with their worker or node" in line)


SCENARIOS: dict[str, Callable[[Path], Row]] = {
    "kill-9": kill_9, "corrupt-journal": corrupt_journal, "failing-trial": failing_trial,
    "full-disk": full_disk, "worker-crash": worker_crash, "lost-node": lost_node,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(SCENARIOS),
                    help=f"comma-separated scenarios (default: all of {', '.join(SCENARIOS)})")
    args = ap.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="hqrun_faults_") as tmp:
        for name in chosen:
            started = time.time()
            rows.append(SCENARIOS[name](Path(tmp)))
            print(f"[faults] {name}: {time.time() - started:.0f} s", file=sys.stderr, flush=True)
    import ray

    if ray.is_initialized():
        ray.shutdown()
    print(f"\nsearch of {TRIALS} trials (toy backend); before/after = trials journaled\n")
    print("| scenario | before | after | lost | duplicated | in flight, run again | what happened |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.scenario} | {r.before} | {r.after} | {r.lost} | {r.duplicated} | {r.rerun} "
              f"| {r.note} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
