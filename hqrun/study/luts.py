"""The study report's LUT view: measured (synthesis) LUTs of every built model, which model is
the cheapest in LUTs at each accuracy, and the columns and figure panel that show them.

Why a module of its own: an FPGA user asks "how many LUTs at what accuracy", which the energy
and bit goals do not answer (QTools's energy winner is not the LUT winner). The numbers come from
the firmware reports the study's backends wrote (``study.backends=[hls4ml,rtl]``: Yosys
``synth_xilinx`` counts of the RTL build, in ``<model>/firmware_rtl/report.json``), read by
:mod:`hqrun.study.collect`; nothing here prices or synthesises anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from hqrun.study.collect import ModelResult, number
from hqrun.study.plots import Panel
from hqrun.study.tables import Column, fmt

__all__ = ["LUT_GOAL", "LutPoint", "lut_points", "cheapest_by_accuracy", "build_columns",
           "lut_panel", "lut_section", "lut_summary"]

#: The figure column of the built models against measured LUTs (a column key, not a search goal).
LUT_GOAL = "measured_lut"


@dataclass(frozen=True)
class LutPoint:
    """One synthesised model: its test accuracy (±1σ) and its measured LUTs and FFs."""

    label: str
    accuracy: float
    sigma: Optional[float]
    lut: float
    ff: Optional[float]
    tool: str
    seconds: Optional[float]
    estimate: Optional[float]      # hqrun.cost's calibrated LUT estimate of the same build


def lut_points(models: Sequence[ModelResult]) -> list[LutPoint]:
    """The models with a finished synthesis and a test accuracy, cheapest first."""
    out = []
    for m in models:
        fw = m.synthesised_build()
        if fw is None or fw.measured.get("lut") is None or m.test_accuracy is None:
            continue
        measured, seconds = fw.measured, fw.synthesis_seconds
        out.append(LutPoint(m.label, m.test_accuracy, m.sigma, float(measured["lut"]),
                            number(measured.get("ff")), str(measured.get("tool") or "synthesis"),
                            seconds, number(m.cost.get("lut"))))
    return sorted(out, key=lambda p: (p.lut, -p.accuracy))


def cheapest_by_accuracy(points: Sequence[LutPoint]) -> list[LutPoint]:
    """The LUT front: each model that is more accurate than every model with fewer LUTs.

    Read from the cheapest up, each entry is the cheapest model in LUTs reaching its accuracy:
    any accuracy between two entries' costs the LUTs of the upper one.
    """
    front: list[LutPoint] = []
    for p in sorted(points, key=lambda q: (q.lut, -q.accuracy)):
        if not front or p.accuracy > front[-1].accuracy:
            front.append(p)
    return front


def build_columns(backends: Sequence[str]) -> tuple[Column, ...]:
    """Models-table columns of the further backends' builds: bit-exact / refused, and the
    synthesis time (their LUT/FF fill the table's *measured* columns)."""
    cols: list[Column] = []
    for b in backends:
        cols.append(Column(f"{b} firmware", cell=lambda r, b=b: r.get(f"{b}_firmware") or "—"))
        cols.append(Column(f"{b} synthesis (s)", f"{b}_synthesis_s", spec=",.0f", kind="measured"))
    return tuple(cols)


def lut_panel() -> Panel:
    return Panel("built models: test accuracy against LUTs (synthesis)",
                 "LUTs (measured: synthesis of the firmware)", "test accuracy (±1σ binomial)")


def _error(p: LutPoint) -> str:
    if p.estimate is None or p.lut <= 0:
        return ""
    return f"; hqrun.cost estimated {p.estimate:,.0f} ({(p.estimate - p.lut) / p.lut:+.0%})"


def lut_section(models: Sequence[ModelResult], backends: Sequence[str]) -> list[str]:
    """Markdown lines: each synthesised model's LUTs, and the cheapest model at each accuracy."""
    points = lut_points(models)
    if not points:
        if not backends:
            return []
        return ["## LUTs (synthesis)", "", f"No model of {', '.join(backends)} was synthesised "
                "(the synthesis tool is missing, timed out or firmware.synthesize=never); the "
                "LUT columns above are estimates.", ""]
    tool = points[0].tool
    lines = ["## LUTs (synthesis)", "",
             f"Measured by {tool} on the firmware each model deploys (RTL: alkaid's distributed "
             "arithmetic, no DSPs; LUT and FF counts, no timing, so no Fmax claim). Cheapest "
             "first:", ""]
    for p in points:
        secs = f", synthesised in {p.seconds:,.0f} s" if p.seconds is not None else ""
        ff = f", {fmt(p.ff)} FF" if p.ff is not None else ""
        lines.append(f"- **{p.label}**: {p.lut:,.0f} LUT{ff}{secs}; test accuracy "
                     f"{p.accuracy:.4f}" + (f" ± {p.sigma:.4f}" if p.sigma else "") + _error(p))
    front = cheapest_by_accuracy(points)
    lines += ["", "**Cheapest in LUTs at each accuracy** (for a required test accuracy, the first "
              "entry that reaches it):", ""]
    lower = None
    for p in front:
        span = (f"test accuracy up to {p.accuracy:.4f}" if lower is None else
                f"test accuracy above {lower:.4f}, up to {p.accuracy:.4f}")
        lines.append(f"- {span}: **{p.label}**, {p.lut:,.0f} LUT")
        lower = p.accuracy
    dominated = [p.label for p in points if p not in front]
    if dominated:
        lines.append(f"- not cheapest at any accuracy: {', '.join(dominated)} (another model is "
                     "at least as accurate with fewer LUTs)")
    close = [(a, b) for a, b in zip(front, front[1:])
             if a.sigma and b.sigma and b.accuracy - a.accuracy < max(a.sigma, b.sigma)]
    for a, b in close:
        lines.append(f"- {b.label} is more accurate than {a.label} by less than 1σ: on this test "
                     f"set they are indistinguishable, and {a.label} costs "
                     f"{b.lut - a.lut:,.0f} fewer LUTs")
    return lines + [""]


def lut_summary(models: Sequence[ModelResult]) -> dict[str, Any]:
    """The LUT view as data for report.json."""
    points = lut_points(models)
    return {"models": [{"model": p.label, "lut": p.lut, "ff": p.ff, "tool": p.tool,
                        "seconds": p.seconds, "test_accuracy": p.accuracy, "estimate": p.estimate}
                       for p in points],
            "cheapest_by_accuracy": [p.label for p in cheapest_by_accuracy(points)]}
