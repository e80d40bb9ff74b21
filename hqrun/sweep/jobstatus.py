"""One small JSON file per job that says whether it finished, and why not.

A sweep must survive a failing job: the job writes ``job_status.json`` into its own output
directory and returns normally, so Hydra's launchers go on with the other jobs and the
collector can mark the job as failed with the first line of its error.
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path
from typing import Optional

STATUS_FILE = "job_status.json"
TRACEBACK_FILE = "error.txt"


def first_line(err: BaseException) -> str:
    """The first non-empty line of an error, prefixed by its type for unexpected errors."""
    text = str(err).strip().splitlines()
    line = text[0] if text else ""
    from hqrun.errors import HqrunError

    return line if isinstance(err, HqrunError) else f"{type(err).__name__}: {line}".rstrip(": ")


def write_status(job_dir: str | Path, status: str, error: Optional[BaseException] = None,
                 started: Optional[float] = None, command: Optional[str] = None) -> Path:
    """Write ``job_status.json`` (and ``error.txt`` with the traceback for a failure), atomically.

    ``command`` records which hqrun command the directory belongs to (read back by
    :func:`hqrun.rundir.previous_run` to refuse other commands writing over it).
    """
    from hqrun import atomic

    job_dir = Path(job_dir)
    record: dict = {"status": status, "finished_at": time.time()}
    if command:
        record["command"] = command
    if started is not None:
        record["seconds"] = round(time.time() - started, 3)
    if error is not None:
        record["error"] = first_line(error)
        atomic.write_text(job_dir / TRACEBACK_FILE,
                          "".join(traceback.format_exception(type(error), error, error.__traceback__)))
    else:  # a resumed run that finishes: an earlier attempt's traceback no longer applies
        (job_dir / TRACEBACK_FILE).unlink(missing_ok=True)
    path = job_dir / STATUS_FILE
    atomic.write_json(path, record)
    return path


def read_status(job_dir: str | Path) -> dict:
    """The job's status record; a job without one never finished (killed or still running)."""
    path = Path(job_dir) / STATUS_FILE
    if not path.exists():
        return {"status": "unfinished", "error": "no job_status.json (job killed or still running)"}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {"status": "unfinished", "error": f"unreadable {STATUS_FILE}"}
