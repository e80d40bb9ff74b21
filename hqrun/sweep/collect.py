"""``hqrun collect <sweep dir>``: one table (and a plot) for a whole sweep.

Each job directory of a Hydra multirun holds ``.hydra/overrides.yaml``, ``job_status.json`` and
whatever the command wrote (``metrics.json``, ``cost.json``). The collector flattens those into
one row per job, so a bit-width scan reads directly as the paper's accuracy-versus-bits curve.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path
from typing import Any, Iterable, Optional

from hqrun import atomic
from hqrun.errors import HqrunError
from hqrun.sweep.jobstatus import read_status

SWEEP_CSV = "sweep.csv"
SWEEP_PNG = "sweep.png"


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), sub, out)
    elif isinstance(value, (int, float, str, bool)) or value is None:
        out[prefix] = value


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except json.JSONDecodeError:
        return {}


def _overrides(job_dir: Path) -> list[str]:
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.exists():
        return []
    import yaml

    return [str(o) for o in (yaml.safe_load(path.read_text()) or [])]


def _job_dirs(sweep_dir: Path) -> list[Path]:
    jobs = [p for p in sweep_dir.iterdir() if p.is_dir() and (p / ".hydra").is_dir()]
    return sorted(jobs, key=lambda p: (len(p.name), p.name))


def _cost_columns(cost: dict) -> dict[str, Any]:
    """Totals of a cost report (``totals`` subtree if the report has one)."""
    out: dict[str, Any] = {}
    _flatten("cost", cost.get("totals", cost) if isinstance(cost, dict) else {}, out)
    return {k: v for k, v in out.items() if not isinstance(v, str) or k.count(".") == 1}


def collect_rows(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """One dict per job: job number, status, error, each override as a column, metrics, cost."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise HqrunError(f"sweep directory {str(sweep_dir)!r} does not exist; pass the directory "
                         "that Hydra printed for the multirun (e.g. multirun/train/<date>).")
    rows = []
    for job_dir in _job_dirs(sweep_dir):
        overrides = _overrides(job_dir)
        status = read_status(job_dir)
        row: dict[str, Any] = {
            "job": job_dir.name,
            "status": status.get("status"),
            "error": status.get("error", ""),
            "seconds": status.get("seconds"),
            "overrides": " ".join(overrides),
        }
        for override in overrides:
            key, _, value = override.lstrip("+~").partition("=")
            row[key] = value
        metrics: dict[str, Any] = {}
        _flatten("", _read_json(job_dir / "metrics.json"), metrics)
        row.update({k: v for k, v in metrics.items() if not isinstance(v, str)})
        row.update(_cost_columns(_read_json(job_dir / "cost.json")))
        rows.append(row)
    if not rows:
        raise HqrunError(f"no job directories (with a .hydra folder) under {str(sweep_dir)!r}; "
                         "is this the sweep directory of a `hqrun -m ...` run?")
    return rows


def write_csv(rows: Iterable[dict[str, Any]], path: Path) -> Path:
    rows = list(rows)
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    handle = io.StringIO(newline="")
    writer = csv.DictWriter(handle, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(path, handle.getvalue())
    return path


def _pick(columns: Iterable[str], *needles: str) -> Optional[str]:
    columns = list(columns)
    for needle in needles:
        for col in columns:
            if needle in col.lower():
                return col
    return None


#: Axis wording of the columns a sweep is plotted by (column name -> label with unit).
AXIS_LABELS = {
    "test.accuracy": "test accuracy", "test/accuracy": "test accuracy",
    "test_accuracy": "test accuracy", "val.accuracy": "validation accuracy",
    "cost.size_bits": "size (bits, AutoQKeras count, estimated)",
    "cost.bits": "size (bits, estimated)",
    "cost.energy": "energy (pJ per inference, QTools model, estimated)",
    "cost.ebops": "EBOPs (estimated)",
}


def _varying(rows: list[dict[str, Any]]) -> list[str]:
    """Override keys whose value differs between the jobs (what the sweep scanned)."""
    keys: list[str] = []
    for r in rows:
        for o in str(r.get("overrides", "")).split():
            key = o.lstrip("+~").partition("=")[0]
            if key not in keys:
                keys.append(key)
    return [k for k in keys if len({str(r.get(k)) for r in rows}) > 1]


def plot_rows(rows: list[dict[str, Any]], path: Path) -> Optional[Path]:
    """Accuracy against cost (bits, else energy, else job number), coloured by the first
    scanned key, each value labelled once inside the axes (the other scanned keys, e.g. seeds,
    are the repeated points of one colour)."""
    ok = [r for r in rows if r.get("status") == "ok"]
    columns = {c for r in ok for c in r}
    y_key = _pick(columns, "test_accuracy", "test/accuracy", "test.accuracy", "accuracy")
    x_key = _pick(columns, "cost.size_bits", "cost.bits", "cost.energy", "bits", "energy")
    if not ok or y_key is None:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from hqrun.plotlabels import place_labels

    fig = Figure(figsize=(6.4, 4.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs = [float(r[x_key]) if x_key and r.get(x_key) is not None else i for i, r in enumerate(ok)]
    ys = [float(r[y_key]) for r in ok]
    scanned = _varying(ok)
    group_key = scanned[0] if scanned else None
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(ok):
        groups.setdefault(str(r.get(group_key)) if group_key else "", []).append(i)
    labels = []
    for value, idx in groups.items():
        ax.scatter([xs[i] for i in idx], [ys[i] for i in idx], s=22, zorder=3)
        if group_key:
            best = max(idx, key=lambda i: ys[i])
            labels.append((xs[best], ys[best], f"{group_key.rsplit('.', 1)[-1]}={value}"))
    if x_key and x_key.startswith("cost.") and min(xs) > 0 and max(xs) / min(xs) > 3:
        ax.set_xscale("log")
    ax.margins(x=0.12, y=0.15)
    ax.set_xlabel(AXIS_LABELS.get(x_key or "", x_key or "job number"))
    ax.set_ylabel(AXIS_LABELS.get(y_key, y_key))
    repeats = f"; points of one colour: {', '.join(scanned[1:])}" if len(scanned) > 1 else ""
    ax.set_title(f"{len(ok)} of {len(rows)} jobs finished{repeats}", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    place_labels(ax, fig.canvas.get_renderer(), labels, fontsize=8, fontweight="normal")
    atomic.savefig(fig, path, dpi=120)
    return path


def collect(sweep_dir: str | Path) -> dict[str, Any]:
    """Write ``sweep.csv`` and ``sweep.png`` into the sweep directory; return a summary."""
    sweep_dir = Path(sweep_dir)
    rows = collect_rows(sweep_dir)
    csv_path = write_csv(rows, sweep_dir / SWEEP_CSV)
    png_path = plot_rows(rows, sweep_dir / SWEEP_PNG)
    failed = [r for r in rows if r["status"] != "ok"]
    return {"jobs": len(rows), "failed": len(failed), "csv": str(csv_path),
            "plot": str(png_path) if png_path else None,
            "failures": [(r["job"], r["overrides"], r["error"]) for r in failed]}


def print_summary(summary: dict[str, Any]) -> None:
    print(f"hqrun: sweep collected: {summary['jobs']} jobs, {summary['failed']} failed -> {summary['csv']}")
    for job, overrides, error in summary["failures"]:
        print(f"  job {job} ({overrides}) failed: {error}")


def main(argv: list[str]) -> int:
    """``hqrun collect <sweep dir>``."""
    parser = argparse.ArgumentParser(prog="hqrun collect", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", help="the multirun directory Hydra printed")
    args = parser.parse_args(argv)
    summary = collect(args.sweep_dir)
    print_summary(summary)
    return 1 if summary["failed"] else 0
