"""The study's accuracy-against-cost figure, drawn from data: a list of :class:`Series`.

Two rows, one column per search goal (each goal has its own cost axis):

- top, **built models**: test accuracy (with its binomial 1σ) against the deployed cost, one
  labelled marker per model; another family of trained models (e.g. a learned-bit-width front)
  is one more ``Series(row="models", style="line")``;
- bottom, **search trials**: validation accuracy after the search's few epochs against the same
  cost, the front highlighted; failed-to-learn trials are counted in the legend, not drawn.

Test and validation accuracy never share an axis. Axes are scaled to the points they show (a
trial at chance no longer stretches the accuracy axis down to 0.2), and every label is placed
where it stays inside its axes (checked with the renderer's extents, tests/test_study_plots.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from hqrun import atomic
from hqrun.plotlabels import place_labels

__all__ = ["Point", "Series", "accuracy_cost_figure", "write_figure"]

_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
           "tab:pink", "tab:olive", "tab:cyan")


@dataclass
class Point:
    label: str                         # written next to the marker ("" for none)
    accuracy: float
    cost: Mapping[str, float]          # by cost-report key: energy, size_bits, ebops
    error: Optional[float] = None      # 1σ of the accuracy


@dataclass
class Series:
    name: str                          # legend entry
    points: list[Point] = field(default_factory=list)
    row: str = "models"                # models (test accuracy) | search (validation accuracy)
    goal: Optional[str] = None         # only in this goal's column (None: every column)
    style: str = "stars"               # stars | dots | line | note (legend text only)
    color: Optional[str] = None


@dataclass
class Panel:
    """Axis wording of one panel: (row, goal) -> title, x label, y label."""

    title: str
    xlabel: str
    ylabel: str


def _limits(values: Sequence[float], log: bool, pad: float) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if log:
        a, b = math.log10(lo), math.log10(hi)
        span = max(b - a, 0.2)
        return 10 ** (a - pad * span), 10 ** (b + pad * span)
    span = max(hi - lo, 0.01)
    return lo - pad * span, hi + pad * span


def _draw_series(ax: Any, series: Series, key: str, color: str) -> list[tuple[float, float, str]]:
    """Draw one series on one panel; return (x, y, label) of the points that carry a label."""
    pts = [p for p in series.points if p.cost.get(key) is not None and p.cost.get(key) > 0]
    if series.style == "note":
        ax.plot([], [], " ", label=series.name)
        return []
    if not pts:
        return []
    xs = [float(p.cost[key]) for p in pts]
    ys = [float(p.accuracy) for p in pts]
    if series.style == "dots":
        ax.scatter(xs, ys, s=14, color=color, label=series.name, zorder=2)
    elif series.style == "line":
        order = sorted(range(len(pts)), key=lambda i: xs[i])
        ax.plot([xs[i] for i in order], [ys[i] for i in order], "-o", color=color, ms=4,
                drawstyle="steps-post", label=series.name, zorder=3)
    else:
        errs = [p.error or 0.0 for p in pts]
        ax.errorbar(xs, ys, yerr=errs, fmt="none", ecolor=color, elinewidth=1, capsize=3,
                    zorder=4)
        # one labelled star per model needs no legend entry; a family of several does
        ax.scatter(xs, ys, marker="*", s=170, color=color, edgecolor="k", linewidth=0.5,
                   label=series.name if len(pts) > 1 else "_nolegend_", zorder=5)
    return [(x, y, p.label) for x, y, p in zip(xs, ys, pts) if p.label]


def accuracy_cost_figure(series: Sequence[Series], goals: Sequence[str],
                         panels: Mapping[tuple[str, str], Panel]) -> Any:
    """The figure (a matplotlib ``Figure`` on the Agg canvas; nothing global is touched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from hqrun.study.collect import GOAL_KEYS

    rows = ["models"] + (["search"] if any(s.row == "search" for s in series) else [])
    fig = Figure(figsize=(6.2 * len(goals), 4.6 * len(rows)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), len(goals), squeeze=False)
    colors: dict[str, str] = {}
    labelled: list[tuple[Any, list]] = []
    for r, row in enumerate(rows):
        for c, goal in enumerate(goals):
            ax = axes[r][c]
            key = GOAL_KEYS.get(goal, goal)
            items: list = []
            xs: list[float] = []
            ys: list[float] = []
            for s in series:
                if s.row != row or (s.goal is not None and s.goal != goal):
                    continue
                color = s.color or colors.setdefault(s.name, _COLORS[len(colors) % len(_COLORS)])
                items += _draw_series(ax, s, key, color)
                for p in s.points:
                    if p.cost.get(key) and p.cost[key] > 0:
                        xs.append(float(p.cost[key]))
                        ys += [p.accuracy - (p.error or 0.0), p.accuracy + (p.error or 0.0)]
            panel = panels.get((row, goal))
            if panel is not None:
                ax.set_title(panel.title, fontsize=10)
                ax.set_xlabel(panel.xlabel)
                ax.set_ylabel(panel.ylabel)
            if xs:
                log = min(xs) > 0 and max(xs) / min(xs) > 3
                if log:
                    ax.set_xscale("log")
                ax.set_xlim(*_limits(xs, log, 0.12))
                ax.set_ylim(*_limits(ys, False, 0.25))
            else:
                ax.text(0.5, 0.5, "nothing to show", transform=ax.transAxes, ha="center")
            ax.grid(alpha=0.3, which="both")
            if ax.get_legend_handles_labels()[0]:   # below the axes: it never hides a point
                ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3,
                          frameon=False)
            labelled.append((ax, items))
    fig.tight_layout()
    renderer = fig.canvas.get_renderer()
    for ax, items in labelled:
        place_labels(ax, renderer, items)
    return fig


def write_figure(fig: Any, path: Path) -> Path:
    atomic.savefig(fig, path, dpi=120)
    return path
