"""RTL backend: the fixed-point IR → Verilog (alkaid) → bit-exact RTL simulation → Yosys counts.

Flow (docs/firmware.md, "The RTL backend"): :func:`write` traces every layer of the IR with
alkaid's array API (distributed arithmetic: constant multiplications become shared adder
graphs, no DSPs) and writes a combinational or pipelined Verilog project; :func:`simulate` runs it
on a batch of input codes with iverilog or Verilator; :func:`verify` compares it bit for bit
with :func:`hqrun.firmware.emulate` and names the first divergent layer on a mismatch;
:func:`synthesise` runs Yosys ``synth_xilinx`` and returns LUT/FF/CARRY/DSP/BRAM counts;
:func:`report_section` gathers it for the report. Softmax is never part of the RTL: the design
outputs the logits of the last fixed-point layer, as trigger designs do.

Nothing here imports alkaid or runs a tool until called, so importing the package is light.
"""

from .diagnose import RtlVerification, verify
from .options import RtlOptions
from .project import RtlProject, write
from .report import report_markdown, report_section
from .simulate import RtlSimResult, simulate
from .synthesise import RtlSynthesisTimeout, synthesise, synthesis_status
from .tools import RtlToolMissing

__all__ = [
    "RtlOptions",
    "RtlProject",
    "RtlSimResult",
    "RtlSynthesisTimeout",
    "RtlToolMissing",
    "RtlVerification",
    "report_markdown",
    "report_section",
    "simulate",
    "synthesise",
    "synthesis_status",
    "verify",
    "write",
]

from .backend import RtlBackend, rtl_options  # noqa: E402 - registers firmware.backend=rtl

__all__ += ["RtlBackend", "rtl_options"]
