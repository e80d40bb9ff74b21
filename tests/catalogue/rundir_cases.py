"""Run directories: a finished run is never overwritten or re-labelled (issue #16), and a
directory that cannot be one (a file, below a file, read-only, locked) is one paragraph."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from catalogue import QUICK_SEARCH, QUICK_TRAIN, Case, Env, nothing_outside, remember
from catalogue.files import write_evil


def train(e: Env, *more: str) -> list[str]:
    return ["train", "data=jets_file", f"data.path={e.data}", *QUICK_TRAIN, *more]


def into_finished(*argv_more):
    """``hqrun <argv> hydra.run.dir=<the finished run>``."""
    return lambda e: [*argv_more[0](e), f"hydra.run.dir={e.finished}"]


NEVER_OVERWRITTEN = "hqrun never overwrites a finished run"
OTHER_COMMAND = "never writes over another command's run"


def read_only_dir(e: Env) -> Path:
    """A read-only directory: a read-only tmpfs (root ignores a directory's mode bits).

    Where mounting is not permitted, a bind of the case's directory is not either; the case
    then falls back to the mode bits, which hold for a non-root user.
    """
    mount = e.tmp / "ro"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        mount.chmod(0o555)
    else:
        e.cleanups.append(lambda: subprocess.run(["umount", "-l", str(mount)], check=False))
    return mount


def locked_dir(e: Env) -> Path:
    """A directory another hqrun process is writing into (it holds the flock)."""
    import fcntl
    import os

    busy = e.tmp / "busy"
    busy.mkdir()
    fd = os.open(busy, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    e.cleanups.append(lambda: os.close(fd))
    return busy


def used_sweep_dir(e: Env) -> Path:
    sweep = e.tmp / "sweep"
    (sweep / "0").mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    (sweep / "0" / "metrics.json").write_text("{}")
    return sweep


def finished_search_dir(e: Env) -> Path:
    run = e.tmp / "search"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("command: search\n")
    (run / "search.json").write_text(json.dumps({"fingerprint": "0123456789abcdef", "config": {}}))
    (run / "search_summary.json").write_text("{}")
    (run / "job_status.json").write_text(json.dumps({"status": "ok", "command": "search"}))
    return run


CASES = [
    Case("rundir-finished-bad-plan", into_finished(lambda e: train(e, f"plan={e.tmp / 'no.yaml'}")),
         NEVER_OVERWRITTEN, subprocess=True),
    Case("rundir-finished-crafted-checkpoint",
         into_finished(lambda e: train(e, f"checkpoint={write_evil(e.tmp / 'e.pt', e.tmp / 'PWNED')}")),
         NEVER_OVERWRITTEN, check=lambda e: _no_marker(e)),
    Case("rundir-finished-other-config", into_finished(lambda e: train(e, "quant=q4")),
         NEVER_OVERWRITTEN),
    Case("rundir-finished-same-config", into_finished(lambda e: train(e, "quant=q6")),
         NEVER_OVERWRITTEN),
    Case("rundir-finished-another-command", into_finished(lambda e: ["cost"]), OTHER_COMMAND),
    Case("rundir-finished-a-search", into_finished(lambda e: ["search", "data=jets_file",
                                                              f"data.path={e.data}", *QUICK_SEARCH]),
         OTHER_COMMAND),
    Case("rundir-finished-as-out-dir", lambda e: train(e, f"out_dir={e.finished}"),
         "the training run directory"),
    Case("rundir-out-dir-climbs-out", lambda e: train(e, "out_dir=../elsewhere"),
         "out_dir='../elsewhere' climbs out of its base directory", check=nothing_outside("elsewhere")),
    Case("rundir-a-file", lambda e: ["cost", f"hydra.run.dir={e.write('afile', 'x')}"],
         "is a file, not a directory"),
    Case("rundir-below-a-file", lambda e: ["cost", f"hydra.run.dir={e.write('afile', 'x') / 'sub'}"],
         "afile is a file, not a directory", subprocess=True),
    Case("rundir-read-only", lambda e: ["cost", f"hydra.run.dir={read_only_dir(e) / 'run'}"],
         "the directory is not writable"),
    Case("rundir-locked", lambda e: ["cost", f"hydra.run.dir={locked_dir(e)}"],
         "another hqrun command is writing into"),
    Case("rundir-out-dir-a-file", lambda e: train(e, f"out_dir={e.write('f', 'x')}"),
         "is a file, not a directory"),
    Case("rundir-search-run-dir-a-file", lambda e: ["search", "data=jets_file", f"data.path={e.data}",
                                                    *QUICK_SEARCH, f"search.run_dir={e.write('s', 'x')}"],
         "is a file, not a directory"),
    Case("rundir-finished-search-other-settings",
         lambda e: ["search", "data=jets_file", f"data.path={e.data}", *QUICK_SEARCH,
                    f"hydra.run.dir={remember(e, finished_search_dir(e))}"],
         "holds a different search"),
    Case("sweepdir-holds-a-sweep",
         lambda e: ["-m", *train(e, "quant=q4,q8"), f"hydra.sweep.dir={remember(e, used_sweep_dir(e))}"],
         "already holds an earlier sweep"),
    Case("sweepdir-subdir-climbs-out",
         lambda e: ["-m", *train(e, "quant=q4,q8"), f"hydra.sweep.dir={e.tmp / 'sw'}",
                    "hydra.sweep.subdir=../../x${hydra.job.num}"],
         "would put jobs outside hydra.sweep.dir", check=nothing_outside("x[0-9]*")),
    Case("study-baseline-as-path", lambda e: ["study", "data=jets_file", f"data.path={e.data}",
                                              "study.baselines=[float,../../evil]"],
         "study.baselines entry='../../evil' cannot be used as a file or directory name"),
    Case("study-goal-with-slash", lambda e: ["study", "data=jets_file", f"data.path={e.data}",
                                             "study.goals=[a/b]"],
         "study.goals entry='a/b' cannot be used"),
]


def _no_marker(e: Env) -> None:
    assert not (e.tmp / "PWNED").exists()
