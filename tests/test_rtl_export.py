"""The RTL backend through ``export`` and ``hqrun firmware``: verified projects, the report's RTL
section, a missing simulator (project written, proof pending, install hint), a corrupted design
named to its layer, refused settings."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import firmware_cases as fc
from hqrun.errors import FirmwareError
from hqrun.firmware import export
from hqrun.firmware.backends.rtl import tools as rtl_tools
from rtl_support import needs_alkaid, needs_iverilog

torch.set_num_threads(1)
RTL = {"backend": "rtl", "synthesize": "never", "rtl": {"simulator": "iverilog"}}


@needs_alkaid
@needs_iverilog
@pytest.mark.slow
def test_export_with_the_rtl_backend_is_verified_and_reported(tmp_path):
    model = fc.jet_hetero()
    result = export(model, fc.samples(model, 40, 5), tmp_path / "fw", RTL)
    report = json.loads((tmp_path / "fw" / "report.json").read_text())
    assert result.passed and report["status"] == "PASSED" and report["backend"] == "rtl"
    assert report["simulator"].startswith("RTL simulation (iverilog")
    assert report["rtl"]["design"]["check_layer"] == "dense_4"
    assert "softmax is not part of the RTL" in report["rtl"]["design"]["notes"][0]
    assert (tmp_path / "fw" / "project" / "project.json").is_file()
    md = (tmp_path / "fw" / "report.md").read_text()
    assert "## RTL (Verilog) backend" in md and "bit-exact" in md


@needs_alkaid
def test_missing_simulator_writes_the_project_and_names_the_package(tmp_path, monkeypatch):
    real = rtl_tools.which
    monkeypatch.setattr(rtl_tools, "which",
                        lambda p: None if p in ("iverilog", "vvp", "verilator") else real(p))
    model = fc.jet_q6()
    result = export(model, fc.samples(model, 20, 1), tmp_path / "fw", RTL)
    report = json.loads((tmp_path / "fw" / "report.json").read_text())
    assert not result.passed and report["status"] == "UNVERIFIED"
    assert "apt-get install iverilog" in report["summary"]
    assert (tmp_path / "fw" / "project" / "project.json").is_file()


@needs_alkaid
@needs_iverilog
@pytest.mark.slow
def test_a_corrupted_design_is_named_to_its_layer(tmp_path, monkeypatch):
    from hqrun.firmware.backends.rtl import backend as rtl_backend

    original = rtl_backend.write

    def corrupt_then_write(ir, out_dir, opts):
        bad = copy.deepcopy(ir)          # the design is built from a corrupted copy of the IR
        bad.layer("dense_2").weight[0, 0] += 1
        return original(bad, out_dir, opts)

    monkeypatch.setattr(rtl_backend, "write", corrupt_then_write)
    model = fc.jet_q6()
    with pytest.raises(FirmwareError, match="MISMATCH"):
        export(model, fc.samples(model, 20, 2), tmp_path / "fw", RTL)
    report = json.loads((tmp_path / "fw.FAILED" / "report.json").read_text())
    assert report["status"] == "FAILED"
    assert report["verification"]["first_divergent_layer"] == "dense_2"


@pytest.mark.parametrize("bad, fragment", [
    ({"rtl": {"latency_cycles": -1}}, "latency_cycles"),
    ({"rtl": {"mapper": "fast"}}, "mapper"),
    ({"rtl": {"simulator": "modelsim"}}, "simulator"),
    ({"rtl": {"family": "stratix"}}, "family"),
    ({"project_name": "top; rm -rf /"}, "project_name"),
    ({"synth_timeout_s": 0}, "synth_timeout_s"),
])
def test_bad_rtl_settings_are_refused_before_any_work(bad, fragment, tmp_path):
    cfg = {**RTL, **bad, "rtl": {**RTL["rtl"], **bad.get("rtl", {})}}
    with pytest.raises(FirmwareError, match=fragment):
        export(fc.jet_q6(), np.zeros((2, 16)), tmp_path / "fw", cfg)
    assert not (tmp_path / "fw").exists()


@needs_alkaid
@needs_iverilog
@pytest.mark.slow
def test_firmware_command_builds_rtl_from_a_run_dir(tmp_path):
    """`hqrun firmware run=<dir> firmware.backend=rtl` end to end on a tiny training run."""
    from jets_data import write_tiny_jets

    data = write_tiny_jets(tmp_path / "jets.npz", n=300, seed=0, spread=1.5)
    hqrun = Path(sys.executable).parent / "hqrun"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run_dir = tmp_path / "run"
    train = subprocess.run([str(hqrun), "train", "data=jets_file", f"data.path={data}", "quant=q6",
                            "trainer.max_epochs=2", "trainer.progress_bar=false",
                            f"hydra.run.dir={run_dir}"], capture_output=True, text=True, env=env,
                           timeout=600, cwd=tmp_path)
    assert train.returncode == 0, train.stderr[-2000:]
    res = subprocess.run([str(hqrun), "firmware", f"run={run_dir}", "firmware.backend=rtl",
                          "firmware.synthesize=never", "firmware.max_samples=30",
                          "firmware.rtl.simulator=iverilog",
                          f"hydra.run.dir={tmp_path / 'fwlog'}"], capture_output=True, text=True,
                         env=env, timeout=900, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads((run_dir / "firmware" / "report.json").read_text())
    assert report["backend"] == "rtl" and report["status"] == "PASSED"
    assert OmegaConf.load(run_dir / "config.yaml").quant.name == "q6"
