"""Firmware report: ``report.json`` (machine-readable) and ``report.md`` (for people).

Why both: the study report and ``hqrun collect`` read the JSON; a person opening the run dir reads
the Markdown. Both say which backend built the design, which accumulator policy built the types,
which IR passes ran, whether the simulation was bit-exact, and the synthesis results (or the
exact command that produces them). The backend adds its own fields and section.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from hqrun import atomic

from .ir import FirmwareIR
from .verify import Verification

__all__ = ["build_report", "write_report"]


def build_report(ir: FirmwareIR, backend: str, verification: Verification, project_dir: str,
                 backend_fields: dict[str, Any], estimate: dict[str, Any] | None,
                 synthesis: dict[str, Any], timings: dict[str, float],
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "status": "PASSED" if verification.passed else (
            "UNVERIFIED" if verification.not_run else "FAILED"),
        "summary": verification.summary(),
        "backend": backend,
        "project_dir": str(project_dir),
        **backend_fields,
        "accumulator_policy": ir.policy,
        "input_type": ir.input_type.hls_name,
        "ir_passes": list(ir.passes),
        "layers": ir.to_dict(),
        "verification": verification.to_dict(),
        "estimate": estimate,
        "synthesis": synthesis,
        "estimate_vs_synthesis": calibrated_vs_synthesis(backend, estimate, synthesis),
        "timings_s": timings,
        **(extra or {}),
    }


def calibrated_vs_synthesis(backend: str, estimate: dict[str, Any] | None,
                            synthesis: dict[str, Any] | None) -> dict[str, Any] | None:
    """hqrun.cost's calibrated LUT/FF estimate of the RTL build against Yosys's counts of it.

    Why here: the estimate is what a search optimises, so every RTL build that is synthesised
    checks it once more. None unless both exist (the hls4ml backend builds another design).
    """
    totals = (estimate or {}).get("totals") or {}
    syn = synthesis or {}
    if backend != "rtl" or totals.get("lut") is None or not syn.get("lut"):
        return None
    out = {"calibration": totals.get("lut_calibration"), "lut_estimate": totals["lut"],
           "lut_yosys": syn["lut"], "lut_relative_error": round((totals["lut"] - syn["lut"]) / syn["lut"], 4),
           "ff_estimate": totals.get("ff"), "ff_yosys": syn.get("ff"),
           "note": "(estimate - yosys) / yosys; the estimate is hqrun.cost's, calibrated against "
                   "Yosys on other models (docs/cost.md)"}
    return out


def _md(report: dict[str, Any], backend_lines: list[str]) -> str:
    v = report["verification"]
    lines = [
        f"# Firmware report — {report['status']}",
        "",
        report["summary"],
        "",
        f"- backend: `{report['backend']}`; simulation: {report.get('simulator', 'n/a')}",
        f"- accumulator policy: `{report['accumulator_policy']}` (sized from the actual weights "
        "and input range; no overflow and no rounding inside any layer)",
        f"- input type: `{report['input_type']}`; samples checked: {v['n_samples']}",
        f"- IR passes: {', '.join(report['ir_passes']) or 'none'}",
    ]
    if v.get("torch_equal") is not None:
        lines.append(f"- emulation vs PyTorch model ({v['torch_dtype']}): "
                     f"{'identical' if v['torch_equal'] else str(v['torch_n_mismatch']) + ' samples differ'}")
    if v.get("softmax"):
        sm = v["softmax"]
        lines.append(f"- softmax (tables, not required exact): argmax agreement "
                     f"{sm['argmax_agreement']:.4f}, max deviation {sm['max_abs_deviation']:.4g}")
    if v.get("accuracy"):
        acc = v["accuracy"]
        lines.append(f"- accuracy on these samples: model {acc['model']:.4f}, firmware "
                     f"{acc['firmware']:.4f}; the firmware's logits alone give "
                     f"{acc['firmware_logits']:.4f} (any difference comes from the softmax tables)")
    lines += backend_lines
    lines += ["", "## Layers", "", "| layer | op | input | weight | bias | accumulator | output |",
              "|---|---|---|---|---|---|---|"]
    for layer in report["layers"]:
        lines.append("| {name} | {op} | {i} | {w} | {b} | {a} | {o} |".format(
            name=layer["name"] + (f" ({'+'.join(layer['sources'])})" if len(layer["sources"]) > 1 else ""),
            op=layer["op"], i=layer["in_type"] or "", w=layer["weight_type"] or "",
            b=layer["bias_type"] or "", a=layer["accum_type"] or "",
            o=layer["out_type"] or "float (tables)"))
    lines += _estimate_lines(report.get("estimate"))
    cmp_ = report.get("estimate_vs_synthesis")
    if cmp_:
        lines.append(f"- calibrated RTL estimate ({cmp_['calibration']}): LUT {cmp_['lut_estimate']:,} "
                     f"against Yosys {cmp_['lut_yosys']:,} ({cmp_['lut_relative_error']:+.1%}); FF "
                     f"{cmp_['ff_estimate']} against {cmp_['ff_yosys']}")
    lines += ["", f"Timings (s): {json.dumps(report['timings_s'])}", ""]
    return "\n".join(lines)


#: The estimate's totals a person reads, with their units (the JSON keeps every total).
_ESTIMATE_LABELS = (("energy", "energy", "pJ per inference, QTools's model"),
                    ("size_bits", "size", "bits, AutoQKeras's count"),
                    ("ebops", "EBOPs", "effective bit operations"),
                    ("lut", "LUT", "RTL build, calibrated against Yosys"),
                    ("ff", "FF", "RTL build, calibrated against Yosys"),
                    ("hls_lut", "LUT", "hls4ml build, first-order rules"),
                    ("hls_dsp", "DSP", "hls4ml build"), ("hls_ff", "FF", "hls4ml build"),
                    ("hls_latency_cycles", "latency", "hls4ml build, cycles"),
                    ("hls_latency_ns", "latency", "hls4ml build, ns"))


def _estimate_lines(est: Any) -> list[str]:
    """The cost estimate the caller priced the model with (hqrun passes the model's deployed
    cost, the numbers of its cost.json and of the study report), labelled as an estimate."""
    if not isinstance(est, dict) or not est:
        return []
    lines = ["", "## Estimated cost (cost-model formulas, not synthesis)", ""]
    if est.get("error"):
        return lines + [f"Not available: {est['error']}"]
    if est.get("basis_text"):
        lines += [f"Basis: {est['basis_text']}.", ""]
    totals = est.get("totals") or {}
    for key, label, unit in _ESTIMATE_LABELS:
        value = totals.get(key)
        if isinstance(value, (int, float)):
            text = f"{value:,.1f}" if isinstance(value, float) and not value.is_integer() else f"{value:,.0f}"
            lines.append(f"- {label}: {text}" + (f" ({unit})" if unit else ""))
    lines += [f"- note: {flag}" for flag in est.get("flags") or []]
    return lines


def write_report(report: dict[str, Any], directory: str | os.PathLike,
                 backend_lines: Callable[[dict[str, Any]], list[str]] = lambda r: []) -> tuple[Path, Path]:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    j = d / "report.json"
    atomic.write_text(j, json.dumps(report, indent=2, default=str))
    m = d / "report.md"
    atomic.write_text(m, _md(report, backend_lines(report)))
    return j, m
