"""The ``next:`` line commands print: only commands whose inputs exist.

Why: a hint is a promise. ``hqrun search`` used to print ``next: hqrun firmware
run=<dir>/winner`` also when ``search.retrain=none`` (the study's setting), so the directory it
named never existed and the first command a user copied failed. Every hint now names the files
it reads, and is printed only when they are there.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

__all__ = ["Hint", "trained_run", "hint_word", "next_line", "train_plan_hint", "firmware_hint", "cost_hint"]

#: Files of which one makes a directory a trained model `hqrun firmware/cost run=` can read.
MODEL_FILES = ("model.pt", "best.ckpt")


@dataclass(frozen=True)
class Hint:
    """A command and the paths that must exist for it to work."""

    command: str
    needs: tuple[Path, ...]

    def usable(self) -> bool:
        return all(Path(p).exists() for p in self.needs)


def trained_run(directory: str | Path) -> Path | None:
    """The model file of a trained run directory (None when it holds none)."""
    d = Path(directory)
    return next((d / n for n in MODEL_FILES if (d / n).is_file()), None)


def hint_word(path: str | Path) -> str:
    """A path as one shell word."""
    return shlex.quote(str(path))


def train_plan_hint(plan: str | Path) -> Hint:
    return Hint(f"hqrun train plan={hint_word(plan)}", (Path(plan),))


def firmware_hint(run_dir: str | Path, backend: str | None = None) -> Hint:
    """``hqrun firmware run=<dir>`` (with ``firmware.backend=<backend>`` when the default
    backend would refuse the model, e.g. per-element learned activations: rtl)."""
    model = trained_run(run_dir)
    needs = (model,) if model is not None else (Path(run_dir) / MODEL_FILES[0],)
    extra = f" firmware.backend={backend}" if backend else ""
    return Hint(f"hqrun firmware run={hint_word(run_dir)}{extra}", needs)


def cost_hint(run_dir: str | Path) -> Hint:
    model = trained_run(run_dir)
    needs = (model,) if model is not None else (Path(run_dir) / MODEL_FILES[0],)
    return Hint(f"hqrun cost run={hint_word(run_dir)}", needs)


def next_line(hints: Iterable[Hint], prefix: str = "") -> str | None:
    """``<prefix>next: `a` or `b``` for the usable hints; None when none is usable."""
    usable: Sequence[Hint] = [h for h in hints if h.usable()]
    if not usable:
        return None
    return f"{prefix}next: " + " or ".join(f"`{h.command}`" for h in usable)
