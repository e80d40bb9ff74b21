"""Append-only trial journal: the run directory's record of every finished trial.

Resume must not depend on Ray's experiment state (its format changes between releases and a
SIGKILL can leave it half-written). Each finished trial is one JSON line, flushed and fsynced
before the search moves on, so after a kill the journal holds every trial that finished; a
truncated last line (killed mid-write) is ignored on reading.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Iterator


class Journal:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def records(self) -> list[dict]:
        return list(self._read())

    def _read(self) -> Iterator[dict]:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue  # torn last line of a killed run

    def append(self, record: dict[str, Any]) -> None:
        data = json.dumps(record, sort_keys=True, default=_default) + "\n"
        # a torn line from a killed writer must not glue onto this one
        prefix = ""
        if self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    prefix = "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(prefix + data)
            fh.flush()
            os.fsync(fh.fileno())

    def trials(self, block: int | None = None) -> list[dict]:
        return [r for r in self.records() if r.get("event") == "trial"
                and (block is None or r.get("block") == block)]

    def blocks_done(self) -> dict[int, dict]:
        return {r["block"]: r for r in self.records() if r.get("event") == "block_done"}


def scored_trials(records: Iterable[dict], statuses: tuple[str, ...] = ("ok", "stopped")
                  ) -> list[dict]:
    """Trials with one of ``statuses`` and a finite score, in the order given (what rankings,
    winners and parents may be drawn from; failed trials and NaN scores never are)."""
    return [r for r in records if r.get("status") in statuses and r.get("score") is not None
            and math.isfinite(r["score"])]


def _default(obj: Any) -> Any:
    try:
        return float(obj)
    except (TypeError, ValueError):
        return str(obj)
