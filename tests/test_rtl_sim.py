"""RTL backend: generated Verilog simulated (iverilog) bit-exact against hqrun's emulation.

Every named firmware case (6-bit jet model = dense/ReLU, heterogeneous plan, binary/ternary/po2/
auto_po2 kernels, QDenseBatchnorm, conv2d/avg-pool/'same' padding/Keras flatten, conv1d, narrow
logits) is written, simulated on wide-spread samples and compared code for code at the logits;
the logits are also checked against the PyTorch model. A per-element output grid, pipelined
designs, the mismatch diagnostics and 40 fuzzed random models (random heterogeneous plans,
combinational and pipelined) complete it.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import firmware_cases as fc
from hqrun.firmware import build_ir, emulate
from hqrun.firmware.backends import rtl
from hqrun.firmware.emulate import to_values
from hqrun.firmware.verify import torch_reference
from hqrun.quantizers.grid import FixedPointGrid
from rtl_support import input_codes, needs_alkaid, needs_iverilog, needs_verilator, write_and_verify

torch.set_num_threads(1)
pytestmark = [needs_alkaid, needs_iverilog]
N_SAMPLES = 40  # iverilog spends ~0.1 s per sample on a jet-sized design
N_FUZZ = 40


def _assert_equals_torch(model, ir, x, codes):
    """The RTL's logits equal the PyTorch model's (float32, else float64 as verify does)."""
    check = ir.last_quantized()
    rtl_values = to_values(codes, check.out_type).reshape(len(x), -1)
    xv = to_values(x, ir.input_type)
    ref = torch_reference(model, xv, torch.float32).reshape(len(x), -1)
    if not np.array_equal(ref, rtl_values):
        ref = torch_reference(model, xv, torch.float64).reshape(len(x), -1)
    assert np.array_equal(ref, rtl_values)


@pytest.mark.parametrize("case", sorted(fc.NAMED))
def test_named_case_is_bit_exact(tmp_path, case):
    model = fc.NAMED[case]()
    ir, x, _, project, v = write_and_verify(model, tmp_path / "rtl", N_SAMPLES, seed=11)
    assert v.passed, v.summary()
    assert v.n_samples == N_SAMPLES and v.simulator == "iverilog"
    assert "Icarus Verilog" in v.simulator_version
    assert project.check_layer == ir.last_quantized().name  # the logits, softmax left out
    sim = rtl.simulate(project, x, "iverilog")
    _assert_equals_torch(model, ir, x, sim.codes)


@pytest.mark.parametrize("latency", [2])
def test_pipelined_jet_model_is_bit_exact(tmp_path, latency):
    _, _, _, project, v = write_and_verify(fc.jet_q6(), tmp_path / "rtl", 24, seed=5,
                                           latency_cycles=latency)
    assert v.passed, v.summary()
    assert project.latency_cycles == latency
    assert project.estimate["ff"] > 0  # registers exist, and alkaid counted them


def test_project_reloads_from_disk_and_simulates(tmp_path):
    model = fc.random_model(3)
    ir, x, emu, project, v = write_and_verify(model, tmp_path / "rtl", 32, seed=1, latency_cycles=2)
    again = rtl.RtlProject.load(tmp_path / "rtl")
    assert again.ir is None and again.output_layout == project.output_layout
    sim = rtl.simulate(again, x)
    assert np.array_equal(sim.codes, emu.codes[again.check_layer])


def _with_out_grid(ir, rng):
    """A copy of ``ir`` whose first dense layer casts every output to its own format."""
    ir = copy.deepcopy(ir)
    layer = next(layer for layer in ir.layers if layer.op == "dense")
    shape = tuple(layer.out_shape)
    integer = rng.integers(-1, 5, size=shape)
    frac = rng.integers(-1, 6, size=shape)
    frac[0] = -integer[0]  # width 0: a constant-zero element
    signed = rng.random(shape) < 0.6
    grid = FixedPointGrid(signed, integer, frac, "RND_CONV", "SAT")
    layer.out_grid = grid
    layer.out_type = grid.union()
    return ir, layer


def test_per_element_out_grid_is_bit_exact(tmp_path):
    model = fc.random_model(7)
    base = build_ir(model, tuple(model.input_shape))
    ir, layer = _with_out_grid(base, np.random.default_rng(0))
    x = input_codes(model, ir, 64, seed=2)
    emu = emulate(ir, to_values(x, ir.input_type))
    assert np.all(emu.codes[layer.name][:, 0] == 0)
    plain = emulate(base, to_values(x, base.input_type)).codes[layer.name]
    assert not np.array_equal(emu.codes[layer.name], plain)  # the grid changes the results
    project = rtl.write(ir, tmp_path / "rtl", rtl.RtlOptions())
    v = rtl.verify(project, ir, x, emu)
    assert v.passed, v.summary()


def test_mismatch_names_the_corrupted_layer(tmp_path):
    model = fc.jet_hetero()
    good = build_ir(model, tuple(model.input_shape))
    bad = copy.deepcopy(good)
    dense_2 = next(layer for layer in bad.layers if layer.name == "dense_2")
    dense_2.weight[:, :] = dense_2.weight_type.max_code  # every output of dense_2 changes
    x = input_codes(model, good, 12, seed=3)
    project = rtl.write(bad, tmp_path / "rtl", rtl.RtlOptions())
    v = rtl.verify(project, good, x)
    assert not v.passed and v.n_mismatch > 0
    assert v.first_mismatch_sample is not None
    assert v.first_divergent_layer == "dense_2"
    assert "dense_2" in v.summary() and "element" in v.mismatch_detail


def test_mismatch_in_edited_verilog_is_reported(tmp_path):
    model = fc.random_model(1)
    ir, x, emu, project, v = write_and_verify(model, tmp_path / "rtl", 16, seed=4)
    assert v.passed
    top = project.out_dir / "src" / f"{project.top}.v"
    text = top.read_text()
    width = project.output_layout.width
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("assign model_out"))
    top.write_text(text.replace(line, line.rstrip(";") + f" ^ {width}'d1;"))
    v = rtl.verify(project, ir, x, emu)
    assert not v.passed and v.first_mismatch_sample == 0
    assert v.first_divergent_layer is None
    assert "written Verilog differs" in v.mismatch_detail


@pytest.mark.parametrize("seed", range(N_FUZZ))
def test_fuzzed_model_is_bit_exact(tmp_path, seed):
    model = fc.random_model(seed)
    ir, x, _, project, v = write_and_verify(model, tmp_path / "rtl", 128, seed=100 + seed,
                                           latency_cycles=seed % 3)
    assert v.passed, v.summary()
    _assert_equals_torch(model, ir, x, rtl.simulate(project, x, "iverilog").codes)


@pytest.mark.slow
@needs_verilator
def test_verilator_agrees_with_iverilog(tmp_path):
    model = fc.random_model(5)
    _, x, emu, project, v = write_and_verify(model, tmp_path / "rtl", 400, seed=9, latency_cycles=2)
    assert v.passed and v.simulator == "verilator"  # auto picks Verilator for large batches
    assert "Verilator" in v.simulator_version
    small = rtl.simulate(project, x[:20], "iverilog")
    assert np.array_equal(small.codes, emu.codes[project.check_layer][:20])
