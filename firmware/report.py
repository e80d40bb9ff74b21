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
        "timings_s": timings,
        **(extra or {}),
    }


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
    lines += ["", f"Timings (s): {json.dumps(report['timings_s'])}", ""]
    return "\n".join(lines)


#: The estimate's totals a person reads, with their units (the JSON keeps every total).
_ESTIMATE_LABELS = (("energy", "energy", "pJ per inference, QTools's model"),
                    ("size_bits", "size", "bits, AutoQKeras's count"),
                    ("ebops", "EBOPs", "effective bit operations"),
                    ("lut", "LUT", ""), ("dsp", "DSP", ""), ("ff", "FF", ""),
                    ("latency_cycles", "latency", "cycles"), ("latency_ns", "latency", "ns"))


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
