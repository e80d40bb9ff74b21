"""The two RTL simulators hqrun drives, behind one call, and the rule that picks one.

Why two: Icarus Verilog starts in about a second but is event driven, ~0.1 s per sample of a
jet-sized design; Verilator compiles the design into C++ once (~25 s for the jet model at -O0)
and then runs thousands of samples in milliseconds. Both run the very same testbench file, so
the choice changes speed, never the result; the report records which one ran.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Sequence

from hqrun.errors import FirmwareError

from .testbench import TB_TOP
from .tools import RtlToolMissing, Tool, find_iverilog, find_verilator, run_tool

__all__ = ["SIMULATORS", "AUTO_VERILATOR_MIN_SAMPLES", "choose_simulator", "run_simulator"]

SIMULATORS = ("auto", "iverilog", "verilator")
#: With ``simulator=auto``, batches at least this large go to Verilator when it is installed.
AUTO_VERILATOR_MIN_SAMPLES = 300

_VERILATOR_FLAGS = [
    "--cc", "--exe", "--main", "--timing", "--build", "-j", "2",
    "-MAKEFLAGS", "OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0",  # C++ compile time dominates
    "-Wno-fatal", "-Wno-lint", "-Wno-style",
    # lint codes newer than Debian's Verilator 5.006 that alkaid's sources name in pragmas
    "-Wfuture-WIDTHTRUNC", "-Wfuture-WIDTHEXPAND",
]


def choose_simulator(preference: str, n_samples: int) -> tuple[str, Tool]:
    """(name, tool) of the simulator to run; :class:`RtlToolMissing` when none fits."""
    if preference not in SIMULATORS:
        raise FirmwareError(f"RTL simulator={preference!r}: use one of {', '.join(SIMULATORS)}.")
    if preference in ("auto", "verilator"):
        verilator = find_verilator()
        if verilator is not None and (preference == "verilator" or n_samples >= AUTO_VERILATOR_MIN_SAMPLES):
            return "verilator", verilator
        if preference == "verilator":
            raise RtlToolMissing(
                "the RTL simulator Verilator (version 5 or newer) is not installed, so the generated "
                "Verilog could not be simulated with it (the Verilog project itself was written). "
                "Install it with `sudo apt-get install verilator`, or set the RTL option "
                "simulator=iverilog (or auto)."
            )
    iverilog, _ = find_iverilog()
    return "iverilog", iverilog


def _check(res: subprocess.CompletedProcess, what: str, step: str) -> None:
    if res.returncode != 0:
        text = (res.stderr or "") + (res.stdout or "")
        errors = [ln for ln in text.splitlines() if "rror" in ln] or text.strip().splitlines()[-20:]
        raise FirmwareError(f"{what}: {step} failed (exit {res.returncode}): "
                            f"{' '.join(errors)[:1500]}")


def run_simulator(name: str, work: Path, files: Sequence[str], timeout: float, what: str) -> None:
    """Build and run the testbench ``tb.v`` plus ``files`` in ``work`` (it reads and writes
    its vector files there). Raises a one-paragraph FirmwareError on failure or time-out."""
    try:
        if name == "verilator":
            verilator = find_verilator()
            if verilator is None:
                raise RtlToolMissing("Verilator 5+ disappeared between choosing and running it.")
            _check(run_tool([*verilator.argv, *_VERILATOR_FLAGS, "--top-module", TB_TOP, "-Mdir",
                             "obj", *files], work, timeout), what, "Verilator's build")
            _check(run_tool([str(work / "obj" / f"V{TB_TOP}")], work, timeout), what, "the simulation")
        else:
            iverilog, vvp = find_iverilog()
            _check(run_tool([*iverilog.argv, "-g2005", "-s", TB_TOP, "-o", "sim.vvp", *files], work,
                            timeout), what, "iverilog's compile")
            _check(run_tool([*vvp.argv, "-n", "sim.vvp"], work, timeout), what, "the simulation")
    except subprocess.TimeoutExpired:
        raise FirmwareError(
            f"{what}: the RTL simulation did not finish within {timeout:g} s. Raise the RTL option "
            "sim_timeout_s, simulate fewer samples (firmware.max_samples), or install Verilator "
            "(`sudo apt-get install verilator`), which simulates large batches much faster."
        ) from None
