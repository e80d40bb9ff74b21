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
from hqrun.search.objectives import GOAL_UNITS
from hqrun.search.pareto import pareto_front
from hqrun.search.ranking import best_record

CSV_FIELDS = ("trial_id", "block", "status", "accuracy", "cost", "score", "epochs", "time",
              "cost_bits", "cost_energy", "cost_ebops", "pareto", "plan", "widths", "config",
              "error")


def front_records(records: Sequence[dict]) -> list[dict]:
    """Completed trials on the accuracy/cost Pareto front, cheapest first."""
    ok = [r for r in records if r["status"] in ("ok", "stopped") and r.get("accuracy") is not None
          and r.get("cost") is not None]
    idx = pareto_front([(float(r["accuracy"]), float(r["cost"])) for r in ok])
    return [ok[i] for i in idx]


def write_trials_csv(records: Sequence[dict], path: Path) -> None:
    front = {r["trial_id"] for r in front_records(records)}
    fh = io.StringIO(newline="")
    w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
    w.writeheader()
    for r in records:
        costs = r.get("costs") or {}
        w.writerow({
            "trial_id": r["trial_id"], "block": r.get("block"), "status": r["status"],
            "accuracy": r.get("accuracy"), "cost": r.get("cost"), "score": r.get("score"),
            "epochs": r.get("epochs"), "time": r.get("time"),
            "cost_bits": costs.get("bits"), "cost_energy": costs.get("energy"),
            "cost_ebops": costs.get("ebops"), "pareto": r["trial_id"] in front,
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
    atomic.write_text(path, yaml.safe_dump(out, sort_keys=False, default_flow_style=False))
    if widths:
        atomic.write_text(path.with_suffix(".model.yaml"),
                          yaml.safe_dump({"width_multiplier": dict(widths)}, sort_keys=False))


def plot_pareto(records: Sequence[dict], path: Path, goal: str, references: dict[str, tuple]
                ) -> None:
    """All trials (grey), the front (highlighted, stepped), reference models as markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in records if r["status"] in ("ok", "stopped") and r.get("cost")]
    front = front_records(records)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    if ok:
        ax.scatter([r["cost"] for r in ok], [r["accuracy"] for r in ok], s=14, c="0.65",
                   label=f"trials ({len(ok)})")
    if front:
        ax.plot([r["cost"] for r in front], [r["accuracy"] for r in front], "-o", c="tab:red",
                ms=5, drawstyle="steps-post", label=f"Pareto front ({len(front)})")
    markers = iter("s^DvP*")
    for name, (cost, acc) in references.items():
        if cost is None or not (cost > 0):
            continue
        if acc is None:     # a cost without a model: a vertical line
            ax.axvline(cost, ls="--", lw=1, c="0.4", label=name)
            continue
        ax.scatter([cost], [acc], marker=next(markers, "X"), s=60, edgecolor="k", zorder=5,
                   label=name)
    unit = GOAL_UNITS.get(goal, goal)
    ax.set_xlabel(unit)
    ax.set_ylabel("validation accuracy")
    if ok and min(r["cost"] for r in ok) > 0:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    try:
        atomic.savefig(fig, path, dpi=120)
    finally:
        plt.close(fig)


def leaderboard(records: Sequence[dict], top: int = 10, goal: str = "cost") -> str:
    ok = sorted((r for r in records if r["status"] in ("ok", "stopped")
                 and r.get("score") is not None and math.isfinite(r["score"])),
                key=lambda r: -r["score"])[:top]
    failed = sum(r["status"] == "failed" for r in records)
    front = {r["trial_id"] for r in front_records(records)}
    lines = [f"{'rank':>4}  {'score':>7}  {'accuracy':>8}  {goal:>12}  {'epochs':>6}  pareto  trial",
             "-" * 72]
    for i, r in enumerate(ok, start=1):
        lines.append(f"{i:>4}  {r['score']:7.4f}  {r['accuracy']:8.4f}  {r['cost']:12.5g}  "
                     f"{r.get('epochs', 0):>6}  {'  *   ' if r['trial_id'] in front else '      '}"
                     f"  {r['trial_id']}")
    lines.append(f"{len(records)} trials: {len(records) - failed} finished, {failed} failed; "
                 f"{len(front)} on the Pareto front")
    return "\n".join(lines)


def write_results(outcome: Any, goal: str, objective: str = "forgiving") -> dict:
    """Write trials.csv, pareto.png, winner.yaml and front/*.yaml; return what was written."""
    run_dir = Path(outcome.run_dir)
    records = outcome.records
    write_trials_csv(records, run_dir / "trials.csv")
    written: dict[str, Any] = {"trials_csv": str(run_dir / "trials.csv")}
    ref = outcome.reference
    refs = {"float reference": (ref.cost.get(goal) if ref.cost else None, ref.accuracy),
            "stressed reference cost": (outcome.reference_cost, None)}
    plot_pareto(records, run_dir / "pareto.png", goal, refs)
    written["pareto_png"] = str(run_dir / "pareto.png")
    final = getattr(outcome, "final_block", None)
    # block scheduler: the winner is the last block's best (earlier blocks are frozen in it)
    best = best_record([r for r in records if r.get("block") == final] if final is not None
                       else records)
    if best is not None:
        write_plan(best["plan"], run_dir / "winner.yaml", "winner", best.get("widths"))
        written["winner"] = best
    front = front_records(records)
    if front:
        fdir = run_dir / "front"
        fdir.mkdir(exist_ok=True)
        for i, r in enumerate(front):
            write_plan(r["plan"], fdir / f"point_{i:02d}.yaml", f"front_{i:02d}", r.get("widths"))
        written["front"] = front
    return written
