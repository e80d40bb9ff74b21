"""hqrun.firmware: trained hqrun model → fixed-point IR → backend project → bit-exact simulation.

Flow (see docs/firmware.md): :func:`build_ir` reads the model (types from the shared type
inference, one converter per layer kind, then the passes of :mod:`.passes` in their declared
order), :func:`emulate` is hqrun's integer reference, a backend from :mod:`.backends` writes and
simulates the project (``hls4ml``: HLS project + C simulation; ``rtl``: Verilog + RTL
simulation), :func:`verify` compares, and :func:`export` does it all and writes
``report.json``/``report.md``. Importing this package imports neither hls4ml nor the RTL tools,
Hydra, Lightning or Ray; backends load their tools on first use.
"""

from .api import ExportConfig, FirmwareResult, export, quantize_samples
from .backends import Backend, SimResult, backend_names, get_backend, register_backend
from .backends.hls4ml import WriterOptions, run_csim, to_hls4ml
from .convert import build_ir
from .emulate import Emulation, emulate
from .ir import FirmwareIR, IRLayer
from .verify import Verification, verify

__all__ = [
    "Backend",
    "Emulation",
    "ExportConfig",
    "FirmwareIR",
    "FirmwareResult",
    "IRLayer",
    "SimResult",
    "Verification",
    "WriterOptions",
    "backend_names",
    "build_ir",
    "emulate",
    "export",
    "get_backend",
    "quantize_samples",
    "register_backend",
    "run_csim",
    "to_hls4ml",
    "verify",
]
