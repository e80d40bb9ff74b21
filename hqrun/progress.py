"""Progress for long work: a bar on a terminal, a few lines in a log, nothing when asked.

Why one module: training epochs (``hqrun train``, the study) and search trials (``hqrun
search``) both run for minutes; a person at a terminal wants to see them advance, a log file
(CI, a cluster job, ``> out.log``) wants a handful of lines rather than hundreds of carriage
returns. :func:`on_terminal` decides which, the same way everywhere.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any, Callable

__all__ = ["on_terminal", "wanted", "Bar"]


def on_terminal(stream: Any = None) -> bool:
    """Whether ``stream`` (stdout by default) is a terminal and not a CI log."""
    stream = sys.stdout if stream is None else stream
    in_ci = os.environ.get("CI", "").lower() in ("true", "1", "yes")
    return bool(getattr(stream, "isatty", lambda: False)()) and not in_ci


def wanted(setting: Any = "auto") -> bool:
    """A progress setting (true/false/auto) resolved: auto means "on a terminal"."""
    text = str(setting).lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    return on_terminal()


class Bar:
    """A tqdm bar on a terminal; otherwise at most ``log_lines`` plain lines over the run.

    ``describe(done)`` returns the text shown after the counter (best result so far, ...).
    """

    def __init__(self, total: int, desc: str, enabled: bool = True, initial: int = 0,
                 unit: str = "it", log_lines: int = 5,
                 describe: Callable[[], str] | None = None) -> None:
        self.total, self.desc, self.done = int(total), desc, int(initial)
        self.enabled = enabled
        self.describe = describe or (lambda: "")
        self.every = max(1, math.ceil(self.total / max(1, log_lines)))
        self._bar = None
        if enabled and on_terminal():
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, initial=self.done, desc=desc, unit=unit,
                             file=sys.stdout, leave=False, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        text = self.describe()
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)
            self._bar.update(n)
        elif self.done % self.every == 0 or self.done == self.total:
            print(f"{self.desc}: {self.done}/{self.total}" + (f" | {text}" if text else ""),
                  flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
