"""Firmware without a compiler: integer emulation vs PyTorch, fixed-point casts, refusals.

These run in a few seconds; the C-simulation tests (test_firmware_csim.py) build on the same
models, so a mismatch there is either hls4ml or the writer, never the reference.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import OrderedDict
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import firmware_cases as fc
from hqrun.errors import FirmwareError
from hqrun.firmware import build_ir, emulate, quantize_samples
from hqrun.firmware.emulate import requantize
from hqrun.firmware.verify import torch_reference
from hqrun.models import QSequential, build_model
from hqrun.quantizers.fixedpoint import FixedPointType
from hqrun.quantizers.layers import (
    QAveragePooling2D,
    QConv2D,
    QDense,
    QDepthwiseConv2D,
    QInput,
)

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


def _emulation_matches_torch(model: QSequential, n: int = 300, seed: int = 0) -> None:
    ir = build_ir(model, model.input_shape)
    x = quantize_samples(fc.samples(model, n, seed), ir.input_type)
    emu = emulate(ir, x)
    last = ir.last_quantized()
    values = emu.values(last.name).reshape(n, -1)
    logits = torch_reference(model, x).reshape(n, -1)
    assert np.array_equal(values, logits), f"emulation != torch at {last.name}"
    # every fixed-point layer output lies on its type's grid and in range
    for layer in ir.layers:
        if layer.name in emu.codes:
            codes = emu.codes[layer.name]
            assert codes.min() >= layer.out_type.min_code and codes.max() <= layer.out_type.max_code


@pytest.mark.parametrize("case", sorted(fc.NAMED))
def test_emulation_equals_pytorch_named(case):
    _emulation_matches_torch(fc.NAMED[case]())


def test_emulation_equals_pytorch_fuzz():
    for seed in range(24):
        _emulation_matches_torch(fc.random_model(seed), n=200, seed=seed)


_types = st.builds(
    FixedPointType,
    width=st.integers(2, 16),
    integer=st.integers(-3, 12),
    signed=st.booleans(),
    rounding=st.sampled_from(["RND_CONV", "RND", "TRN"]),
    overflow=st.sampled_from(["SAT", "SAT_SYM", "WRAP"]),
)


@settings(deadline=None, max_examples=200)
@given(t=_types, frac=st.integers(-2, 14),
       codes=st.lists(st.integers(-(2**20), 2**20), min_size=1, max_size=20))
def test_requantize_is_an_ap_fixed_cast(t, frac, codes):
    """Integer cast == FixedPointType.quantize on the exact values (both follow ap_fixed)."""
    n = np.asarray(codes, dtype=np.int64)
    got = requantize(n, frac, t)
    values = torch.tensor(np.ldexp(n.astype(np.float64), -frac), dtype=torch.float64)
    want = t.to_int(values).numpy()
    assert np.array_equal(got, want)


def test_accumulators_hold_extreme_inputs():
    """Inputs pinned at the input type's extremes never saturate an accumulator."""
    model = fc.jet_hetero()
    ir = build_ir(model, model.input_shape)
    t = ir.input_type
    rng = np.random.default_rng(0)
    x = np.where(rng.random((400, 16)) < 0.5, t.min_value, t.max_value)
    emu = emulate(ir, x)
    for layer in ir.layers:
        if layer.op == "dense":
            codes = emu.codes[layer.name]
            assert layer.out_type == layer.accum_type
            assert codes.min() >= layer.accum_type.min_code and codes.max() <= layer.accum_type.max_code


# --------------------------------------------------------------------------------- refusals
def _jet(plan_layers: dict, default: dict | None = None) -> QSequential:
    plan = {"name": "t", "input": None, "default": default or fc.Q6["default"], "layers": plan_layers}
    return build_model({"name": "jet_dnn", "hidden": [8, 8, 8]}, plan, seed=0).eval()


@pytest.mark.parametrize("plan_layers, culprit, hint", [
    ({"dense_2": {"kernel": "quantized_bits(4,0,alpha=\"auto\")"}}, "dense_2", "auto_po2"),
    ({"dense_1": {"kernel": "stochastic_ternary()"}}, "dense_1", "stochastic"),
    ({"relu_2": {"activation": "quantized_tanh(4)"}}, "relu_2", "quantized_relu"),
    ({"relu_1": {"activation": "quantized_relu_po2(4)"}}, "relu_1", "quantized_relu"),
    # alpha scales the rounded value: no cast reproduces it (0.5 -> 1.0 under alpha=2)
    ({"relu_2": {"activation": "quantized_bits(6,2,alpha=2)"}}, "relu_2", "alpha=1"),
    ({"relu_2": {"activation": "quantized_bits(1,0,alpha=1)"}}, "relu_2", "at least 2 bits"),
])
def test_refusals_name_layer_and_fix(plan_layers, culprit, hint):
    with pytest.raises(FirmwareError) as err:
        build_ir(_jet(plan_layers), (16,))
    assert culprit in str(err.value) and hint in str(err.value)


def test_float_kernel_is_refused():
    model = build_model({"name": "jet_dnn", "hidden": [8]}, None, seed=0)
    with pytest.raises(FirmwareError, match="dense_1.*kernel"):
        build_ir(model, (16,))


def test_unsupported_layers_are_refused():
    k = "quantized_bits(4,0,alpha=1)"
    depthwise = QSequential(OrderedDict(input=QInput("quantized_bits(8,2,alpha=1)"),
                                        dw_1=QDepthwiseConv2D(2, 3, depthwise_quantizer=k)),
                            input_shape=(2, 6, 6))
    with pytest.raises(FirmwareError, match="dw_1.*depthwise"):
        build_ir(depthwise, (2, 6, 6))
    pool3 = QSequential(OrderedDict(input=QInput("quantized_bits(8,2,alpha=1)"),
                                    conv_1=QConv2D(1, 2, 2, kernel_quantizer=k, bias_quantizer=k),
                                    pool_1=QAveragePooling2D(3)), input_shape=(1, 7, 7))
    with pytest.raises(FirmwareError, match="pool_1.*power of two"):
        build_ir(pool3, (1, 7, 7))


def test_unfolded_batchnorm_is_refused_with_fix():
    model = build_model({"name": "mlp", "n_inputs": 16, "hidden": [8], "batchnorm": True},
                        fc.Q6, seed=0)
    fc._randomise(model, torch.Generator().manual_seed(0))
    with pytest.raises(FirmwareError, match="bn_1.*QDenseBatchnorm"):
        build_ir(model, (16,))


def test_refusal_writes_nothing(tmp_path):
    from hqrun.firmware import export

    model = _jet({"dense_2": {"kernel": "quantized_bits(4,0,alpha=\"auto\")"}})
    out = tmp_path / "fw"
    with pytest.raises(FirmwareError):
        export(model, np.zeros((4, 16)), out)
    assert list(tmp_path.iterdir()) == []


def test_failed_verification_is_marked_failed(tmp_path, monkeypatch):
    """A C-sim that disagrees must not leave a project that looks good (no compile needed)."""
    import hqrun.firmware.api as api
    from hqrun.firmware import SimResult
    from hqrun.firmware.backends.hls4ml import Hls4mlBackend

    def fake_csim(self, project, ir, x):
        emu = emulate(ir, x)
        codes = {k: v.copy() for k, v in emu.codes.items() if k != ir.layers[0].name}
        codes["relu_2"][3, 1] += 1  # a one-LSB disagreement inside the network
        codes["dense_3"][3, 0] += 1
        codes["relu_3"][3, 0] += 1
        codes["dense_4"][3, 0] += 1
        out = np.ldexp(codes["dense_4"].astype(np.float64), -ir.layers[-2].out_type.fractional)
        return SimResult(codes, {}, out, 0.0)

    monkeypatch.setattr(Hls4mlBackend, "simulate", fake_csim)
    model = fc.jet_q6()
    out = tmp_path / "fw"
    with pytest.raises(FirmwareError, match="relu_2"):
        api.export(model, fc.samples(model, 10, 0), out, {"synthesize": "never"})
    assert not out.exists()
    report = json.loads((tmp_path / "fw.FAILED" / "report.json").read_text())
    assert report["status"] == "FAILED"
    v = report["verification"]
    assert v["first_mismatch_sample"] == 3 and v["first_divergent_layer"] == "relu_2"
    assert not any(p.name.startswith(".fw.tmp") for p in tmp_path.iterdir())


# --------------------------------------------------------------------------------- config/imports
def test_firmware_config_matches_yaml():
    from omegaconf import OmegaConf

    from hqrun.firmware import ExportConfig
    from hqrun.firmware_command import FirmwareConfig

    yaml_keys = set(OmegaConf.load(REPO / "conf" / "firmware" / "default.yaml").keys())
    assert yaml_keys == {f.name for f in fields(FirmwareConfig)}
    merged = OmegaConf.merge(OmegaConf.structured(FirmwareConfig),
                             OmegaConf.load(REPO / "conf" / "firmware" / "default.yaml"))
    assert merged.part == "xcvu9p-flgb2104-2-e" and merged.backend == "hls4ml"
    assert merged.vendor == "Vitis" and merged.rtl.latency_cycles == 0
    # every export knob is settable from the config group
    assert {f.name for f in fields(ExportConfig)} <= yaml_keys


def test_import_is_light_and_hls4ml_imports_from_repo_root():
    code = (
        "import sys; import hqrun.firmware as f; "
        "heavy = [m for m in ('hls4ml', 'hydra', 'pytorch_lightning', 'ray') if m in sys.modules]; "
        "assert not heavy, heavy; "
        "from hqrun.firmware.backends.hls4ml import import_hls4ml; h = import_hls4ml(); "
        "assert hasattr(sys.modules['quantizers'], 'get_fixed_quantizer_np'); print(h.__version__)"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env=env, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "1.3.0"


def test_hls_precision_strings():
    from hqrun.firmware.backends.hls4ml import hls_precision

    t = FixedPointType(6, 0, False, "RND_CONV", "SAT")
    assert hls_precision(t) == "ap_ufixed<6,0,AP_RND_CONV,AP_SAT>"
    assert hls_precision(FixedPointType(23, 8), modes=False) == "ap_fixed<23,8>"
    assert math.isclose(FixedPointType(6, 1).lsb, 1 / 32)


def test_synthesis_without_vendor_tools_gives_the_command(tmp_path, monkeypatch):
    from hqrun.firmware.backends.hls4ml import WriterOptions
    from hqrun.firmware.backends.hls4ml.synthesis import run_synthesis, write_build_options

    monkeypatch.setenv("PATH", str(tmp_path))  # no vitis-run / vivado_hls anywhere
    got = run_synthesis(None, WriterOptions(), str(tmp_path), "auto")
    assert got["status"] == "not run" and got["command"].endswith("vitis-run --tcl build_prj.tcl --mode hls")
    got = run_synthesis(None, WriterOptions(vendor="Vivado"), str(tmp_path), "always")
    assert got["status"] == "failed" and "vivado_hls -f build_prj.tcl" in got["command"]
    write_build_options(str(tmp_path))
    text = (tmp_path / "build_opt.tcl").read_text()
    assert "synth      1" in text and "csim       0" in text


@pytest.mark.parametrize("bad", [{"backend": "Quartus"}, {"vendor": "Quartus"}, {"io_type": "io_stream"},
                                 {"reuse_factor": 0}, {"synthesize": "maybe"},
                                 {"input_type": "fixed<8"}])
def test_bad_export_config_is_refused(bad, tmp_path):
    from hqrun.firmware import export

    with pytest.raises(FirmwareError):
        export(fc.jet_q6(), np.zeros((2, 16)), tmp_path / "fw", bad)
    assert not (tmp_path / "fw").exists()


def test_plain_sequential_with_float_relu_and_softmax():
    """A plain nn.Sequential works too; an unquantized ReLU is exact (it only drops negatives)."""
    torch.manual_seed(0)
    k = "quantized_bits(5,1,alpha=1)"
    model = torch.nn.Sequential(OrderedDict(
        input=QInput("quantized_bits(8,3,alpha=1)"),
        dense_1=QDense(6, 4, kernel_quantizer=k, bias_quantizer=k),
        relu_1=torch.nn.ReLU(),
        dense_2=QDense(4, 3, kernel_quantizer=k, bias_quantizer=k),
        softmax=torch.nn.Softmax(dim=-1))).eval()
    ir = build_ir(model, (6,))
    assert [layer.op for layer in ir.layers] == ["input", "dense", "relu", "dense", "softmax"]
    x = quantize_samples(np.random.default_rng(0).normal(0, 3, (100, 6)), ir.input_type)
    emu = emulate(ir, x)
    assert np.array_equal(emu.values("dense_2"), torch_reference(model, x))
    with torch.no_grad():
        probs = model(torch.as_tensor(x, dtype=torch.float64).float()).double().numpy()
    assert np.allclose(emu.floats["softmax"], probs, atol=1e-6)


_FAKE_VITIS = r"""#!/bin/sh
# Stand-in for vitis-run: writes the files hls4ml's report parser reads, as Vitis HLS would.
P=hqrun_fw_prj
mkdir -p $P/solution1/syn/report
echo '<AutoPilot:project xmlns:AutoPilot="x"><solutions><solution name="solution1"/></solutions></AutoPilot:project>' > $P/hls.app
cat > $P/solution1/syn/report/hqrun_fw_csynth.xml <<XML
<profile><UserAssignments><TargetClockPeriod>5.00</TargetClockPeriod></UserAssignments>
<PerformanceEstimates><SummaryOfTimingAnalysis><EstimatedClockPeriod>4.10</EstimatedClockPeriod></SummaryOfTimingAnalysis>
<SummaryOfOverallLatency><Best-caseLatency>7</Best-caseLatency><Worst-caseLatency>7</Worst-caseLatency>
<Interval-min>1</Interval-min><Interval-max>1</Interval-max></SummaryOfOverallLatency></PerformanceEstimates>
<AreaEstimates><Resources><BRAM_18K>0</BRAM_18K><DSP>2</DSP><FF>321</FF><LUT>4321</LUT><URAM>0</URAM></Resources>
<AvailableResources><BRAM_18K>4320</BRAM_18K><DSP>6840</DSP><FF>2364480</FF><LUT>1182240</LUT><URAM>960</URAM></AvailableResources></AreaEstimates></profile>
XML
"""


def test_synthesis_report_is_parsed_when_the_tool_exists(tmp_path, monkeypatch):
    """With a vendor tool on PATH the export runs hls4ml's build and parses its report."""
    from hqrun.firmware.backends.hls4ml import WriterOptions, to_hls4ml
    from hqrun.firmware.backends.hls4ml.synthesis import run_synthesis

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "vitis-run"
    fake.write_text(_FAKE_VITIS)
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    model = _jet({})
    ir = build_ir(model, (16,))
    project = tmp_path / "project"
    hls_model = to_hls4ml(ir, str(project), WriterOptions())
    got = run_synthesis(hls_model, WriterOptions(), str(project), "auto")
    assert got["status"] == "done", got
    summary = got["report"]["summary"]
    assert summary["LUT"] == "4321" and summary["DSP"] == "2" and summary["BestLatency"] == "7"
    assert (project / "build_opt.tcl").read_text().count("synth      1") == 1


def test_cli_refusal_is_one_paragraph_and_writes_nothing(tmp_path):
    """`hqrun firmware run=<dir>` on a non-deployable plan: exit 2, the culprits named, no files."""
    from omegaconf import OmegaConf

    from hqrun.models import Plan

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    plan = dict(fc.Q6, layers={"dense_4": {"kernel": "stochastic_ternary()"},
                               "relu_1": {"activation": "quantized_tanh(4)"}})
    model = build_model({"name": "jet_dnn"}, plan, seed=0)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(
        {"model": {"name": "jet_dnn"}, "data": {"name": "jets_sample"}, "seed": 0})))
    Plan.from_dict(plan).to_yaml(run_dir / "plan.yaml")
    torch.save(model.state_dict(), run_dir / "model.pt")
    hqrun = Path(sys.executable).parent / "hqrun"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([str(hqrun), "firmware", f"run={run_dir}", f"hydra.run.dir={tmp_path / 'hydra'}"],
                         capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "hqrun: error:" in res.stderr and "Traceback" not in res.stderr
    assert "dense_4" in res.stderr and "relu_1" in res.stderr and "stochastic" in res.stderr
    assert not (run_dir / "firmware").exists()


def test_foreign_out_dir_is_not_overwritten(tmp_path):
    from hqrun.firmware import export

    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FirmwareError, match="not an hqrun firmware directory"):
        export(fc.jet_q6(), np.zeros((2, 16)), out)
    assert (out / "notes.txt").read_text() == "keep me"


def test_the_synthesis_line_names_a_later_command_only_when_there_is_one():
    from hqrun.firmware_command import synthesis_line

    assert synthesis_line({"status": "done"}) is None
    rtl = synthesis_line({"status": "not run", "reason": "disabled (synthesize=never)"})
    assert rtl == "hqrun firmware: synthesis not run (disabled (synthesize=never))"
    hls = synthesis_line({"status": "not run", "reason": "no vendor tool", "command": "vitis-run x"})
    assert hls.endswith("; later: vitis-run x")
    assert synthesis_line({"status": "failed", "reason": "boom"}).startswith("hqrun firmware: synthesis failed")
