"""Append-only trial journal: the run directory's record of every finished trial.

Resume must not depend on Ray's experiment state (its format changes between releases and a
SIGKILL can leave it half-written). Each finished trial is one JSON line, fsynced before the
search moves on (:func:`hqrun.atomic.append_line`), so after a kill the journal holds every
trial that finished.

Reading is forgiving but never silent: a line that cannot be used (torn by a killed writer,
corrupted, valid JSON that is not a record, a field of the wrong type) is reported as a
:class:`JournalWarning` naming the file, the line number and the reason, and reading goes on
with the next line. A trial whose numbers are unusable is kept (it counts as run) with those
numbers cleared, so it can never win, but is never lost without a word either.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator

#: Trial statuses the search writes; anything else is read as a failed trial.
STATUSES = ("ok", "stopped", "failed")
#: Numeric fields of a trial record (None, or a number; NaN and inf are read as None).
_NUMBERS = ("accuracy", "cost", "score")


class JournalWarning(UserWarning):
    """A journal line could not be used as it is (the message says which and why)."""


class Journal:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def records(self) -> list[dict]:
        return list(self._read())

    def _read(self) -> Iterator[dict]:
        if not self.path.exists():
            return
        try:
            with open(self.path, "rb") as fh:
                lines = fh.read().split(b"\n")
        except OSError as err:      # a directory in its place, no permission, an I/O error
            from hqrun.errors import SearchError

            raise SearchError(
                f"the search journal {self.path} cannot be read ({err.strerror or err}); it must "
                "be the trials.jsonl file a search wrote. Restore it, or start the search in a new "
                "directory with search.run_dir=<dir> (or hydra.run.dir=<dir>).") from None
        last = len(lines) - (1 if lines and lines[-1] == b"" else 0)
        for number, raw in enumerate(lines[:last], start=1):
            if not raw.strip():
                continue
            torn = number == last and not lines[-1] == b""
            record, problem = _parse(raw)
            if problem:
                self._warn(number, problem + (" (the last line, cut short when a search was "
                                              "killed mid-write)" if torn and record is None else ""))
            if record is not None:
                yield record

    def _warn(self, number: int, reason: str) -> None:
        warnings.warn(f"{self.path}, line {number}: {reason}", JournalWarning, stacklevel=2)

    def append(self, record: dict[str, Any]) -> None:
        from hqrun import atomic

        atomic.append_line(self.path, json.dumps(record, sort_keys=True, default=_default))

    def trials(self, block: int | None = None) -> list[dict]:
        return [r for r in self.records() if r.get("event") == "trial"
                and (block is None or r.get("block") == block)]

    def blocks_done(self) -> dict[int, dict]:
        return {r["block"]: r for r in self.records() if r.get("event") == "block_done"}


def _parse(raw: bytes) -> tuple[dict | None, str | None]:
    """(record or None, problem or None) for one journal line."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not UTF-8 text; line skipped"
    except json.JSONDecodeError as err:
        return None, f"not valid JSON ({err.msg} at column {err.colno}); line skipped"
    if not isinstance(record, dict):
        return None, f"valid JSON but a {type(record).__name__}, not a record; line skipped"
    event = record.get("event")
    if event == "trial":
        return _check_trial(record)
    if event == "block_done":
        if not isinstance(record.get("block"), int) or isinstance(record.get("block"), bool) \
                or not isinstance(record.get("frozen"), dict):
            return None, "block_done record without an integer block and a frozen mapping; line skipped"
        return record, None
    return None, f"record with unknown event {event!r}; line skipped"


def _check_trial(record: dict) -> tuple[dict | None, str | None]:
    problems = []
    for key in ("config", "plan"):
        if not isinstance(record.get(key), dict):
            return None, f"trial record whose {key} is {type(record.get(key)).__name__}, not a mapping; line skipped"
    if not isinstance(record.get("trial_id"), str) or not record["trial_id"]:
        return None, "trial record without a trial_id; line skipped"
    status = record.get("status")
    if status not in STATUSES:
        problems.append(f"status {status!r} is not one of {', '.join(STATUSES)} (read as failed)")
        record["status"] = "failed"
    for key in _NUMBERS:
        value = record.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{key} {value!r} is not a number (cleared)")
            record[key] = None
        elif not math.isfinite(value):
            record[key] = None
        else:
            record[key] = float(value)
    if record.get("score") is not None and (record.get("accuracy") is None or record.get("cost") is None):
        # a score without the numbers it came from cannot be ranked or put on a front
        problems.append("score without accuracy and cost (cleared: the trial is never ranked)")
        record["score"] = None
    if record.get("block") is not None and (not isinstance(record["block"], int)
                                            or isinstance(record["block"], bool)):
        problems.append(f"block {record['block']!r} is not an integer (cleared)")
        record["block"] = None
    if not isinstance(record.get("widths") or {}, dict):
        problems.append("widths is not a mapping (cleared)")
        record["widths"] = {}
    if problems:
        return record, f"trial {record['trial_id']}: " + "; ".join(problems) + "; the trial is kept"
    return record, None


def scored_trials(records: Iterable[dict], statuses: tuple[str, ...] = ("ok", "stopped")
                  ) -> list[dict]:
    """Trials with one of ``statuses`` and a finite score, in the order given (what rankings,
    winners and parents may be drawn from; failed trials and NaN scores never are)."""
    return [r for r in records if r.get("status") in statuses and r.get("score") is not None
            and math.isfinite(r["score"])]


def member_trial_id(trial_id: str, k: int) -> str:
    """The id of member ``k`` of the population Ray trial ``trial_id`` (in the journal after the
    session prefix: ``part_000-<ray id>.m03``; :func:`member_index` reads it back)."""
    return f"{trial_id}.m{k:02d}"


def member_index(trial_id: str) -> tuple[str, int]:
    """(the Ray trial's id, the member index) of a journal trial id; -1 for a lone trial."""
    head, dot, tail = trial_id.rpartition(".m")
    if dot and tail.isdigit():
        return head, int(tail)
    return trial_id, -1


def _default(obj: Any) -> Any:
    try:
        return float(obj)
    except (TypeError, ValueError):
        return str(obj)
