"""Fit the RTL LUT/FF estimate's coefficients to a table of Yosys-synthesised models.

Why a module (and not code in the bench script): the fit is what makes the estimate's numbers
mean something, so it is tested like the estimate (``tests/test_lut_model.py``) and the bench
script, which only produces the table, stays replaceable. The fit is non-negative least squares
on *relative* error — every model counts the same whether it has 3,000 or 60,000 LUTs — over
the models whose ``split`` is ``fit``; models marked ``holdout`` are never seen by it and give the
error the documentation quotes.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from hqrun.cost.lut_features import DA_SHAPE
from hqrun.cost.lut_model import (
    FF_TERMS,
    LUT_TERMS,
    Calibration,
    estimate_from_features,
    ff_terms,
    term_totals,
)
from hqrun.errors import CostModelError

__all__ = ["fit_nonnegative_relative", "fit_table", "relative_errors", "error_summary",
           "summary_lines"]


def fit_nonnegative_relative(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Coefficients ``c >= 0`` minimising ``Σ ((X c - y) / y)^2`` (rows with ``y > 0``)."""
    from scipy.optimize import nnls

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    keep = y > 0
    if keep.sum() < X.shape[1]:
        raise CostModelError(f"the fit needs at least {X.shape[1]} synthesised models with a "
                             f"positive count; the table has {int(keep.sum())}. Synthesise more "
                             "with `python bench/calibrate_lut.py`.")
    A = X[keep] / y[keep, None]
    scale = np.maximum(A.max(axis=0), 1e-300)        # conditioning only; undone below
    coef, _ = nnls(A / scale, np.ones(int(keep.sum())))
    return coef / scale


def relative_errors(estimate: Sequence[float], measured: Sequence[float]) -> np.ndarray:
    """(estimate − measured) / measured, element by element."""
    e = np.asarray(estimate, dtype=np.float64)
    m = np.asarray(measured, dtype=np.float64)
    return (e - m) / m


def error_summary(errors: Iterable[float]) -> dict[str, Any]:
    """Median and worst absolute relative error, and the median signed error (the bias)."""
    e = np.asarray(list(errors), dtype=np.float64)
    if e.size == 0:
        return {"n": 0}
    worst = int(np.argmax(np.abs(e)))
    return {"n": int(e.size), "median_abs": round(float(np.median(np.abs(e))), 4),
            "mean_abs": round(float(np.mean(np.abs(e))), 4),
            "worst": round(float(e[worst]), 4), "median": round(float(np.median(e)), 4)}


def _done(rec: Mapping[str, Any]) -> bool:
    return (rec.get("yosys") or {}).get("status") == "done" and rec.get("layers") is not None


def _versions(records: Sequence[Mapping[str, Any]], key: str, field: str) -> list[str]:
    return sorted({str((r.get(key) or {}).get(field)) for r in records if (r.get(key) or {}).get(field)})


def fit_table(records: Sequence[Mapping[str, Any]], source: str = "", calibration_id: str | None = None
              ) -> dict[str, Any]:
    """Fit LUT and FF coefficients on the ``fit`` rows; report errors on the ``holdout`` rows.

    Returns the calibration as plain data (what ``lut_calibration.json`` holds): ``id``, ``lut``
    and ``ff`` coefficients, and ``provenance`` with the date, tool versions, model counts, the
    errors (fit and held-out, LUT and FF; alkaid's own estimate on the same held-out models) and
    every model's residual.
    """
    done = [r for r in records if _done(r)]
    fit_rows = [r for r in done if r.get("split") == "fit"]
    hold_rows = [r for r in done if r.get("split") == "holdout"]
    yosys = _versions(done, "yosys", "tool_version")
    if len(yosys) > 1:   # e.g. pip's Yosys 0.70 and Debian's 0.23: different LUT mappings
        raise CostModelError(
            f"the calibration table mixes {len(yosys)} Yosys versions ({'; '.join(v[:24] for v in yosys)}), "
            "whose LUT counts differ by several per cent; synthesise every model with one Yosys "
            "(`python bench/calibrate_lut.py --yosys yowasp` from the activated venv) after removing "
            "the other version's rows.")
    X = np.array([[term_totals(r["layers"])[t] for t in LUT_TERMS] for r in fit_rows]).reshape(-1, len(LUT_TERMS))
    y = np.array([float(r["yosys"]["lut"]) for r in fit_rows])
    lut_coef = fit_nonnegative_relative(X, y)
    piped = [r for r in fit_rows if int(r.get("latency_cycles") or 0) > 0 and r["yosys"].get("ff")]
    if len(piped) >= len(FF_TERMS):
        F = np.array([[ff_terms(r["layers"], int(r["latency_cycles"]))[t] for t in FF_TERMS] for r in piped])
        ff_coef = fit_nonnegative_relative(F, np.array([float(r["yosys"]["ff"]) for r in piped]))
    else:
        ff_coef = np.zeros(len(FF_TERMS))
    date = _dt.date.today().isoformat()
    cid = calibration_id or f"yosys-{(yosys[0].split()[1] if yosys else 'unknown')}-{date}-n{len(done)}"
    cal = Calibration(cid, dict(zip(LUT_TERMS, map(float, lut_coef))),
                      dict(zip(FF_TERMS, map(float, ff_coef))))
    residuals = []
    for r in done:
        est = estimate_from_features(r["layers"], cal, int(r.get("latency_cycles") or 0))
        y_lut, y_ff = float(r["yosys"]["lut"]), float(r["yosys"].get("ff") or 0)
        alk = (r.get("alkaid") or {}).get("lut")
        residuals.append({
            "id": r["id"], "family": r.get("family"), "split": r.get("split"),
            "latency_cycles": int(r.get("latency_cycles") or 0), "yosys_lut": int(y_lut),
            "lut": round(est.lut, 1),
            "lut_error": round((est.lut - y_lut) / y_lut, 4) if y_lut > 0 else None,
            "alkaid_lut": alk,
            "alkaid_error": None if alk is None or y_lut == 0 else round((float(alk) - y_lut) / y_lut, 4),
            "hls_lut": (r.get("totals") or {}).get("hls_lut", (r.get("totals") or {}).get("lut_hls")),
            "yosys_ff": int(y_ff), "ff": round(est.ff, 1),
            "ff_error": round((est.ff - y_ff) / y_ff, 4) if y_ff > 0 else None,
            "seconds": (r.get("yosys") or {}).get("seconds"),
        })

    def errs(split: str, key: str) -> dict[str, Any]:
        return error_summary(x[key] for x in residuals if x["split"] == split and x[key] is not None)

    lut_values = [x["yosys_lut"] for x in residuals]
    provenance = {
        "date": date, "table": source, "yosys": yosys, "alkaid": _versions(done, "alkaid", "version"),
        "synthesis": "Yosys synth_xilinx -family xcup -noiopad -flatten, classic ABC LUT mapping "
                     "(the RTL backend's defaults)",
        "models": len(done), "fit_models": len(fit_rows), "holdout_models": len(hold_rows),
        "pipelined_fit_models": len(piped),
        "lut_range": [min(v for v in lut_values if v > 0), max(lut_values)] if any(lut_values) else None,
        "zero_lut_models": [{"id": x["id"], "estimate": x["lut"]} for x in residuals if x["yosys_lut"] == 0],
        "synthesis_seconds": round(sum(float(x["seconds"] or 0) for x in residuals), 1),
        "lut_error": {"fit": errs("fit", "lut_error"), "holdout": errs("holdout", "lut_error")},
        "alkaid_lut_error": {"fit": errs("fit", "alkaid_error"), "holdout": errs("holdout", "alkaid_error")},
        "ff_error": {"fit": errs("fit", "ff_error"), "holdout": errs("holdout", "ff_error")},
        "error_definition": "(estimate - yosys) / yosys; median_abs and worst over the models",
        "residuals": residuals,
    }
    return {"id": cid, "lut": dict(cal.lut), "ff": dict(cal.ff), "shape": dict(DA_SHAPE), "terms": {
        "lut": "LUT = sum over layers of coefficient x feature (hqrun.cost.lut_features)",
        "ff": "FF = c_out x last layer result bits (L >= 1) + c_cut x (L - 1) x mean MAC "
              "layer da_cost"}, "provenance": provenance}


def summary_lines(calibration: Mapping[str, Any]) -> list[str]:
    """A readable account of a fit (what ``--fit`` prints)."""
    p = calibration["provenance"]
    lines = [f"calibration {calibration['id']}: {p['models']} models ({p['fit_models']} fit, "
             f"{p['holdout_models']} held out), Yosys LUT {p['lut_range']}, synthesis "
             f"{p['synthesis_seconds'] / 60:.1f} min in all",
             "LUT coefficients: " + ", ".join(f"{k} {v:.4g}" for k, v in calibration["lut"].items()),
             "FF coefficients: " + ", ".join(f"{k} {v:.4g}" for k, v in calibration["ff"].items())]
    for name, key in (("calibrated LUT", "lut_error"), ("alkaid's own LUT", "alkaid_lut_error"),
                      ("calibrated FF", "ff_error")):
        for split in ("fit", "holdout"):
            s = p[key][split]
            if s.get("n"):
                lines.append(f"{name:16s} {split:8s} n={s['n']:3d}: median |err| {s['median_abs']:.1%}, "
                             f"worst {s['worst']:+.1%}, median {s['median']:+.1%}")
    lines.append(f"{'id':20s} {'split':8s} {'L':>2s} {'yosys':>7s} {'estimate':>9s} {'err':>7s} "
                 f"{'alkaid':>8s} {'err':>7s} {'FF':>6s} {'est':>6s}")
    for x in p["residuals"]:
        alk = "-" if x["alkaid_error"] is None else f"{x['alkaid_error']:+.1%}"
        err = "-" if x["lut_error"] is None else f"{x['lut_error']:+.1%}"
        lines.append(f"{x['id']:20s} {x['split']:8s} {x['latency_cycles']:2d} {x['yosys_lut']:7d} "
                     f"{x['lut']:9.0f} {err:>7s} {x['alkaid_lut'] or 0:8.0f} {alk:>7s} "
                     f"{x['yosys_ff']:6d} {x['ff']:6.0f}")
    return lines
