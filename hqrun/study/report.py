"""The study's report: what to deploy, every model's numbers, the accuracy/cost figure, the fronts.

It only reads what the steps left in the study directory (metrics.json, cost.json,
firmware/report.json, each search's trials.csv and search_summary.json, study_config.yaml), so it
can be rebuilt at any time with the same result, and a resumed study ends with the same report
as an uninterrupted one. Reading is :mod:`hqrun.study.collect`; the "Deploy this" section
:mod:`hqrun.study.deploy`; tables :mod:`hqrun.study.tables` and the figure
:mod:`hqrun.study.plots` are driven by data, so a new column (``extra_columns``) or a new family
of models on the figure (``extra_series``) is passed in, not written in here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from hqrun import atomic
from hqrun.study.collect import (GOAL_KEYS, GOAL_UNITS, GOAL_WORDS, ModelResult, SearchResult,
                                 front, load_json, read_model, read_search, repricer,
                                 spread_points)
from hqrun.study.deploy import Recommendation, deploy_markdown, recommend
from hqrun.study.luts import LUT_GOAL, build_columns, lut_panel, lut_section, lut_summary
from hqrun.study.plots import Panel, Point, Series, accuracy_cost_figure, write_figure
from hqrun.study.tables import (MEASURED_COLUMNS, MODEL_COLUMNS, Column, auc_columns, fmt,
                                render_table)

__all__ = ["write_report", "build_series", "model_rows"]


# ----------------------------------------------------------------------------- rows
def _firmware_cell(m: ModelResult) -> str:
    return m.firmware.verdict()


def _epoch_cell(m: ModelResult) -> str:
    t = m.training
    if not t.get("best_epoch"):
        return "—"
    text = f"{t['best_epoch']} of {t.get('epochs_run')}"
    return text + " (still improving)" if t.get("still_improving") else text


def model_rows(models: Sequence[ModelResult]) -> list[dict[str, Any]]:
    """One value dict per model, for :func:`hqrun.study.tables.render_table`."""
    return [{**m.values(), "firmware": _firmware_cell(m), "best_epoch": _epoch_cell(m),
             "what": m.description} for m in models]


#: A goal's cost as a column header.
HEADERS = {"energy": "energy (pJ)", "bits": "size (bits)", "ebops": "EBOPs", "lut": "LUT (RTL)"}

#: The models table's columns after the numeric ones.
_TAIL_COLUMNS = (Column("best epoch", cell=lambda r: r["best_epoch"]),
                 Column("firmware", cell=lambda r: r["firmware"]))


# ----------------------------------------------------------------------------- figure
def _point_cost(m: ModelResult) -> dict[str, Any]:
    """A built model's costs by figure column: the deployed estimate, and measured LUTs."""
    lut = m.synthesis_counts().get("lut")
    return {**m.cost, **({LUT_GOAL: lut} if lut is not None else {})}


def build_series(models: Sequence[ModelResult], searches: Sequence[SearchResult]) -> list[Series]:
    """The figure's data: one series per built model (top row) and, per search, its learned
    trials and front (bottom row)."""
    series = [Series(m.label, [Point(m.label, m.test_accuracy, _point_cost(m), m.sigma)], "models")
              for m in models if m.test_accuracy is not None]
    for s in searches:
        key = GOAL_KEYS.get(s.goal, s.goal)
        learned = [t for t in s.learned if t.cost.get(key)]
        series.append(Series(f"trials that learned ({len(learned)})",
                             [Point("", t.accuracy, t.cost) for t in learned], "search", s.goal,
                             "dots", "0.6"))
        points = front(s.trials, s.goal)
        series.append(Series(f"Pareto front ({len(points)})",
                             [Point("", t.accuracy, t.cost) for t in points], "search", s.goal,
                             "line", "tab:red"))
        if s.n_failed_to_learn:
            series.append(Series(f"{s.n_failed_to_learn} failed to learn (not shown)", [],
                                 "search", s.goal, "note"))
    return series


def _panels(goals: Sequence[str], searches: dict[str, SearchResult]) -> dict:
    panels = {}
    for goal in goals:
        word, unit = GOAL_WORDS.get(goal, goal), GOAL_UNITS.get(goal, goal)
        panels[("models", goal)] = Panel(
            f"built models: test accuracy against {word}", f"{word} ({unit}, estimated as deployed)",
            "test accuracy (±1σ binomial)")
        s = searches.get(goal)
        if s is not None:
            how = "re-priced as deployed" if s.repriced else "as the search priced it"
            epochs = f" x {s.epochs} epochs" if s.epochs else ""
            panels[("search", goal)] = Panel(
                f"search for {word}: {s.n_finished} trials{epochs}",
                f"{word} ({unit}, {how})", "validation accuracy after the search's epochs")
    return panels


# ----------------------------------------------------------------------------- sections
def _repricing_growth(s: SearchResult) -> str:
    """How much dearer the deployed pricing is than the search's, over the learned trials
    ("9-10 %"); empty when the two agree (size in bits does not depend on the input type)."""
    key = GOAL_KEYS.get(s.goal, s.goal)
    ratios = [t.cost[key] / t.search_cost for t in s.learned
              if s.repriced and t.search_cost and t.cost.get(key)]
    if not ratios or max(abs(r - 1.0) for r in ratios) < 0.005:
        return ""
    lo, hi = 100 * (min(ratios) - 1), 100 * (max(ratios) - 1)
    return f"{lo:.0f} %" if round(lo) == round(hi) else f"{lo:.0f}-{hi:.0f} %"


def _front_section(s: SearchResult, pareto_points: int, chosen_trial: Optional[str],
                   filled: bool = False) -> list[str]:
    key = GOAL_KEYS.get(s.goal, s.goal)
    word = GOAL_WORDS.get(s.goal, s.goal)
    points = spread_points(front(s.trials, s.goal), s.goal, pareto_points)
    sweep = s.label == "LB"   # the learned-bits β sweep journals candidates (front epochs)
    head = [f"### Learned bit widths: β sweep ({s.label}), in {word}" if sweep
            else f"### Search for {word} ({s.label})", ""]
    facts = [(f"{s.n_finished} candidates (the Pareto epochs of its β trainings"
              + (f", {s.epochs} epochs each)" if s.epochs else ")") if sweep else
              f"{s.n_finished} trials" + (f" of {s.epochs} epochs each" if s.epochs else ""))
             + (f", search seed {s.seed}" if s.seed is not None else "")
             + (f", every trial under the cap of {s.cap:,.0f} {GOAL_UNITS.get(s.goal, s.goal)} as "
                "the search prices it" if s.cap is not None else "") + "."]
    if s.n_failed_to_learn:
        n = s.n_failed_to_learn
        facts.append(f"{n} trial{'s' if n > 1 else ''} failed to learn ({s.floor_rule}) and "
                     f"{'are' if n > 1 else 'is'} left out.")
    growth = _repricing_growth(s)
    if growth:
        facts.append(f"Costs here are re-priced as deployed (the firmware's input type), "
                     f"{growth} above what the search computed with QTools's 8-bit input"
                     + (" (its cap applies to the search's numbers)." if s.cap is not None else "."))
    if not points:
        return head + [" ".join(facts), "", "(no trial learned anything)", ""]
    facts.append(f"The front's {len(points)} points across its cost range, most accurate last:")
    other = "size_bits" if key == "energy" else "energy"
    cols = [Column("point", cell=lambda r: r["point"]),
            Column("validation accuracy", "accuracy", spec=".4f"),
            Column(HEADERS.get(s.goal, word), key, kind="estimated"),
            Column("energy (pJ)" if other == "energy" else "size (bits)", other,
                   kind="estimated"),
            Column("trial", cell=lambda r: f"`{r['trial']}`"),
            Column("became", cell=lambda r: r["became"])]
    became = f"**{s.label}**" + (" (parameters raised to the cap, retrained)" if filled
                                  else " (retrained)")
    rows = [{"point": f"{s.label}-p{i}", "accuracy": t.accuracy, **t.cost, "trial": t.trial_id,
             "became": became if t.trial_id == chosen_trial else ""}
            for i, t in enumerate(points, 1)]
    return head + [" ".join(facts), "", render_table(rows, cols, keep_empty=("became",)), ""]


def _chosen_trial(directory: Path) -> Optional[str]:
    """The search trial a model was retrained from (its candidates.json's chosen row)."""
    path = directory / "candidates.json"
    if not path.exists():
        return None
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    chosen = next((r for r in rows if isinstance(r, dict) and r.get("chosen")), None)
    return chosen.get("trial_id") if chosen else None


def _winner_trial(s: SearchResult, model: Optional[ModelResult]) -> Optional[str]:
    """The trial whose plan the model was trained with (when no candidates.json says)."""
    if model is None:
        return None
    chosen = _chosen_trial(model.directory)
    if chosen:
        return chosen
    want = _plan_content(model.plan)
    return next((t.trial_id for t in s.trials if _plan_content(t.plan) == want), None)


def _plan_content(plan: dict) -> dict:
    """What a plan quantizes, without its name or empty slots (a plan file writes every slot)."""
    def slots(entry: Any) -> dict:
        return {k: v for k, v in (entry or {}).items() if v is not None}

    return {"input": plan.get("input"), "default": slots(plan.get("default")),
            "layers": {name: slots(e) for name, e in (plan.get("layers") or {}).items()
                       if slots(e)}}


def candidates_markdown(models: list[tuple[str, Path]]) -> list[str]:
    """One table per model chosen among several full trainings (candidates and/or restarts)."""
    out: list[str] = []
    for label, d in models:
        path = d / "candidates.json"
        if not path.exists():
            continue
        rows = json.loads(path.read_text())
        out += [f"### {label}: trainings compared, chosen on validation accuracy", "",
                "| candidate | training seed | trial | search accuracy (val) "
                "| search cost (QTools's 8-bit-input convention) "
                "| retrained val accuracy | test accuracy | chosen |",
                "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            out.append(f"| c{r['candidate']} | {r.get('seed', '')} | {r.get('trial_id') or '-'} "
                       f"| {fmt(r.get('search_accuracy'), '.4f')} "
                       f"| {_cost_cell(r)} | {fmt(r.get('val_accuracy'), '.4f')} "
                       f"| {fmt(r.get('test_accuracy'), '.4f')} | {'yes' if r.get('chosen') else ''} |")
        out.append("")
    return out


def _cost_cell(row: dict) -> str:
    """The cost a candidate trained at; 'trial -> filled' when study.fill_to_cap raised it."""
    trial, cost = row.get("trial_cost"), row.get("cost")
    if fmt(trial) != "—" and fmt(cost) != "—" and float(trial) != float(cost):
        return f"{fmt(trial)} → {fmt(cost)} (filled)"
    return fmt(cost)


def _filled(models: list[tuple[str, Path]]) -> list[str]:
    """Labels whose candidates study.fill_to_cap raised to the cap."""
    out = []
    for label, d in models:
        rows = load_json_list(d / "candidates.json")
        if any(r.get("trial_cost") is not None and r.get("cost") is not None
               and float(r["trial_cost"]) != float(r["cost"]) for r in rows):
            out.append(label)
    return out


def load_json_list(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text()) if path.exists() else []
    except (OSError, ValueError):
        return []
    return [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []


def quantizer_table(models: Sequence[ModelResult]) -> str:
    """The paper's table of chosen quantizers: one column per searched model, one row per slot."""
    searched = [m for m in models if m.goal and m.plan]
    if not searched:
        return "(no searched model)"
    slots: list[tuple[str, str]] = []
    for m in searched:
        for layer, entry in (m.plan.get("layers") or {}).items():
            for slot in ("kernel", "bias", "activation"):
                if (entry or {}).get(slot) is not None and (layer, slot) not in slots:
                    slots.append((layer, slot))
    lines = ["| layer | slot | " + " | ".join(m.label for m in searched) + " |",
             "|---|---|" + "---|" * len(searched)]
    for layer, slot in slots:
        cells = []
        for m in searched:
            entry = (m.plan.get("layers") or {}).get(layer) or {}
            value = entry.get(slot, (m.plan.get("default") or {}).get(slot))
            cells.append(f"`{value}`" if value else "float")
        lines.append(f"| {layer} | {slot} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _reading_notes(models: Sequence[ModelResult], searches: Sequence[SearchResult]) -> list[str]:
    from hqrun.cost.deployed import describe_basis

    basis = next((m.cost_basis for m in models if m.cost_basis), None)
    n_test = next((m.n_test for m in models if m.n_test), None)
    measured = any(m.synthesis_counts() for m in models)
    lines = ["## How to read these numbers", ""]
    if n_test:
        lines.append(f"- **Accuracy** of a model is on the {n_test:,} jets of the test split; "
                     "± is one binomial standard deviation, sqrt(p(1-p)/n). Two models whose "
                     "accuracies differ by less than that are indistinguishable on this test set.")
    lines.append("- **Costs are estimated** (hqrun.cost's formulas: QTools's energy model, "
                 "AutoQKeras's bit count, an hls4ml-style resource and latency estimate; "
                 "docs/cost.md gives how far the estimate is from synthesis) unless a column says "
                 "*measured* (synthesis of the firmware). "
                 + ("Measured columns come from the firmware reports." if measured else
                    "No synthesis was run, so nothing here is measured yet."))
    if basis:
        lines.append(f"- Each model's cost is its deployed cost, {describe_basis(basis)}: the "
                     "same numbers as its `cost.json` and its firmware report.")
    lines.append("- **BF** is the float model; firmware cannot run floats, so its row describes "
                 "the firmware actually built: its weights post-training quantized to the "
                 "paper's BF precision, with that model's own test accuracy.")
    if searches:
        s = searches[0]
        lines.append("- **Search trials** are short trainings (validation accuracy after a few "
                     "epochs, not comparable to a model's test accuracy); for this report their "
                     "plans are re-priced as deployed. The searches themselves ranked them by "
                     "QTools's convention (8-bit model input, the paper's metric), in "
                     "`search_<goal>/trials.csv`, and caps apply to that convention.")
        if s.floor_rule:
            lines.append(f"- A trial **failed to learn** ({s.floor_rule}): it guesses, and is "
                         "never a front point or a candidate.")
    lines.append("- **Bit-exact** means the firmware's simulation gives the PyTorch model's "
                 "output bit for bit on every verified test sample (up to the logits; the output "
                 "softmax is a lookup table in firmware).")
    return lines + [""]


# ----------------------------------------------------------------------------- the report
def _searched_description(m: ModelResult, cap: Optional[float], filled: bool,
                          from_float: bool) -> str:
    word = GOAL_WORDS.get(m.goal, m.goal)
    text = f"the {word} search's choice"
    if cap is not None:
        text += f" under its cap of {cap:,.0f} {GOAL_UNITS.get(m.goal, m.goal)} (as the search prices it)"
    if filled:
        text += ", kernels and biases then raised to the cap"
    return text + (", retrained in full from the float model's weights" if from_float
                   else ", retrained in full")


def _study_config(study_dir: Path) -> dict:
    path = study_dir / "study_config.yaml"
    try:
        data = yaml.safe_load(path.read_text()) if path.exists() else {}
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _data_line(study_dir: Path, models: Sequence[ModelResult], cfg: dict) -> str:
    data = load_json(models[0].directory / "metrics.json").get("data", {}) if models else {}
    name = (cfg.get("data") or {}).get("name", data.get("source", "?"))
    model = (cfg.get("model") or {}).get("name", "?")
    if not data:
        return f"Model `{model}`, data `{name}`."
    return (f"Model `{model}` on `{name}`: {data.get('n_train', 0):,} training, "
            f"{data.get('n_val', 0):,} validation and {data.get('n_test', 0):,} test samples, "
            f"classes {', '.join(data.get('class_names', []))}.")


def write_report(study_dir: Path, models: list[tuple[str, Path]], searches: dict[str, Path],
                 class_names: list[str], pareto_points: int, command: str, *,
                 extra_columns: Sequence[Column] = (), extra_series: Sequence[Series] = (),
                 extra_backends: Sequence[str] = ()) -> Path:
    """Write ``report.md``, ``report.json``, ``pareto.png`` and ``roc_<model>.png``.

    ``extra_columns`` are appended to the models table (a column with no value in any row is
    not shown); ``extra_series`` are drawn on the figure (``row="models"`` for trained families,
    ``row="search"`` with a ``goal`` for trials). ``extra_backends``: the firmware backends
    built after the first (``study.backends[1:]``, in ``<model>/firmware_<backend>``); their
    synthesis fills the measured columns, a LUT section and the figure's LUT column.
    """
    from hqrun.study.steps import GOAL_LABELS

    cfg = _study_config(study_dir)
    goals = [str(g) for g in searches]
    label_goal = {GOAL_LABELS.get(g, g): g for g in goals}
    results = [read_model(label, d, label_goal.get(label), extra_backends) for label, d in models
               if (d / "metrics.json").exists()]
    filled = _filled(models)
    caps = ((cfg.get("study") or {}).get("max_cost") or {})
    for m in results:
        if m.goal:
            m.description = _searched_description(m, caps.get(m.goal), m.label in filled,
                                                  bool((cfg.get("study") or {}).get("init_from_float", True)))
    reprice = repricer(cfg) if cfg.get("model") else None
    from hqrun.study.learned import SEARCH_DIR

    found = [read_search(g, "LB" if Path(d).name == SEARCH_DIR else GOAL_LABELS.get(g, g), d,
                         caps.get(g), reprice)
             for g, d in searches.items() if (d / "trials.csv").exists()]
    by_goal = {s.goal: s for s in found}
    recs: list[Recommendation] = [r for r in (recommend(g, results) for g in goals) if r]

    series = build_series(results, found) + list(extra_series)
    plot = None
    panels = _panels(goals, by_goal)
    columns_shown = list(goals)
    if any(LUT_GOAL in p.cost for s in series for p in s.points):   # synthesis measured LUTs
        columns_shown.append(LUT_GOAL)
        panels[("models", LUT_GOAL)] = lut_panel()
    if results and columns_shown:
        plot = write_figure(accuracy_cost_figure(series, columns_shown, panels),
                            study_dir / "pareto.png")
    roc_lines = []
    for label, d in models:
        if (d / "roc.png").exists():
            atomic.write_bytes(study_dir / f"roc_{label}.png", (d / "roc.png").read_bytes())
            roc_lines.append(f"![ROC {label}](roc_{label}.png)")

    rows = model_rows(results)
    columns = (*MODEL_COLUMNS, *MEASURED_COLUMNS, *build_columns(extra_backends), *extra_columns,
               *_TAIL_COLUMNS)
    n_exact = sum(1 for m in results if m.deployed_build().bit_exact)
    n_built = sum(1 for m in results
                  if any(fw.built or fw.error for fw in (m.firmware, *m.builds.values())))
    text = [
        "# hqrun study report", "",
        _data_line(study_dir, results, cfg), "",
        f"Command: `{command}`", "",
        *deploy_markdown(recs, results, study_dir),
        "## The models", "",
        render_table(rows, columns), "",
        *[f"- **{r['model']}**: {r['what']}" for r in rows],
        "",
        f"Firmware: {n_exact} of {n_built} built models bit-exact in the build they deploy with "
        "(simulation equals the PyTorch model on every verified test sample; a model that "
        "hls4ml refuses, e.g. per-element learned widths, deploys as its RTL build).", "",
        "## Accuracy against cost", "",
        "![accuracy against cost](pareto.png)" if plot else "(no model to plot)", "",
        "Top: the built models (test accuracy, ±1σ). Bottom: each search's trials (validation "
        "accuracy after the search's few epochs) and their Pareto front; trials that failed to "
        "learn are counted in the legend, not drawn."
        + (" Right-most top panel: the same models against the LUTs synthesis measured."
           if plot and any(m.synthesis_counts().get("lut") is not None for m in results) else ""), "",
        *lut_section(results, extra_backends),
        "## Search fronts", "",
    ]
    for s in found:
        model = next((m for m in results if m.goal == s.goal), None)
        text += _front_section(s, pareto_points, _winner_trial(s, model),
                               s.label in filled)
    if not found:
        text += ["(no finished search)", ""]
    text += ["## Quantizers of the searched models, as trained", ""]
    if filled:
        text += [f"({', '.join(filled)}: the search's choice with kernels and biases raised to "
                 "the cost cap by study.fill_to_cap; activations as the search chose.)", ""]
    text += [quantizer_table(results), ""]
    comparisons = candidates_markdown(models)
    if comparisons:
        text += ["## Trainings compared", "", *comparisons]
    if class_names:
        text += ["## Per-class ROC AUC (test split)", "",
                 render_table(rows, auc_columns(class_names)), "", *roc_lines, ""]
    text += _reading_notes(results, found)
    path = study_dir / "report.md"
    atomic.write_text(path, "\n".join(text))
    atomic.write_json(study_dir / "report.json",
                      {**_summary(results, found, recs, pareto_points), "luts": lut_summary(results)},
                      default=str)
    return path


def _summary(models: Sequence[ModelResult], searches: Sequence[SearchResult],
             recs: Sequence[Recommendation], pareto_points: int) -> dict:
    """report.json: the same numbers as report.md, for scripts."""
    return {
        "models": [{"label": m.label, "dir": str(m.directory), "description": m.description,
                    "accuracy": m.test_accuracy, "accuracy_sigma": m.sigma, "n_test": m.n_test,
                    "float_accuracy": m.float_accuracy, "cost": m.cost, "cost_basis": m.cost_basis,
                    "measured": m.synthesis_counts(),
                    "bit_exact": m.deployed_build().bit_exact,   # in the build it deploys with
                    "builds": {b: {"bit_exact": fw.bit_exact, "error": fw.error or None,
                                   "measured": fw.measured, "synthesis_s": fw.synthesis_seconds,
                                   "simulator": fw.simulator or None}
                               for b, fw in m.builds.items()},
                    "firmware_project": (str(m.deployed_build().project_dir)
                                         if m.deployed_build().project_dir else None),
                    "training": m.training} for m in models],
        "deploy": {r.goal: {"model": r.model.label, "reason": r.reason} for r in recs},
        "fronts": {s.goal: [{"trial_id": t.trial_id, "val_accuracy": t.accuracy, "cost": t.cost}
                            for t in spread_points(front(s.trials, s.goal), s.goal, pareto_points)]
                   for s in searches},
        "searches": {s.goal: {"seed": s.seed, "trials": s.n_finished,
                              "failed_to_learn": s.n_failed_to_learn, "rule": s.floor_rule}
                     for s in searches},
    }
