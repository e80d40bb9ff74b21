"""``verify``: RTL simulation vs hqrun's integer emulation, and where they part on a mismatch.

Why a probe design: the real design is one alkaid program for the whole model, so its layers
leave no signals to inspect. On a mismatch the same IR the design was built from is traced again
with *every* layer's output exposed as an output port (combinational), simulated on the first
differing samples only, and compared layer by layer with the emulation: the first layer whose
codes differ is named, with the element and both values. If every layer of the probe agrees,
the written Verilog differs from what alkaid generates for that IR (it was edited, or the fault
is in pipelining/code generation), and the report says exactly that.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...emulate import Emulation, emulate, to_values
from ...ir import FirmwareIR
from .lower import trace_ir
from .options import RtlOptions
from .packing import PortLayout
from .project import RtlProject, write_design
from .simulate import run_design, simulate

__all__ = ["RtlVerification", "verify", "first_divergent_layer", "PROBE_SAMPLES"]

#: Mismatching samples the probe design is simulated on (it is slow to simulate, and one suffices).
PROBE_SAMPLES = 4


@dataclass
class RtlVerification:
    """Outcome of one RTL check (counts over ``n_samples``)."""

    n_samples: int
    check_layer: str
    check_type: str
    equal: bool
    n_mismatch: int
    simulator: str
    simulator_version: str
    seconds: float
    first_mismatch_sample: int | None = None
    first_divergent_layer: str | None = None
    mismatch_detail: str | None = None

    @property
    def passed(self) -> bool:
        return self.equal

    def summary(self) -> str:
        if self.equal:
            return (f"bit-exact: RTL simulation ({self.simulator}) identical to hqrun's fixed-point "
                    f"emulation on {self.n_samples}/{self.n_samples} samples at {self.check_layer!r} "
                    f"({self.check_type})")
        layer = self.first_divergent_layer or "none found (see detail)"
        return (f"MISMATCH: RTL simulation ({self.simulator}) differs from the emulation on "
                f"{self.n_mismatch}/{self.n_samples} samples; first at sample "
                f"{self.first_mismatch_sample}, first divergent layer {layer!r}. "
                f"{self.mismatch_detail or ''}").strip()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(passed=self.passed, summary=self.summary(), seconds=round(self.seconds, 3))
        return out


def first_divergent_layer(build_ir: FirmwareIR, emu: Emulation, x_codes: np.ndarray,
                          samples: list[int], opts: RtlOptions) -> tuple[str | None, str]:
    """Simulate a probe of ``build_ir`` (every layer exposed) on ``samples``; name the first
    layer whose codes differ from ``emu``, with the element and both values."""
    traced = trace_ir(build_ir, probe=True)
    probe_opts = RtlOptions(**{**opts.to_dict(), "latency_cycles": 0, "top_name": "hqrun_probe"})
    by_name = {layer.name: layer for layer in build_ir.layers}
    with tempfile.TemporaryDirectory(prefix="hqrun-rtlprobe-") as tmp:
        fsm, _, sources = write_design(traced, Path(tmp), probe_opts)
        out_layout = PortLayout.from_precisions(fsm.out_signals[0].precisions)
        fracs = np.zeros(len(out_layout.fields), dtype=np.int64)
        for name, (a, b) in traced.exposed.items():
            fracs[a:b] = by_name[name].out_type.fractional
        x = np.asarray(x_codes)[samples]
        got, _, _ = run_design(Path(tmp), sources, probe_opts.top_name, 0,
                               PortLayout.from_precisions(fsm.inp_signals[0].precisions), out_layout,
                               x.reshape(len(samples), -1), build_ir.input_type.fractional, fracs,
                               "iverilog", float(opts.sim_timeout_s), "RTL probe design")
    for name, (a, b) in traced.exposed.items():
        ref = emu.codes[name][samples].reshape(len(samples), -1)
        mine = got[:, a:b]
        diff = np.argwhere(ref != mine)
        if diff.size:
            row, elem = (int(v) for v in diff[0])
            t = by_name[name].out_type
            return name, (f"layer {name!r} element {elem} of sample {samples[row]}: emulation "
                          f"{float(to_values(ref[row, elem], t))!r}, RTL "
                          f"{float(to_values(mine[row, elem], t))!r} (type {t.hls_name})")
    return None, ("every layer of a probe design traced from the same IR agrees with the emulation "
                  "on these samples, so the written Verilog differs from what alkaid generates for "
                  "this IR (it was edited, or the fault is in pipelining or code generation)")


def verify(project: RtlProject, ir: FirmwareIR, x_codes: np.ndarray,
           emulation: Emulation | None = None, simulator: str | None = None) -> RtlVerification:
    """Simulate ``project`` on ``x_codes`` and compare with the emulation of ``ir`` bit for bit.

    Args:
        project: the written design.
        ir: the reference IR (the model's); the probe on a mismatch uses ``project.ir`` when the
            project was written in this process (the IR the design came from), else ``ir``.
        x_codes: input codes (N, *input_shape) of ``ir.input_type``.
        emulation: ``emulate(ir, values of x_codes)`` when the caller already has it.
    """
    x = np.asarray(x_codes, dtype=np.int64)
    emu = emulation if emulation is not None else emulate(ir, to_values(x, ir.input_type))
    t0 = time.perf_counter()
    sim = simulate(project, x, simulator)
    ref = emu.codes[project.check_layer].reshape(sim.codes.shape)
    n = int(x.shape[0])
    bad = np.any((ref != sim.codes).reshape(n, -1), axis=1)
    v = RtlVerification(n, project.check_layer, project.check_type, not bool(bad.any()),
                        int(bad.sum()), sim.simulator, sim.simulator_version, 0.0)
    if bad.any():
        rows = [int(i) for i in np.flatnonzero(bad)[:PROBE_SAMPLES]]
        v.first_mismatch_sample = rows[0]
        opts = RtlOptions.from_mapping(project.options)
        v.first_divergent_layer, v.mismatch_detail = first_divergent_layer(
            project.ir if project.ir is not None else ir, emu, x, rows, opts)
    v.seconds = time.perf_counter() - t0
    return v
