"""Fields and defaults of the firmware settings, defined once (stdlib only, so it stays light).

Three classes use them: :class:`hqrun.firmware.WriterOptions` (the HLS project knobs),
:class:`hqrun.firmware.ExportConfig` (everything ``export`` needs) and
:class:`hqrun.firmware_command.FirmwareConfig` (the ``conf/firmware`` schema, which adds
``out_dir`` and ``estimate``). This module imports no torch, so validating the ``firmware``
config group does not load the firmware package.

Field order is that of ``conf/firmware/default.yaml`` (it shows in the composed config and in
``report.json``): project knobs, then the export-only fields, then the softmax fields.
:class:`ExportFields` gets that order from its two bases: a dataclass collects fields along its
reversed MRO, so :class:`_ExportOnlyFields` places its fields before :class:`WriterFields` adds
the softmax ones.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ProjectFields:
    """Device, clock and design of the generated HLS project."""

    backend: str = "Vitis"  # Vitis (default) | Vivado
    part: str = "xcvu9p-flgb2104-2-e"  # Virtex UltraScale+ VU9P, as in the paper
    clock_period: float = 5.0  # ns
    reuse_factor: int = 1
    strategy: str = "Latency"
    io_type: str = "io_parallel"
    project_name: str = "hqrun_fw"


@dataclass
class WriterFields(ProjectFields):
    """The fields of :class:`hqrun.firmware.WriterOptions`."""

    softmax_result: str = "ap_ufixed<16,0,AP_RND,AP_SAT>"
    softmax_table_size: int = 1024


@dataclass
class _ExportOnlyFields(ProjectFields):
    input_type: str = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"  # used when the plan has no input quantizer
    max_samples: int = 2000  # test samples C-simulated (whole test split up to this cap)
    synthesize: str = "auto"  # auto (when vitis-run/vivado_hls is on PATH) | always | never


@dataclass
class ExportFields(WriterFields, _ExportOnlyFields):
    """The fields of :class:`hqrun.firmware.ExportConfig`: project, export-only, softmax."""
