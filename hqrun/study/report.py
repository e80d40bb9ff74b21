"""The study's report: one table row per model, the Pareto plot, ROC curves, chosen quantizers.

It only reads what the steps left in the study directory (metrics.json, cost.json,
firmware/report.json, each search's trials.csv and winner.yaml), so it can be rebuilt at any
time with the same result, and a resumed study ends with the same report as an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from hqrun import atomic


@dataclass
class ModelRow:
    label: str                      # BF, Q6, QE, QB, or a Pareto point "QE-p1"
    directory: Optional[Path]
    accuracy: Optional[float]
    accuracy_kind: str = "test"     # "test" for trained models, "val (search)" for front points
    auc: dict = field(default_factory=dict)
    cost: dict = field(default_factory=dict)
    bit_exact: Optional[bool] = None
    firmware_note: str = ""
    plan: dict = field(default_factory=dict)


def _load_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def model_row(label: str, directory: Path) -> ModelRow:
    """Read one trained model's numbers from its run directory."""
    metrics = _load_json(directory / "metrics.json")
    test = metrics.get("test", {})
    cost = _load_json(directory / "cost.json").get("totals", {})
    ptq = directory.parent / f"{directory.name}_ptq"
    fw_dir = (ptq if ptq.is_dir() else directory) / "firmware"
    fw = _load_json(fw_dir / "report.json")
    fw_error = _load_json(directory / "firmware_error.json")
    bit_exact = None
    note = ""
    if fw:
        bit_exact = fw.get("status") == "PASSED"
        acc = (fw.get("verification") or {}).get("accuracy") or {}
        if ptq.is_dir():
            plan = yaml.safe_load((ptq / "plan.yaml").read_text()) or {}
            kernel = (plan.get("default") or {}).get("kernel")
            note = f"post-training {kernel}"
            if acc.get("firmware") is not None:
                n = (fw.get("verification") or {}).get("n_samples")
                on = f" on {n:,} verified test samples" if n else ""
                model_acc = acc.get("model")
                note += (f", firmware accuracy {acc['firmware']:.4f}{on}"
                         + (f" (PTQ model {model_acc:.4f})" if model_acc is not None else ""))
    elif fw_error:
        bit_exact = False
        note = fw_error.get("error", "").split(". ")[0]
    plan = yaml.safe_load((directory / "plan.yaml").read_text()) if (directory / "plan.yaml").exists() else {}
    return ModelRow(label, directory, test.get("accuracy"), "test", test.get("roc_auc", {}), cost,
                    bit_exact, note, plan or {})


def read_trials(search_dir: Path) -> list[dict[str, Any]]:
    path = search_dir / "trials.csv"
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _num(value: Any) -> Optional[float]:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def front_rows(goal_label: str, trials: list[dict[str, Any]], goal: str, limit: int) -> list[ModelRow]:
    """The non-dominated finished trials of one search (validation accuracy vs its goal cost)."""
    from hqrun.search.pareto import pareto_front

    ok = [t for t in trials if t.get("status") in ("ok", "stopped") and _num(t.get("accuracy")) is not None
          and _num(t.get("cost")) is not None]
    points = [(_num(t["accuracy"]), _num(t["cost"])) for t in ok]
    front = sorted(pareto_front(points), key=lambda i: points[i][1])[:limit] if points else []
    rows = []
    for n, i in enumerate(front, 1):
        trial = ok[i]
        cost = {"energy": _num(trial.get("cost_energy")), "size_bits": _num(trial.get("cost_bits")),
                "ebops": _num(trial.get("cost_ebops"))}
        rows.append(ModelRow(f"{goal_label}-p{n}", None, points[i][0], "val",
                             cost=cost, firmware_note="search trial, not built"))
    return rows


def _fmt(value: Any, spec: str = ",.0f") -> str:
    v = _num(value)
    return "—" if v is None else format(v, spec)


def table_markdown(rows: list[ModelRow], class_names: list[str]) -> str:
    head = (["model", "accuracy", *[f"AUC {c}" for c in class_names], "energy (pJ)", "size (bits)",
             "EBOPs", "LUT", "DSP", "FF", "latency (cycles)", "latency (ns)", "bit-exact firmware"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        exact = {True: "yes", False: "NO", None: "—"}[r.bit_exact]
        if r.firmware_note:
            exact += f" ({r.firmware_note})"
        acc = "—" if r.accuracy is None else f"{r.accuracy:.4f}" + ("" if r.accuracy_kind == "test" else f" ({r.accuracy_kind})")
        c = r.cost
        cells = [r.label, acc, *[_fmt(r.auc.get(k), ".3f") for k in class_names],
                 _fmt(c.get("energy", c.get("energy_pj"))), _fmt(c.get("size_bits", c.get("bits"))),
                 _fmt(c.get("ebops")), _fmt(c.get("lut")), _fmt(c.get("dsp")), _fmt(c.get("ff")),
                 _fmt(c.get("latency_cycles")), _fmt(c.get("latency_ns"), ".1f"), exact]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def quantizer_table(rows: list[ModelRow]) -> str:
    """The paper's table of chosen quantizers: one column per searched model, one row per slot."""
    searched = [r for r in rows if r.plan and r.directory is not None and r.label.startswith("Q")
                and r.label not in ("Q6",)]
    if not searched:
        return "(no searched model)"
    slots: list[tuple[str, str]] = []
    for r in searched:
        for layer, entry in (r.plan.get("layers") or {}).items():
            for slot in ("kernel", "bias", "activation"):
                if (entry or {}).get(slot) is not None and (layer, slot) not in slots:
                    slots.append((layer, slot))
    lines = ["| layer | slot | " + " | ".join(r.label for r in searched) + " |",
             "|---|---|" + "---|" * len(searched)]
    for layer, slot in slots:
        cells = []
        for r in searched:
            entry = (r.plan.get("layers") or {}).get(layer) or {}
            value = entry.get(slot, (r.plan.get("default") or {}).get(slot))
            cells.append(f"`{value}`" if value else "float")
        lines.append(f"| {layer} | {slot} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pareto_plot(trials_by_goal: dict[str, list[dict]], rows: list[ModelRow], path: Path) -> Optional[Path]:
    """Every trial of every search (accuracy vs its goal cost), with the trained models marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hqrun.search.pareto import pareto_front

    goals = [g for g, t in trials_by_goal.items() if t]
    if not goals:
        return None
    fig, axes = plt.subplots(1, len(goals), figsize=(6 * len(goals), 4.5), squeeze=False)
    unit = {"energy": "energy (pJ, QTools)", "bits": "size (bits)", "ebops": "EBOPs"}
    key = {"energy": ("energy", "energy_pj"), "bits": ("size_bits", "bits"), "ebops": ("ebops",)}
    for ax, goal in zip(axes[0], goals):
        pts = [(_num(t.get("cost")), _num(t.get("accuracy"))) for t in trials_by_goal[goal]
               if t.get("status") in ("ok", "stopped")]
        pts = [(c, a) for c, a in pts if c is not None and a is not None]
        if pts:
            ax.scatter([c for c, _ in pts], [a for _, a in pts], s=14, color="0.6", label="trials (val)")
            front = sorted(pareto_front([(a, c) for c, a in pts]), key=lambda i: pts[i][0])
            ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "-o", color="tab:blue",
                    ms=4, label="Pareto front")
        for r in rows:
            if r.directory is None or r.accuracy is None:
                continue
            cost = next((_num(r.cost.get(k)) for k in key[goal] if _num(r.cost.get(k)) is not None), None)
            if cost is not None:
                ax.scatter([cost], [r.accuracy], marker="*", s=160, zorder=5)
                ax.annotate(r.label, (cost, r.accuracy), textcoords="offset points", xytext=(6, 4))
        ax.set_xscale("log")
        ax.set_xlabel(unit.get(goal, goal))
        ax.set_ylabel("accuracy (trials: validation; ★ models: test)")
        ax.set_title(f"search for {goal}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    try:
        atomic.savefig(fig, path, dpi=120)
    finally:
        plt.close(fig)
    return path


def candidates_markdown(models: list[tuple[str, Path]]) -> list[str]:
    """One table per model chosen among several full trainings (candidates and/or restarts)."""
    out: list[str] = []
    for label, d in models:
        path = d / "candidates.json"
        if not path.exists():
            continue
        rows = json.loads(path.read_text())
        out += [f"## {label}: trainings compared, chosen on validation accuracy", "",
                "| candidate | training seed | trial | search accuracy (val) | cost "
                "| retrained val accuracy | test accuracy | chosen |",
                "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            out.append(f"| c{r['candidate']} | {r.get('seed', '')} | {r.get('trial_id') or '-'} "
                       f"| {_fmt(r.get('search_accuracy'), '.4f')} "
                       f"| {_cost_cell(r)} | {_fmt(r.get('val_accuracy'), '.4f')} "
                       f"| {_fmt(r.get('test_accuracy'), '.4f')} | {'yes' if r.get('chosen') else ''} |")
        out.append("")
    return out


def _cost_cell(row: dict) -> str:
    """The cost a candidate trained at; 'trial -> filled' when study.fill_to_cap raised it."""
    trial, cost = _num(row.get("trial_cost")), _num(row.get("cost"))
    if trial is not None and cost is not None and trial != cost:
        return f"{_fmt(trial)} → {_fmt(cost)} (filled)"
    return _fmt(row.get("cost"))


def write_report(study_dir: Path, models: list[tuple[str, Path]], searches: dict[str, Path],
                 class_names: list[str], pareto_points: int, command: str) -> Path:
    """Write ``report.md`` (+ ``pareto.png``, ``roc_<model>.png``) into the study directory."""
    from hqrun.study.steps import GOAL_LABELS

    rows = [model_row(label, d) for label, d in models if (d / "metrics.json").exists()]
    trials = {goal: read_trials(d) for goal, d in searches.items()}
    for goal, t in trials.items():
        rows += front_rows(GOAL_LABELS.get(goal, goal), t, goal, pareto_points)
    plot = pareto_plot(trials, rows, study_dir / "pareto.png")
    roc_lines = []
    for label, d in models:
        if (d / "roc.png").exists():
            shutil.copyfile(d / "roc.png", study_dir / f"roc_{label}.png")
            roc_lines.append(f"![ROC {label}](roc_{label}.png)")
    n_exact = sum(1 for r in rows if r.bit_exact)
    n_built = sum(1 for r in rows if r.bit_exact is not None)
    text = [
        "# hqrun study report", "",
        f"Command: `{command}`", "",
        "Accuracy is on the test split for trained models and on the validation split for search "
        "trials. Energy is QTools's estimate (pJ per inference), size is AutoQKeras's bit count, "
        "EBOPs/LUT/DSP/FF/latency are hqrun's FPGA estimate (not synthesis). 'bit-exact firmware' "
        "means the hls4ml C simulation equals the PyTorch model on every verified test sample.", "",
        table_markdown(rows, class_names), "",
        f"Firmware: {n_exact} of {n_built} built models verified bit-exact.", "",
        "## Accuracy against cost", "",
        "![Pareto plot](pareto.png)" if plot else "(no finished search trial)", "",
        "## Quantizers of the searched models, as trained", "",
        "(the searches' choices; with study.fill_to_cap, kernels and biases raised to the cap)", "",
        quantizer_table(rows), "",
        *candidates_markdown(models),
        "## ROC curves (test split)", "", *roc_lines, "",
    ]
    path = study_dir / "report.md"
    atomic.write_text(path, "\n".join(text))
    summary = {"models": [{"label": r.label, "accuracy": r.accuracy, "accuracy_kind": r.accuracy_kind,
                           "cost": r.cost, "bit_exact": r.bit_exact,
                           "dir": str(r.directory) if r.directory else None} for r in rows]}
    atomic.write_json(study_dir / "report.json", summary, default=str)
    return path
