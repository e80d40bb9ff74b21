"""Firmware report: ``report.json`` (machine-readable) and ``report.md`` (for people).

Why both: the study report and ``hqrun collect`` read the JSON; a person opening the run dir reads
the Markdown. Both say which accumulator policy built the types, whether the C simulation was
bit-exact, and either the synthesis results or the exact command that produces them.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from pathlib import Path
from typing import Any

from hqrun import atomic

from .hls4ml_writer import WriterOptions, import_hls4ml
from .ir import FirmwareIR
from .verify import Verification

__all__ = ["synthesis_tool", "synthesis_command", "run_synthesis", "build_report", "write_report"]


def synthesis_tool(backend: str) -> str | None:
    """The vendor executable hls4ml's build needs for ``backend``, if it is on PATH."""
    names = ("vitis-run", "vitis_hls") if backend == "Vitis" else ("vivado_hls",)
    for name in names:
        if shutil.which(name):
            return name
    return None


def synthesis_command(backend: str, project_dir: str) -> str:
    """Shell command that synthesises the written project later (what hls4ml's build runs).

    The directory is shell-quoted: a user copies this line into a shell.
    """
    where = shlex.quote(str(project_dir))
    if backend == "Vitis":
        return f"cd {where} && vitis-run --tcl build_prj.tcl --mode hls"
    return (f'cd {where} && vivado_hls -f build_prj.tcl "reset=1 csim=0 synth=1 cosim=0 '
            'validation=0 export=0 vsynth=0 fifo_opt=0"')


def write_build_options(project_dir: str) -> None:
    """Vitis's build script reads its switches from build_opt.tcl; write synth-only defaults."""
    atomic.write_text(
        Path(project_dir, "build_opt.tcl"),
        "array set opt {\n    reset      1\n    csim       0\n    synth      1\n    cosim      0\n"
        "    validation 0\n    export     0\n    vsynth     0\n    fifo_opt   0\n}\n"
    )


def run_synthesis(hls_model: Any, opts: WriterOptions, project_dir: str, mode: str) -> dict[str, Any]:
    """Synthesise through hls4ml's build when the vendor tool is available (mode auto/always/never)."""
    tool = synthesis_tool(opts.backend)
    command = synthesis_command(opts.backend, project_dir)
    if mode == "never" or (mode == "auto" and tool is None):
        reason = "disabled (synthesize=never)" if mode == "never" else (
            f"{'vitis-run/vitis_hls' if opts.backend == 'Vitis' else 'vivado_hls'} not on PATH")
        return {"status": "not run", "reason": reason, "command": command}
    if tool is None:
        return {"status": "failed", "reason": "synthesize=always but no vendor HLS tool on PATH",
                "command": command}
    try:
        raw = hls_model.build(reset=True, csim=False, synth=True, cosim=False, export=False,
                              vsynth=False)
    except Exception as err:  # noqa: BLE001 - vendor failures are reported, not raised
        return {"status": "failed", "reason": f"{type(err).__name__}: {err}", "command": command}
    return {"status": "done", "tool": tool, "command": command, "report": _parse_synth(raw, project_dir)}


def _parse_synth(raw: Any, project_dir: str) -> dict[str, Any]:
    """Latency, II and resources from hls4ml's parsed report (keys as hls4ml names them)."""
    if not raw:
        hls4ml = import_hls4ml()
        try:
            raw = hls4ml.report.parse_vivado_report(project_dir)
        except Exception:  # noqa: BLE001
            raw = {}
    csyn = (raw or {}).get("CSynthesisReport", {}) if isinstance(raw, dict) else {}
    keys = ("BestLatency", "WorstLatency", "IntervalMin", "IntervalMax", "EstimatedClockPeriod",
            "LUT", "FF", "DSP", "BRAM_18K", "URAM")
    parsed = {k: csyn.get(k) for k in keys if k in csyn}
    return {"summary": parsed, "raw": raw if isinstance(raw, dict) else str(raw)}


def build_report(ir: FirmwareIR, opts: WriterOptions, verification: Verification,
                 project_dir: str, estimate: dict[str, Any] | None, synthesis: dict[str, Any],
                 timings: dict[str, float], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    hls4ml = import_hls4ml()
    return {
        "status": "PASSED" if verification.passed else "FAILED",
        "summary": verification.summary(),
        "project_dir": str(project_dir),
        "project_name": opts.project_name,
        "hls4ml_version": getattr(hls4ml, "__version__", "unknown"),
        "backend": opts.backend,
        "part": opts.part,
        "clock_period_ns": opts.clock_period,
        "reuse_factor": opts.reuse_factor,
        "strategy": opts.strategy,
        "io_type": opts.io_type,
        "accumulator_policy": ir.policy,
        "input_type": ir.input_type.hls_name,
        "layers": ir.to_dict(),
        "verification": verification.to_dict(),
        "estimate": estimate,
        "synthesis": synthesis,
        "timings_s": timings,
        **(extra or {}),
    }


def _md(report: dict[str, Any]) -> str:
    v = report["verification"]
    lines = [
        f"# Firmware report — {report['status']}",
        "",
        report["summary"],
        "",
        f"- project: `{report['project_dir']}` ({report['backend']}, part {report['part']}, "
        f"clock {report['clock_period_ns']} ns, reuse factor {report['reuse_factor']}, "
        f"{report['strategy']}, {report['io_type']}, hls4ml {report['hls4ml_version']})",
        f"- accumulator policy: `{report['accumulator_policy']}` (sized from the actual weights "
        "and input range; no overflow and no rounding inside any layer)",
        f"- input type: `{report['input_type']}`; samples checked: {v['n_samples']}",
    ]
    if v.get("torch_equal") is not None:
        lines.append(f"- emulation vs PyTorch model ({v['torch_dtype']}): "
                     f"{'identical' if v['torch_equal'] else str(v['torch_n_mismatch']) + ' samples differ'}")
    if v.get("softmax"):
        sm = v["softmax"]
        lines.append(f"- softmax (hls4ml tables, not required exact): argmax agreement "
                     f"{sm['argmax_agreement']:.4f}, max deviation {sm['max_abs_deviation']:.4g}")
    if v.get("accuracy"):
        acc = v["accuracy"]
        lines.append(f"- accuracy: model {acc['model']:.4f}, firmware {acc['firmware']:.4f} "
                     f"(firmware logits {acc['firmware_logits']:.4f})")
    lines += ["", "## Layers", "", "| layer | op | input | weight | bias | accumulator | output |",
              "|---|---|---|---|---|---|---|"]
    for layer in report["layers"]:
        lines.append("| {name} | {op} | {i} | {w} | {b} | {a} | {o} |".format(
            name=layer["name"] + (f" ({'+'.join(layer['sources'])})" if len(layer["sources"]) > 1 else ""),
            op=layer["op"], i=layer["in_type"] or "", w=layer["weight_type"] or "",
            b=layer["bias_type"] or "", a=layer["accum_type"] or "",
            o=layer["out_type"] or "float (tables)"))
    est = report.get("estimate")
    if est:
        lines += ["", "## Cost-model estimate", ""]
        totals = est.get("totals", est) if isinstance(est, dict) else est
        if isinstance(totals, dict):
            for k, val in totals.items():
                if isinstance(val, (int, float, str)):
                    lines.append(f"- {k}: {val}")
    syn = report["synthesis"]
    lines += ["", "## Synthesis", ""]
    if syn["status"] == "done":
        for k, val in syn["report"]["summary"].items():
            lines.append(f"- {k}: {val}")
    else:
        lines.append(f"Not run ({syn.get('reason', '')}). To synthesise later:")
        lines += ["", "```", syn["command"], "```"]
    lines += ["", f"Timings (s): {json.dumps(report['timings_s'])}", ""]
    return "\n".join(lines)


def write_report(report: dict[str, Any], directory: str | os.PathLike) -> tuple[Path, Path]:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    j = d / "report.json"
    atomic.write_text(j, json.dumps(report, indent=2, default=str))
    m = d / "report.md"
    atomic.write_text(m, _md(report))
    return j, m
