"""Where a command writes, and the rules that keep an earlier run's directory intact.

``output_dir(cfg)`` is ``out_dir=`` when given, else Hydra's output directory; the study runs
train/search/firmware steps into sub-directories of its own run directory, so every command
resolves its output directory here instead of asking Hydra directly.

A run directory is the unit of record, so before a command writes into one it *claims* it
(:func:`claim`):

- a directory holding a **finished** run is never written into by a later command, except by the
  same resumable command (``search``, ``study``: rerunning them on their directory resumes);
- a directory holding another command's run is refused (a directory of other files, chosen
  explicitly with ``out_dir=``, is used as it is);
- a directory another hqrun process is writing into right now (it holds a lock on it) is refused;
- whether the directory existed before is remembered, so a command that fails before writing
  any artefact can remove the directory it created (:func:`remove_if_unused`) and never one
  that was there before.

"Finished" is read from ``job_status.json`` (``status: ok``, written by the CLI) or from the
artefact a command writes last (``metrics.json`` of a training, ``search_summary.json`` of a
search, ``cost.json``, a study's ``report.json``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from hqrun.errors import RunDirError

__all__ = ["output_dir", "PreviousRun", "previous_run", "RunDirClaim", "claim", "claimed_dir",
           "job_claim", "set_job_claim", "remove_if_unused", "drop_new_empty_logs", "RESUMABLE",
           "BOOKKEEPING"]

#: Commands that continue an earlier run in the same directory instead of starting over.
RESUMABLE = frozenset({"search", "study"})
#: What Hydra and the CLI put into a job directory themselves (not artefacts of the command).
BOOKKEEPING = frozenset({".hydra", "job_status.json", "error.txt"})

#: The artefact each command writes last, and the files that say which command wrote a dir.
_FINISHED_BY = (("train", ("metrics.json", "model.pt")), ("search", ("search_summary.json",)),
                ("study", ("report.json", "study_config.yaml")), ("cost", ("cost.json",)))
_STARTED_BY = (("search", "search.json"), ("study", "study_config.yaml"), ("train", "plan.yaml"))


def output_dir(cfg: Any = None, kind: str = "run") -> Path:
    """``cfg.out_dir``, else Hydra's job output dir, else ``runs/<kind>/<time>`` (notebooks)."""
    explicit = cfg.get("out_dir") if cfg is not None and hasattr(cfg, "get") else None
    if explicit:
        from hqrun.safenames import check_output_path

        return check_output_path(explicit, "out_dir")
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except (ImportError, ValueError):
        return Path("runs") / kind / time.strftime("%Y-%m-%d_%H-%M-%S")


@dataclass(frozen=True)
class PreviousRun:
    """What a non-empty directory holds: which command wrote it, whether that run finished."""

    command: str | None      # None: files that are not an hqrun run
    finished: bool
    status: str | None       # job_status.json's status, when there is one

    def describe(self) -> str:
        if self.command is None:
            return "files that are not an hqrun run"
        state = "finished" if self.finished else (self.status or "unfinished")
        return f"a {state} `hqrun {self.command}` run"


def previous_run(directory: str | os.PathLike) -> PreviousRun | None:
    """What ``directory`` holds, or None when it does not exist or is empty."""
    d = Path(directory)
    try:
        names = {p.name for p in d.iterdir()}
    except (FileNotFoundError, NotADirectoryError):
        return None
    names = {n for n in names if not n.endswith(".log")} or set()
    if not names:
        return None
    status = _read_json(d / "job_status.json")
    command = status.get("command") if isinstance(status.get("command"), str) else None
    command = command or _hydra_command(d) or _sniff_command(d, names)
    finished_marker = next((c for c, files in _FINISHED_BY if all((d / f).is_file() for f in files)),
                           None)
    command = command or finished_marker
    finished = status.get("status") == "ok" or (finished_marker is not None and finished_marker == command)
    state = status.get("status") if isinstance(status.get("status"), str) else None
    if command is None and names <= BOOKKEEPING:
        command = "unknown"
    return PreviousRun(command, finished, state)


@dataclass
class RunDirClaim:
    """A directory this process may write into (see the module docstring)."""

    path: Path
    command: str
    existed: bool            # it was there before this command: never removed by it
    was_finished: bool       # it held a finished run: its job_status.json is never re-labelled
    what: str = "the run directory"
    logs_before: frozenset = frozenset()   # the *.log files it held before this command
    #: the nearest ancestor that existed before the claim: parents created for this directory
    #: (``runs/``, ``runs/train/``) are removed with it when it is removed unused
    existing_ancestor: Path | None = None
    _fd: int | None = None
    _locked: bool = False

    def create(self) -> Path:
        """Create the directory (when the command starts writing) and lock it."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            from hqrun import atomic

            if atomic.is_storage_error(err):
                raise atomic.storage_error(err, self.path / ".") from None
            raise RunDirError(f"{self.what} {self.path} cannot be created ({err.strerror or err}); "
                              "choose another directory.") from None
        if not self._locked:
            self._fd = _lock(self.path, self.what)
            self._locked = True
        return self.path

    def release(self) -> None:
        """Drop the lock (the process exiting drops it too)."""
        _CLAIMS.pop(_key(self.path), None)
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
        self._fd = None
        self._locked = False


#: Directories claimed by this process, by resolved path (a claim is re-entrant per process).
_CLAIMS: dict[str, RunDirClaim] = {}
#: The claim of the current Hydra job directory (set by the run-dir callback), if any.
_JOB_CLAIM: RunDirClaim | None = None


def job_claim() -> RunDirClaim | None:
    """The claim the Hydra callback made on this job's directory (None outside the CLI)."""
    return _JOB_CLAIM


def set_job_claim(value: RunDirClaim | None) -> None:
    global _JOB_CLAIM
    _JOB_CLAIM = value


def claim(directory: str | os.PathLike, command: str, *, what: str = "the run directory",
          create: bool = False) -> RunDirClaim:
    """Check that ``command`` may write into ``directory``; with ``create``, make and lock it.

    Raises :class:`~hqrun.errors.RunDirError` (one paragraph naming the directory and the fix)
    when the directory holds a finished run of a command that does not resume, another
    command's run, or is locked by another hqrun process. Without ``create`` nothing is written: the command calls
    :meth:`RunDirClaim.create` once its inputs are validated, so a command that fails before any
    work leaves no directory behind.
    """
    path = Path(directory).expanduser().absolute()
    held = _CLAIMS.get(_key(path))
    if held is None:
        if path.exists() and not path.is_dir():
            raise RunDirError(f"{what} {path} is a file, not a directory; choose a directory path.")
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise RunDirError(f"{what} {path} cannot be created: {blocker} is a file, not a "
                              "directory; choose a directory path.")
        before = previous_run(path)
        if before is not None:
            _refuse_if_taken(path, command, before, what)
        logs = frozenset(p.name for p in path.glob("*.log")) if path.is_dir() else frozenset()
        held = RunDirClaim(path, command, existed=path.exists(),
                           was_finished=bool(before and before.finished), what=what,
                           logs_before=logs,
                           existing_ancestor=next((p for p in path.parents if p.exists()), None))
        _CLAIMS[_key(path)] = held
    elif held.command != command and held.command not in RESUMABLE:
        raise RunDirError(f"{path} is already used by this `hqrun {held.command}` command; "
                          f"choose another directory for `hqrun {command}`.")
    if create:
        try:
            held.create()
        except BaseException:
            held.release()
            raise
    return held


@contextlib.contextmanager
def claimed_dir(directory: str | os.PathLike, command: str, *, what: str = "the run directory"
                ) -> Iterator[RunDirClaim]:
    """:func:`claim` for the length of a command: released at the end, unless it is the Hydra
    job directory (the CLI releases that one when the job ends)."""
    held = claim(directory, command, what=what)
    try:
        yield held
    finally:
        if held is not _JOB_CLAIM:
            held.release()


def remove_if_unused(claimed: RunDirClaim | None) -> bool:
    """Remove a directory this command created and left without artefacts; True if removed.

    Only Hydra's and the CLI's own bookkeeping (``.hydra/``, ``*.log``, ``job_status.json``,
    ``error.txt``) may be in it: a directory holding anything else, one that existed before the
    command started, or one this process does not hold the lock of, is left alone.
    """
    if claimed is None or claimed.existed or not claimed._locked or not claimed.path.is_dir():
        return False
    names = {p.name for p in claimed.path.iterdir()}
    if any(n not in BOOKKEEPING and not n.endswith(".log") for n in names):
        return False
    shutil.rmtree(claimed.path, ignore_errors=True)
    claimed.release()
    _remove_created_parents(claimed)
    return True


def drop_new_empty_logs(claimed: RunDirClaim | None) -> None:
    """Remove the empty log files a failed command's logging created in a directory that was
    there before it (Hydra opens ``<job name>.log`` before the command starts): a refused
    resume of an earlier run leaves that run's directory as it was."""
    if claimed is None or not claimed.existed or not claimed.path.is_dir():
        return
    for log in claimed.path.glob("*.log"):
        if log.name not in claimed.logs_before and log.is_file() and log.stat().st_size == 0:
            log.unlink()


def _remove_created_parents(claimed: RunDirClaim) -> None:
    """Remove the empty parents the claimed directory brought with it (never a directory that
    existed before the claim, never one that holds anything)."""
    stop = claimed.existing_ancestor
    if stop is None:
        return
    for parent in claimed.path.parents:
        if parent == stop or stop not in parent.parents:
            return
        try:
            parent.rmdir()          # only succeeds when empty
        except OSError:
            return


# ----------------------------------------------------------------------------- internals
def _refuse_if_taken(path: Path, command: str, before: PreviousRun, what: str) -> None:
    if before.command is None:
        return      # a directory of the user's own files, chosen explicitly: hqrun adds its files
    if before.command not in (command, "unknown"):
        raise RunDirError(
            f"{what} {path} holds {before.describe()}; `hqrun {command}` never writes over "
            "another command's run. Choose another directory (drop hydra.run.dir=/out_dir= to "
            "get a fresh timestamped one)."
        )
    if before.finished and command not in RESUMABLE:
        raise RunDirError(
            f"{what} {path} holds {before.describe()}, and hqrun never overwrites a finished "
            "run (its files stay as they are). Choose another directory: drop hydra.run.dir= "
            "(or out_dir=) to get a fresh timestamped one, or pass a new path."
        )


def _lock(path: Path, what: str) -> int | None:
    """An exclusive, non-blocking flock on the directory (None where flock is unavailable)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no locking
        return None
    if not path.is_dir():
        return None     # created later by the command; nobody else can be in it yet
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunDirError(f"another hqrun command is writing into {what} {path} right now; wait "
                          "for it to finish or choose another directory.") from None
    except OSError:
        os.close(fd)
        return None
    return fd


def _key(path: Path) -> str:
    return os.path.normcase(os.path.abspath(path))


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _hydra_command(d: Path) -> str | None:
    """The ``command`` key of the run's recorded Hydra config, when there is one."""
    cfg = d / ".hydra" / "config.yaml"
    if not cfg.is_file():
        return None
    try:
        import yaml

        data = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - an unreadable record says nothing about the command
        return None
    value = data.get("command") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def _sniff_command(d: Path, names: set[str]) -> str | None:
    for command, marker in _STARTED_BY:
        if marker in names:
            return command
    return None
