"""Vendor HLS synthesis of an hls4ml project (Vitis HLS / Vivado HLS), when the tool is present.

Vendor tools are not installable here; without one the report carries the exact command that
synthesises the written project later.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path
from typing import Any

from hqrun import atomic

from .writer import WriterOptions, import_hls4ml

__all__ = ["synthesis_tool", "synthesis_command", "run_synthesis", "write_build_options"]


def synthesis_tool(vendor: str) -> str | None:
    """The vendor executable hls4ml's build needs for ``vendor``, if it is on PATH."""
    names = ("vitis-run", "vitis_hls") if vendor == "Vitis" else ("vivado_hls",)
    for name in names:
        if shutil.which(name):
            return name
    return None


def synthesis_command(vendor: str, project_dir: str) -> str:
    """Shell command that synthesises the written project later (what hls4ml's build runs).

    The directory is shell-quoted: a user copies this line into a shell.
    """
    where = shlex.quote(str(project_dir))
    if vendor == "Vitis":
        return f"cd {where} && vitis-run --tcl build_prj.tcl --mode hls"
    return (f'cd {where} && vivado_hls -f build_prj.tcl "reset=1 csim=0 synth=1 cosim=0 '
            'validation=0 export=0 vsynth=0 fifo_opt=0"')


def write_build_options(project_dir: str) -> None:
    """Vitis's build script reads its switches from build_opt.tcl; write synth-only defaults."""
    atomic.write_text(
        Path(project_dir, "build_opt.tcl"),
        "array set opt {\n    reset      1\n    csim       0\n    synth      1\n    cosim      0\n"
        "    validation 0\n    export     0\n    vsynth     0\n    fifo_opt   0\n}\n",
    )


def run_synthesis(hls_model: Any, opts: WriterOptions, project_dir: str, mode: str) -> dict[str, Any]:
    """Synthesise through hls4ml's build when the vendor tool is available (mode auto/always/never)."""
    tool = synthesis_tool(opts.vendor)
    command = synthesis_command(opts.vendor, project_dir)
    if mode == "never" or (mode == "auto" and tool is None):
        reason = "disabled (synthesize=never)" if mode == "never" else (
            f"{'vitis-run/vitis_hls' if opts.vendor == 'Vitis' else 'vivado_hls'} not on PATH")
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
