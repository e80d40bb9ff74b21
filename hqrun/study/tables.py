"""Markdown tables of the study report, described by data: a list of :class:`Column`.

Why data: further columns (synthesis counts of a new backend, latency in cycles, another
family's numbers) are added by passing more columns (``write_report(extra_columns=...)``), not
by editing the renderer. A column whose cells are all empty is left out, so measured columns
appear as soon as a synthesis result exists and not before; every numeric header says whether
its number is *estimated* (hqrun.cost's formulas) or *measured* (synthesis, simulation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

from hqrun.study.collect import number

__all__ = ["Column", "MODEL_COLUMNS", "MEASURED_COLUMNS", "auc_columns", "render_table", "fmt"]


def fmt(value: Any, spec: str = ",.0f") -> str:
    v = number(value)
    return "—" if v is None else format(v, spec)


@dataclass(frozen=True)
class Column:
    """One table column: where its value comes from, how it reads.

    ``key``: the key in a row's values (``ModelResult.values()`` or a front point's dict);
    ``cell``: a function of the whole row instead, for cells built from several values;
    ``kind``: ``estimated`` / ``measured`` / ``""``, written into the header.
    """

    header: str
    key: str = ""
    spec: str = ",.0f"
    kind: str = ""
    cell: Optional[Callable[[Mapping[str, Any]], str]] = None

    def title(self) -> str:
        """The header with its kind: ``energy (pJ)`` -> ``energy (pJ, estimated)``."""
        if not self.kind:
            return self.header
        if self.header.endswith(")"):
            return f"{self.header[:-1]}, {self.kind})"
        return f"{self.header} ({self.kind})"

    def render(self, row: Mapping[str, Any]) -> str:
        if self.cell is not None:
            return self.cell(row)
        value = row.get(self.key)
        return fmt(value, self.spec) if number(value) is not None else "—"

    def empty(self, rows: Sequence[Mapping[str, Any]]) -> bool:
        return all(self.render(r) in ("—", "") for r in rows)


def _accuracy_cell(row: Mapping[str, Any]) -> str:
    acc, sigma = number(row.get("test_accuracy")), number(row.get("test_sigma"))
    if acc is None:
        return "—"
    return f"{acc:.4f} ± {sigma:.4f}" if sigma is not None else f"{acc:.4f}"


#: The models table: deployed costs (estimated) and, once synthesis ran, measured counts.
MODEL_COLUMNS: tuple[Column, ...] = (
    Column("model", cell=lambda r: f"**{r['model']}**"),
    Column("test accuracy ± 1σ", cell=_accuracy_cell),
    Column("energy (pJ)", "energy", kind="estimated"),
    Column("size (bits)", "size_bits", kind="estimated"),
    Column("EBOPs", "ebops", kind="estimated"),
    Column("LUT", "lut", kind="estimated"),
    Column("DSP", "dsp", kind="estimated"),
    Column("FF", "ff", kind="estimated"),
    Column("latency (cycles)", "latency_cycles", kind="estimated"),
    Column("latency (ns)", "latency_ns", spec=",.1f", kind="estimated"),
)

#: Synthesis results, read from the firmware report (``hqrun.study.collect.measured_resources``).
MEASURED_COLUMNS: tuple[Column, ...] = (
    Column("LUT", "measured_lut", kind="measured"),
    Column("FF", "measured_ff", kind="measured"),
    Column("DSP", "measured_dsp", kind="measured"),
    Column("latency (cycles)", "measured_latency_cycles", kind="measured"),
)


def auc_columns(class_names: Sequence[str]) -> tuple[Column, ...]:
    return (Column("model", cell=lambda r: f"**{r['model']}**"),
            *(Column(f"AUC {c}", f"auc_{c}", spec=".3f") for c in class_names))


def render_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column],
                 keep_empty: Sequence[str] = ()) -> str:
    """A Markdown table; columns empty in every row are dropped (unless named in keep_empty)."""
    shown = [c for c in columns if c.header in keep_empty or not c.empty(rows)]
    lines = ["| " + " | ".join(c.title() for c in shown) + " |",
             "|" + "---|" * len(shown)]
    for row in rows:
        lines.append("| " + " | ".join(c.render(row) for c in shown) + " |")
    return "\n".join(lines)
