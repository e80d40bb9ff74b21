"""The bad-input catalogue (issues #16 and #17): commands a careful user might type with one
mistake in each, and what hqrun must answer.

A :class:`Case` is the command (argv after ``hqrun``, built from an :class:`Env` that holds
the good inputs and writes the bad one), the exit status it must end with (2 for an error; 0
only where training can go on and a warning says what is wrong) and a fragment of the message.
:func:`run_case` runs it in this process (``hqrun.cli.main``) or as a real ``hqrun`` process
and :func:`check_outcome` holds every case to the same rules: the status, the fragment, one
``hqrun: error:`` paragraph, no traceback, and not one byte of the prepared finished run
changed. The tables live in the sibling modules, one per kind of input.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import subprocess
import sys
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

#: Training settings that keep every case that trains (or gets close) to a second or two.
QUICK_TRAIN = ["trainer.max_epochs=1", "trainer.batch_size=64", "trainer.progress_bar=false",
               "trainer.roc_plot=false"]
#: A search that would be tiny if it ever started (the cases stop it before the first trial).
QUICK_SEARCH = ["search.max_trials=2", "search.epochs=1", "search.reference_epochs=1",
                "search.retrain=none", "search.progress=false"]


@dataclass
class Env:
    """The good inputs every case starts from, and a private directory for its bad one."""

    data: Path                 # a tiny, valid jet file (300 rows, 5 classes)
    finished: Path             # a finished `hqrun train quant=q6` run: must never change
    tmp: Path                  # this case's own directory
    search_template: Callable[[], Path] = field(repr=False, default=lambda: Path("/nonexistent"))
    cleanups: list[Callable[[], object]] = field(default_factory=list)   # run after the case
    snapshots: dict[str, dict[str, str]] = field(default_factory=dict)   # other dirs to keep

    @property
    def out(self) -> Path:
        """Where a case's command writes (``hydra.run.dir``) unless the case says otherwise."""
        return self.tmp / "out"

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def npz(self, name: str, X: np.ndarray, y: np.ndarray, **extra: np.ndarray) -> Path:
        from hqrun.data import JET_CLASSES, JET_FEATURES

        arrays = {"X": X, "y": y, "feature_names": np.array(JET_FEATURES),
                  "class_names": np.array(JET_CLASSES)}
        arrays.update(extra)
        arrays = {k: v for k, v in arrays.items() if v is not None}
        path = self.tmp / name
        np.savez(path, **arrays)
        return path

    def jets(self, n: int = 300, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """``n`` rows cycling through the 5 classes, as the good data file has."""
        rng = np.random.default_rng(seed)
        y = np.arange(n) % 5
        X = (rng.normal(size=(n, 16)) + 2.0 * rng.normal(size=(5, 16))[y]).astype(np.float32)
        return X, y.astype(np.int64)

    def copy_finished(self, name: str = "copy") -> Path:
        """A copy of the finished run that a case may damage."""
        dst = self.tmp / name
        shutil.copytree(self.finished, dst)
        return dst

    def finished_search(self, name: str = "search") -> Path:
        """A copy of a finished search directory (journal, reference, settings) to damage."""
        dst = self.tmp / name
        shutil.copytree(self.search_template(), dst)
        return dst


@dataclass(frozen=True)
class Case:
    """One bad input: the command, the expected status and a fragment of the message."""

    id: str
    argv: Callable[[Env], list[str]]
    fragment: str
    code: int = 2
    #: The command may leave its own new run directory (it failed after work had started).
    leaves_run_dir: bool = False
    #: Also run as a real ``hqrun`` process (the in-process run is the fast, usual one).
    subprocess: bool = False
    #: Extra checks after the run (e.g. a payload's marker file does not exist).
    check: Callable[[Env], None] | None = None
    #: The message must not contain this (e.g. Hydra's '+key' advice for a typo).
    absent: str | None = None
    #: The command gets far enough to start Ray (a resumed search): slow lane only.
    slow: bool = False


@dataclass
class Outcome:
    code: int
    err: str           # stderr
    out: str = ""      # stdout
    warned: str = ""   # warnings caught in this process (a real process prints them to stderr)

    @property
    def text(self) -> str:
        return self.err + self.warned + self.out


def snapshot(directory: Path) -> dict[str, str]:
    """sha256 of every file under ``directory`` (hidden ones included)."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def with_run_dir(argv: list[str], env: Env) -> list[str]:
    """Every case writes into its own directory unless it names one itself."""
    if any(a.startswith(("hydra.run.dir=", "hydra.sweep.dir=")) for a in argv) or \
            argv[:1] in (["datagen"], ["collect"]):
        return argv
    return [*argv, f"hydra.run.dir={env.out}"]


def run_in_process(argv: list[str], capsys) -> Outcome:
    """``hqrun argv`` through ``hqrun.cli.main`` in this process, warnings shown as a user sees them."""
    from hqrun.cli import main

    capsys.readouterr()
    shown = io.StringIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            main(list(argv))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001 - what a user would see: the traceback, status 1
            traceback.print_exc(file=shown)
            code = 1
    captured = capsys.readouterr()
    for w in caught:
        shown.write(f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}\n")
    return Outcome(code, captured.err, captured.out, shown.getvalue())


def run_as_process(argv: list[str], cwd: Path, timeout: float = 300) -> Outcome:
    """``hqrun argv`` as a real process (the console entry point of this interpreter)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run([sys.executable, "-m", "hqrun.cli", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    return Outcome(proc.returncode, proc.stderr, proc.stdout)


def check_outcome(case: Case, env: Env, outcome: Outcome, before: dict[str, str]) -> None:
    """The rules every case is held to (see the module docstring)."""
    text = outcome.text
    assert "Traceback" not in text, f"{case.id}: a traceback reached the user:\n{text[-3000:]}"
    assert outcome.code == case.code, (f"{case.id}: exit status {outcome.code}, expected "
                                       f"{case.code}:\n{text[-3000:]}")
    assert case.fragment in text, f"{case.id}: {case.fragment!r} not in:\n{text[-3000:]}"
    if case.absent:
        assert case.absent not in text, f"{case.id}: {case.absent!r} in:\n{text[-3000:]}"
    if case.code == 2:
        assert text.count("hqrun: error:") == 1, f"{case.id}: not one paragraph:\n{text[-3000:]}"
        after = outcome.err.split("hqrun: error:", 1)[1].splitlines()[1:]
        assert not [line for line in after if line.strip()], \
            f"{case.id}: the message is not one paragraph:\n{outcome.err[-3000:]}"
        if not case.leaves_run_dir:
            assert not env.out.exists(), f"{case.id}: a failure before any work left {env.out}"
    assert snapshot(env.finished) == before, f"{case.id}: the finished run changed"
    if case.code == 2:
        for path, kept in env.snapshots.items():
            now = snapshot(Path(path))
            changed = sorted(k for k in set(now) | set(kept) if now.get(k) != kept.get(k))
            assert not changed, f"{case.id}: {path} changed: {changed}"
    if case.check is not None:
        case.check(env)


def dump(case: Case, argv: list[str], outcome: Outcome, mode: str) -> None:
    """Keep what the user saw (``HQRUN_CATALOGUE_OUT=<dir>``, used by tools/bad_inputs.py)."""
    folder = os.environ.get("HQRUN_CATALOGUE_OUT")
    if not folder:
        return
    path = Path(folder) / f"{case.id}.{mode}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"$ hqrun {' '.join(argv)}\n[exit {outcome.code}]\n{outcome.text}",
                    encoding="utf-8")


def nothing_outside(*patterns: str) -> Callable[[Env], None]:
    """A check: no path matching ``patterns`` appeared next to or above the case's directory
    (an output path that climbs out with ``..`` must be refused, not created)."""
    def check(env: Env) -> None:
        for base in (env.tmp.parent, env.tmp.parent.parent):
            for pattern in patterns:
                found = list(base.glob(pattern))
                assert not found, f"created outside the case's directory: {found}"
    return check


def remember(env: Env, path: Path) -> Path:
    """Hold ``path`` to "unchanged by a refused command" too (returns it, for use in argv)."""
    env.snapshots[str(path)] = snapshot(path)
    return path


@contextlib.contextmanager
def chdir(path: Path):
    """Relative paths in a case resolve inside its own directory."""
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)
