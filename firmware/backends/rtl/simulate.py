"""``simulate``: run the generated Verilog on a batch of input codes, one compile for the batch.

The outputs come back as integer codes of the check layer's type, ready to compare with
:func:`hqrun.firmware.emulate` bit for bit. The work happens in a private temporary directory
(vector files, testbench, simulator build), so the project directory stays as written and
concurrent simulations of one project do not collide.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from hqrun.errors import FirmwareError

from .packing import PortLayout, pack_hex, unpack_hex
from .project import RtlProject
from .simulators import choose_simulator, run_simulator
from .testbench import INPUT_FILE, OUTPUT_FILE, testbench_verilog

__all__ = ["RtlSimResult", "simulate", "run_design"]


@dataclass
class RtlSimResult:
    """Output codes of one simulation run (``codes``: (N, *check_shape), the check layer's LSB)."""

    codes: np.ndarray
    simulator: str
    simulator_version: str
    n_samples: int
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return {"simulator": self.simulator, "simulator_version": self.simulator_version,
                "n_samples": self.n_samples, "seconds": round(self.seconds, 3)}


def run_design(root: Path, sources: Sequence[str], top: str, latency: int, in_layout: PortLayout,
               out_layout: PortLayout, in_codes: np.ndarray, in_frac: int, out_frac: int | Sequence[int],
               simulator: str, timeout: float, what: str) -> tuple[np.ndarray, str, str]:
    """Simulate the design made of ``sources`` (relative to ``root``) on rows of input codes.

    Returns (output codes (N, n_out) at ``out_frac``, simulator name, its version line).
    """
    n = int(in_codes.shape[0])
    name, tool = choose_simulator(simulator, n)
    if n == 0:
        return np.zeros((0, len(out_layout.fields)), dtype=np.int64), name, tool.version
    with tempfile.TemporaryDirectory(prefix="hqrun-rtlsim-") as tmp:
        work = Path(tmp)
        (work / INPUT_FILE).write_text("\n".join(pack_hex(in_codes, in_frac, in_layout)) + "\n")
        (work / "tb.v").write_text(testbench_verilog(top, in_layout.width, out_layout.width, latency, n))
        files = [str((Path(root) / s).resolve()) for s in sources] + ["tb.v"]
        run_simulator(name, work, files, timeout, what)
        out_path = work / OUTPUT_FILE
        lines = out_path.read_text().splitlines() if out_path.exists() else []
    if len(lines) != n:
        raise FirmwareError(f"{what}: the simulation wrote {len(lines)} results for {n} samples.")
    return unpack_hex(lines, out_layout, out_frac, what), name, tool.version


def simulate(project: RtlProject, x_codes: np.ndarray, simulator: str | None = None) -> RtlSimResult:
    """Simulate ``project`` on input codes ``x_codes`` (N, *input_shape) of the IR's input type.

    Args:
        simulator: ``auto`` / ``iverilog`` / ``verilator``; default: the project's RTL option.

    Raises:
        RtlToolMissing: no usable simulator is installed (the message names the package).
        FirmwareError: compile/simulation failure or time-out, in one paragraph.
    """
    x = np.asarray(x_codes, dtype=np.int64)
    if tuple(x.shape[1:]) != tuple(project.input_shape):
        raise FirmwareError(f"samples have shape {tuple(x.shape[1:])}, the RTL design expects "
                            f"{tuple(project.input_shape)}.")
    t0 = time.perf_counter()
    codes, name, version = run_design(
        project.out_dir, project.sources, project.top, project.latency_cycles, project.input_layout,
        project.output_layout, x.reshape(x.shape[0], -1), project.input_frac, project.check_frac,
        simulator or str(project.options.get("simulator", "auto")),
        float(project.options.get("sim_timeout_s", 900.0)), f"RTL design {project.top!r}")
    codes = codes.reshape((x.shape[0],) + tuple(project.check_shape))
    return RtlSimResult(codes, name, version, int(x.shape[0]), time.perf_counter() - t0)
