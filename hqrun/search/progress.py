"""Progress of a search's trials: a bar on a terminal, a few lines in a log.

The journal callback calls a :class:`TrialProgress` with every finished trial; a resumed search
starts the count from the journal.
"""

from __future__ import annotations

from hqrun.progress import Bar


class TrialProgress:
    """Counts finished trials and shows the best so far (score, accuracy, cost)."""

    def __init__(self, total: int, enabled: bool = True, done: list[dict] | None = None) -> None:
        self.best: dict | None = None
        for rec in done or []:           # a resumed search starts from the journal
            self._track(rec)
        self.bar = Bar(total, "[search] trials", enabled, initial=len(done or []), unit="trial",
                       describe=self._describe)

    @property
    def done(self) -> int:
        return self.bar.done

    def _track(self, rec: dict) -> None:
        if rec.get("status") in ("ok", "stopped") and rec.get("score") is not None:
            if self.best is None or rec["score"] > self.best["score"]:
                self.best = rec

    def _describe(self) -> str:
        b = self.best
        if b is None:
            return "no successful trial yet"
        return f"best: val acc {b['accuracy']:.4f} at cost {b['cost']:,.0f}"

    def __call__(self, rec: dict) -> None:
        self._track(rec)
        self.bar.update()

    def close(self) -> None:
        self.bar.close()
