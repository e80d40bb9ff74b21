"""The RTL backend behind the firmware's backend protocol (``firmware.backend=rtl``).

It maps the firmware settings onto :class:`RtlOptions` (``firmware.rtl.*`` plus the shared part,
clock, project name and synthesis time-out), and hands the pieces of this package — writer,
simulator, probe diagnosis, Yosys — to :func:`hqrun.firmware.export`, which runs them in its
usual order and writes the common report.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from hqrun.safenames import check_identifier

from .. import SimResult, register_backend
from ...emulate import Emulation, to_values
from ...ir import FirmwareIR
from .diagnose import first_divergent_layer
from .limits import check_layer_widths
from .lower import layers_to_build
from .options import RtlOptions
from .project import RtlProject, write
from .report import report_markdown, report_section
from .simulate import simulate
from .synthesise import synthesis_status

__all__ = ["RtlBackend", "rtl_options"]


def rtl_options(options: Any) -> RtlOptions:
    """The RTL options of an ExportConfig (``firmware.rtl.*`` + part, clock, name, time-out)."""
    rtl = options.rtl if isinstance(options.rtl, dict) else asdict(options.rtl)
    return RtlOptions.from_mapping({**rtl, "top_name": options.project_name, "part": options.part,
                                    "clock_period": float(options.clock_period),
                                    "synth_timeout_s": float(options.synth_timeout_s)})


@register_backend("rtl")
class RtlBackend:
    """Verilog through alkaid, bit-exact by RTL simulation, counted by Yosys."""

    name = "rtl"

    @staticmethod
    def missing_tools() -> str | None:
        """What is missing to write and simulate a design here (None: nothing)."""
        from hqrun.errors import FirmwareError

        from .alkaid_api import alkaid
        from .tools import find_iverilog, find_verilator

        try:
            alkaid()
        except FirmwareError as err:
            return str(err)
        if find_verilator() is None:
            try:
                find_iverilog()
            except FirmwareError as err:
                return str(err)
        return None

    def validate(self, options: Any) -> None:
        from hqrun.errors import FirmwareError

        check_identifier(options.project_name, "firmware.project_name", error=FirmwareError)
        rtl_options(options)

    def check(self, ir: FirmwareIR, options: Any) -> None:
        for layer in layers_to_build(ir):
            check_layer_widths(layer)

    def write(self, ir: FirmwareIR, project_dir: Path, options: Any) -> RtlProject:
        return write(ir, project_dir, rtl_options(options))

    def simulate(self, project: RtlProject, ir: FirmwareIR, x: np.ndarray) -> SimResult:
        t = ir.input_type
        codes = np.round(np.ldexp(np.asarray(x, dtype=np.float64), t.fractional)).astype(np.int64)
        result = simulate(project, codes)
        check = ir.layer(project.check_layer)
        return SimResult({project.check_layer: result.codes}, {},
                         to_values(result.codes, check.out_type).reshape(len(codes), -1),
                         result.seconds,
                         {"simulator": f"RTL simulation ({result.simulator})",
                          "simulator_version": result.simulator_version})

    def diagnose(self, project: RtlProject, ir: FirmwareIR, emu: Emulation, x: np.ndarray,
                 samples: list[int]) -> tuple[str | None, str]:
        """The first layer whose codes differ, from a probe design exposing every layer."""
        t = ir.input_type
        codes = np.round(np.ldexp(np.asarray(x, dtype=np.float64), t.fractional)).astype(np.int64)
        opts = RtlOptions.from_mapping(project.options)
        return first_divergent_layer(project.ir if project.ir is not None else ir, emu, codes,
                                     samples, opts)

    def synthesise(self, project: RtlProject, options: Any) -> dict[str, Any]:
        if options.synthesize == "never":
            return {"status": "not run", "reason": "disabled (synthesize=never)"}
        result = synthesis_status(project, rtl_options(options))
        if result["status"] == "done":   # measured counts under hqrun's names (study reports)
            result["resources"] = {k: result[k] for k in ("lut", "ff", "dsp", "carry", "bram")}
            result["resources"]["latency_cycles"] = project.latency_cycles
        if options.synthesize == "always" and result["status"] != "done":
            result = {**result, "status": "failed"}
        return result

    def describe(self, project: RtlProject, options: Any,
                 synthesis: dict[str, Any]) -> dict[str, Any]:
        return {"project_name": project.top, "part": options.part,
                "clock_period_ns": options.clock_period,
                "latency_cycles": project.latency_cycles,
                "rtl": report_section(project, None, synthesis)}

    def report_lines(self, report: dict[str, Any]) -> list[str]:
        return [""] + report_markdown(report["rtl"])
