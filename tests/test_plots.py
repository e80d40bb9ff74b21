"""Plots render with every label inside its axes (matplotlib's renderer extents), titles, axis
labels with units and explained legend entries: the study figure, the search's pareto.png and
the sweep plot (issue 18: "BF" clipped at the right border, "QB" over the top one, no title,
raw column names as axis labels, point labels running off the plot)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import hqrun.atomic as atomic
from hqrun.search.learning import learning_floor
from hqrun.search.results import plot_pareto
from hqrun.study.plots import Panel, Point, Series, accuracy_cost_figure
from hqrun.sweep.collect import collect
from hqrun.sweep.jobstatus import write_status


def _texts_inside(fig) -> int:
    """Assert every text lies inside its axes; return how many point labels there are."""
    from matplotlib.text import Annotation

    renderer = fig.canvas.get_renderer()
    n = 0
    for ax in fig.axes:
        box = ax.get_window_extent(renderer)
        for text in ax.texts:
            ext = text.get_window_extent(renderer)
            assert (box.x0 - 0.5 <= ext.x0 and ext.x1 <= box.x1 + 0.5 and box.y0 - 0.5 <= ext.y0
                    and ext.y1 <= box.y1 + 0.5), f"{text.get_text()!r} leaves its axes"
            n += isinstance(text, Annotation)
    return n


def _captured(monkeypatch) -> list:
    figures: list = []
    monkeypatch.setattr(atomic, "savefig", lambda fig, path, **kw: figures.append(fig))
    return figures


def _legend(ax) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def test_study_figure_labels_stay_inside_and_accuracies_never_share_an_axis() -> None:
    # models at the corners of the cost and accuracy ranges, two almost on top of each other
    models = [Series(label, [Point(label, acc, {"energy": e, "size_bits": b}, 0.007)])
              for label, acc, e, b in (("BF", 0.7105, 95516, 72440), ("Q6", 0.7060, 40610, 27270),
                                       ("QE", 0.6965, 21020, 35568), ("QB", 0.6853, 36031, 9008),
                                       ("QB2-long-label", 0.6855, 36500, 9100))]
    trials = [Series("trials that learned (7)", [Point("", 0.6 + 0.01 * i, {"energy": 20000 + 100 * i})
                                                 for i in range(7)], "search", "energy", "dots"),
              Series("Pareto front (2)", [Point("", 0.6, {"energy": 20000}),
                                          Point("", 0.66, {"energy": 20600})], "search", "energy", "line"),
              Series("1 failed to learn (not shown)", [], "search", "energy", "note")]
    panels = {("models", g): Panel(f"built models: test accuracy against {g}", f"{g} (unit, estimated)",
                                   "test accuracy (±1σ binomial)") for g in ("energy", "bits")}
    panels[("search", "energy")] = Panel("search for energy: 8 trials x 4 epochs",
                                         "energy (pJ per inference, re-priced as deployed)",
                                         "validation accuracy after the search's epochs")
    fig = accuracy_cost_figure(models + trials, ["energy", "bits"], panels)
    assert _texts_inside(fig) == 10           # five models, two panels
    top, bottom = fig.axes[:2], fig.axes[2:]
    for ax in fig.axes[:3]:             # the bits search has no panel spec: "nothing to show"
        assert ax.get_title() and "(" in ax.get_xlabel() and "accuracy" in ax.get_ylabel()
    assert all("test" in ax.get_ylabel() for ax in top)
    assert all("validation" in ax.get_ylabel() for ax in bottom[:1])
    assert _legend(bottom[0]) == ["trials that learned (7)", "Pareto front (2)",
                                  "1 failed to learn (not shown)"]
    lo, hi = top[0].get_ylim()
    assert lo > 0.6 and hi < 0.8                # scaled to the models, not to chance


def test_search_pareto_plot_has_title_units_and_explains_what_is_left_out(monkeypatch) -> None:
    figures = _captured(monkeypatch)
    recs = [{"trial_id": f"t{i}", "status": "ok", "accuracy": a, "cost": c}
            for i, (a, c) in enumerate([(0.2, 16000), (0.63, 17700), (0.66, 17800), (0.68, 18100),
                                        (0.34, 17900)])]
    plot_pareto(recs, Path("unused.png"), "energy", {"float reference": (199666, 0.68)},
                learning_floor(np.arange(3200) % 5), "search for energy: 5 trials x 4 epochs", 19168)
    ax = figures[0].axes[0]
    assert ax.get_title() == "search for energy: 5 trials x 4 epochs"
    assert "pJ" in ax.get_xlabel() and "8-bit input" in ax.get_xlabel()
    legend = _legend(ax)
    assert "1 failed to learn (not shown)" in legend and "cost cap 19,168" in legend
    assert any("float reference: 199,666" in t and "off the axis" in t for t in legend)
    assert not any("stressed" in t for t in legend)
    assert ax.get_ylim()[0] > 0.25              # the chance-level trial does not stretch it
    assert ax.get_xlim()[1] < 50000             # nor does the float reference


def test_sweep_plot_has_readable_axes_and_one_label_per_scanned_value(tmp_path: Path,
                                                                      monkeypatch) -> None:
    figures = _captured(monkeypatch)
    n = 0
    for q in (2, 3, 4, 6, 8, 16):
        for seed in (0, 1, 2):
            job = tmp_path / str(n)
            (job / ".hydra").mkdir(parents=True)
            (job / ".hydra" / "overrides.yaml").write_text(f"- quant=q{q}\n- seed={seed}\n")
            (job / "metrics.json").write_text(json.dumps({"test": {"accuracy": 0.6 + q / 200 + seed / 500}}))
            (job / "cost.json").write_text(json.dumps({"totals": {"size_bits": 4500 * q}}))
            write_status(job, "ok")
            n += 1
    collect(tmp_path)
    fig = figures[0]
    ax = fig.axes[0]
    assert ax.get_xlabel() == "size (bits, AutoQKeras count, estimated)"
    assert ax.get_ylabel() == "test accuracy"
    assert "18 of 18 jobs" in ax.get_title() and "seed" in ax.get_title()
    assert sorted(t.get_text() for t in ax.texts) == sorted(f"quant=q{q}" for q in (2, 3, 4, 6, 8, 16))
    assert _texts_inside(fig) == 6


@pytest.mark.parametrize("corner", [(0.99, 1e6), (0.01, 1.0)])
def test_a_lone_point_in_a_corner_keeps_its_label_inside(corner) -> None:
    acc, cost = corner
    fig = accuracy_cost_figure([Series("M", [Point("a model with a long name", acc, {"energy": cost})])],
                               ["energy"], {})
    assert _texts_inside(fig) == 1
