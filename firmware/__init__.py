"""hqrun.firmware: trained hqrun model → fixed-point IR → hls4ml project → bit-exact C-sim check.

Flow (see docs/firmware.md): :func:`build_ir` reads the model (types from the quantizers and the
shared type inference, refusing what cannot be exact), :func:`emulate` is hqrun's integer
reference, :func:`to_hls4ml` writes the HLS project through hls4ml's public API, :func:`run_csim`
compiles and traces its C simulation, :func:`verify` compares, and :func:`export` does it all
and writes ``report.json``/``report.md``. Importing this package does not import hls4ml, Hydra,
Lightning or Ray; hls4ml is imported on first use.
"""

from .api import ExportConfig, FirmwareResult, export, quantize_samples
from .csim import CSimResult, run_csim
from .emulate import Emulation, emulate
from .hls4ml_writer import WriterOptions, to_hls4ml
from .convert import build_ir
from .ir import FirmwareIR, IRLayer
from .verify import Verification, verify

__all__ = [
    "CSimResult",
    "Emulation",
    "ExportConfig",
    "FirmwareIR",
    "FirmwareResult",
    "IRLayer",
    "Verification",
    "WriterOptions",
    "build_ir",
    "emulate",
    "export",
    "quantize_samples",
    "run_csim",
    "to_hls4ml",
    "verify",
]
