"""Search artefacts in the run dir: trials.csv, pareto.png, winner.yaml, front/, leaderboard.

Everything here is derived from the journal, so the artefacts can be rebuilt at any time
(also after a crash) and always agree with each other.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Sequence

from hqrun import atomic
from hqrun.search.learning import LearningFloor
from hqrun.search.objectives import GOAL_UNITS
from hqrun.search.pareto import pareto_front
from hqrun.search.ranking import best_record

CSV_FIELDS = ("trial_id", "block", "status", "learned", "accuracy", "cost", "score", "epochs",
              "time", "cost_bits", "cost_energy", "cost_ebops", "cost_lut", "pareto", "plan", "widths",
              "config", "error")



def learned_records(records: Sequence[dict], floor: LearningFloor | None) -> list[dict]:
    """Finished trials that learned something (above ``floor``; every finished one without)."""
    ok = [r for r in records if r["status"] in ("ok", "stopped") and r.get("accuracy") is not None
          and r.get("cost") is not None]
    return ok if floor is None else [r for r in ok if floor.learned(r.get("accuracy"))]


def front_records(records: Sequence[dict], floor: LearningFloor | None = None) -> list[dict]:
    """Trials on the accuracy/cost Pareto front, cheapest first; failed-to-learn trials (at or
    near chance, see :mod:`hqrun.search.learning`) are never front points."""
    ok = learned_records(records, floor)
    idx = pareto_front([(float(r["accuracy"]), float(r["cost"])) for r in ok])
    return [ok[i] for i in idx]


def _learned_cell(record: dict, floor: LearningFloor | None) -> Any:
    if record["status"] not in ("ok", "stopped") or floor is None:
        return ""
    return floor.learned(record.get("accuracy"))


def write_trials_csv(records: Sequence[dict], path: Path,
                     floor: LearningFloor | None = None) -> None:
    front = {r["trial_id"] for r in front_records(records, floor)}
    fh = io.StringIO(newline="")
    w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
    w.writeheader()
    for r in records:
        costs = r.get("costs") or {}
        w.writerow({
            "trial_id": r["trial_id"], "block": r.get("block"), "status": r["status"],
            "learned": _learned_cell(r, floor), "accuracy": r.get("accuracy"), "cost": r.get("cost"), "score": r.get("score"),
            "epochs": r.get("epochs"), "time": r.get("time"),
            "cost_bits": costs.get("bits"), "cost_energy": costs.get("energy"),
            "cost_ebops": costs.get("ebops"), "cost_lut": costs.get("lut"),
            "pareto": r["trial_id"] in front,
            "plan": json.dumps(r.get("plan"), sort_keys=True),
            "widths": json.dumps(r.get("widths") or {}, sort_keys=True),
            "config": json.dumps(r.get("config"), sort_keys=True), "error": r.get("error"),
        })
    atomic.write_text(path, fh.getvalue())


def write_plan(plan: dict, path: Path, name: str, widths: dict | None = None) -> None:
    """Write a plan YAML that hqrun.models.load_plan (``hqrun train plan=<file>``) reads as it is.

    Width multipliers are not part of a plan; when the winner was resized they go to a
    sibling ``<name>.model.yaml`` holding the ``model.width_multiplier`` override.
    """
    import yaml

    from hqrun.search.space import _natural

    layers = plan.get("layers") or {}
    out = {"name": name, "input": plan.get("input"),
           "default": {s: (plan.get("default") or {}).get(s) for s in ("kernel", "bias", "activation")},
           "layers": {k: dict(layers[k]) for k in sorted(layers, key=_natural)}}
    from hqrun.models.penalty import PENALTY_KEYS

    # a learned-bits plan keeps its cost penalty: `hqrun train plan=<file>` trains it again
    out.update({k: plan[k] for k in PENALTY_KEYS if plan.get(k) is not None})
    atomic.write_text(path, yaml.safe_dump(out, sort_keys=False, default_flow_style=False))
    if widths:
        atomic.write_text(path.with_suffix(".model.yaml"),
                          yaml.safe_dump({"width_multiplier": dict(widths)}, sort_keys=False))


def plot_pareto(records: Sequence[dict], path: Path, goal: str, references: dict[str, tuple],
                floor: LearningFloor | None = None, title: str = "",
                cap: float | None = None) -> None:
    """All trials (grey), the front (stepped), reference models as markers, the cap as a line.

    Failed-to-learn trials are left out (the legend counts them), so the y-axis spans the
    trials that learned; the axis labels say what the numbers are: validation accuracy after
    the search's epochs, and the cost as the search priced it.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    finished = [r for r in records if r["status"] in ("ok", "stopped") and r.get("cost")]
    ok = learned_records(finished, floor)
    front = front_records(records, floor)
    fig = Figure(figsize=(6.4, 5.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if ok:
        ax.scatter([r["cost"] for r in ok], [r["accuracy"] for r in ok], s=14, c="0.65",
                   label=f"trials ({len(ok)})")
    if front:
        ax.plot([r["cost"] for r in front], [r["accuracy"] for r in front], "-o", c="tab:red",
                ms=5, drawstyle="steps-post", label=f"Pareto front ({len(front)})")
    dead = len(finished) - len(ok)
    if dead:   # an empty handle: the count is in the legend, the points are not drawn
        ax.plot([], [], " ", label=f"{dead} failed to learn (not shown)")
    markers = iter("s^DvP*")
    costs = [r["cost"] for r in ok]
    for name, (cost, acc) in references.items():
        if cost is None or not (cost > 0):
            continue
        if costs and not min(costs) / 3 <= cost <= max(costs) * 3:
            # far off the trials (a capped search): a marker there would squeeze them into a
            # sliver, so the reference is named in the legend instead
            what = f"{name}: {cost:,.0f}" + (f", val acc {acc:.4f}" if acc is not None else "")
            ax.plot([], [], " ", label=f"{what} (off the axis)")
            continue
        if acc is None:     # a cost without a model: a vertical line
            ax.axvline(cost, ls="--", lw=1, c="0.4", label=name)
            continue
        ax.scatter([cost], [acc], marker=next(markers, "X"), s=60, edgecolor="k", zorder=5,
                   label=name)
    if cap is not None and cap > 0:
        ax.axvline(cap, ls=":", lw=1.2, c="tab:purple", label=f"cost cap {cap:,.0f}")
    ax.set_xlabel(GOAL_UNITS.get(goal, goal) + ", as the search prices it (8-bit input)")
    ax.set_ylabel("validation accuracy (best epoch of a trial)")
    ax.set_title(title or f"search for {goal}")
    if ok and min(costs) > 0 and max(costs) / min(costs) > 3:
        ax.set_xscale("log")
    ax.margins(x=0.08, y=0.1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2,
              frameon=False)   # below the axes: it never hides a trial
    fig.tight_layout()
    atomic.savefig(fig, path, dpi=120)


def leaderboard(records: Sequence[dict], top: int = 10, goal: str = "cost",
                floor: LearningFloor | None = None) -> str:
    ok = sorted((r for r in records if r["status"] in ("ok", "stopped")
                 and r.get("score") is not None and math.isfinite(r["score"])),
                key=lambda r: -r["score"])[:top]
    failed = sum(r["status"] == "failed" for r in records)
    front = {r["trial_id"] for r in front_records(records, floor)}
    finished = [r for r in records if r["status"] in ("ok", "stopped")]
    dead = len(finished) - len(learned_records(finished, floor))
    lines = [f"{'rank':>4}  {'score':>7}  {'accuracy':>8}  {goal:>12}  {'epochs':>6}  pareto  trial",
             "-" * 72]
    for i, r in enumerate(ok, start=1):
        mark = "  *   " if r["trial_id"] in front else "      "
        note = "  (failed to learn)" if floor is not None and not floor.learned(r["accuracy"]) else ""
        lines.append(f"{i:>4}  {r['score']:7.4f}  {r['accuracy']:8.4f}  {r['cost']:12.5g}  "
                     f"{r.get('epochs', 0):>6}  {mark}  {r['trial_id']}{note}")
    lines.append(f"{len(records)} trials: {len(records) - failed} finished, {failed} failed, "
                 f"{dead} failed to learn; {len(front)} on the Pareto front")
    if dead and floor is not None:
        lines.append(f"failed to learn: {floor.describe()}; never a front point")
    lines.append(f"accuracy: validation, best epoch of each trial; {goal}: "
                 f"{GOAL_UNITS.get(goal, goal)} as the search prices it (QTools's 8-bit input "
                 "convention; trained models are priced as deployed in their cost.json)")
    return "\n".join(lines)


def write_results(outcome: Any, goal: str, objective: str = "forgiving", *,
                  floor: LearningFloor | None = None, stress: float = 1.0,
                  cap: float | None = None, epochs: int | None = None) -> dict:
    """Write trials.csv, pareto.png, winner.yaml and front/*.yaml; return what was written.

    ``floor``: trials at or below it failed to learn; they are marked in trials.csv, left off
    the front and the plot, and win only when no trial learned.
    """
    run_dir = Path(outcome.run_dir)
    records = outcome.records
    write_trials_csv(records, run_dir / "trials.csv", floor)
    written: dict[str, Any] = {"trials_csv": str(run_dir / "trials.csv")}
    ref = outcome.reference
    refs: dict[str, tuple] = {"float reference": (ref.cost.get(goal) if ref.cost else None,
                                                  ref.accuracy)}
    if stress != 1.0:   # the forgiving factor's reference; at stress 1 it is the float model's
        refs[f"forgiving-factor reference (float x {stress:g})"] = (outcome.reference_cost, None)
    n_done = sum(r["status"] in ("ok", "stopped") for r in records)
    title = f"search for {goal}: {n_done} trials" + (f" x {epochs} epochs" if epochs else "")
    plot_pareto(records, run_dir / "pareto.png", goal, refs, floor, title, cap)
    written["pareto_png"] = str(run_dir / "pareto.png")
    final = getattr(outcome, "final_block", None)
    # block scheduler: the winner is the last block's best (earlier blocks are frozen in it)
    pool = [r for r in records if r.get("block") == final] if final is not None else records
    learned = [r for r in pool if r["status"] not in ("ok", "stopped") or floor is None
               or floor.learned(r.get("accuracy"))]
    best = best_record(learned) or best_record(pool)
    if best is not None:
        write_plan(best["plan"], run_dir / "winner.yaml", "winner", best.get("widths"))
        written["winner"] = best
    front = front_records(records, floor)
    if front:
        fdir = run_dir / "front"
        fdir.mkdir(exist_ok=True)
        for i, r in enumerate(front):
            write_plan(r["plan"], fdir / f"point_{i:02d}.yaml", f"front_{i:02d}", r.get("widths"))
        written["front"] = front
    return written
