"""Yosys synthesis of RTL designs: counts parsed from a real run, and the time-out paragraph."""

from __future__ import annotations

import json

import pytest

import firmware_cases as fc
from hqrun.firmware import build_ir
from hqrun.firmware.backends import rtl
from rtl_support import needs_alkaid, needs_yosys

pytestmark = [needs_alkaid, needs_yosys]


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory):
    model = fc.random_model(3)  # 8 inputs, two dense layers: a few hundred LUTs
    ir = build_ir(model, tuple(model.input_shape))
    return rtl.write(ir, tmp_path_factory.mktemp("synth") / "rtl", rtl.RtlOptions(latency_cycles=2))


@pytest.mark.slow
@pytest.mark.parametrize("mapper", ["abc", "abc9"])
def test_synthesis_counts_match_the_design(tiny_project, mapper):
    result = rtl.synthesise(tiny_project, rtl.RtlOptions(latency_cycles=2, mapper=mapper))
    assert result["tool"] == "yosys" and result["tool_version"].startswith("Yosys")
    assert result["family"] == "xcup" and result["part"] == "xcvu9p-flgb2104-2-e"
    assert "synth_xilinx -family xcup -top hqrun_rtl -noiopad -flatten" in result["script"]
    assert result["abc"] == mapper and result["flatten"] is True  # read back from Yosys's log
    assert not any(cell.endswith("BUF") for cell in result["cells"])  # -noiopad: no I/O buffers
    # at most one flip-flop per register bit of alkaid's pipeline (Yosys drops constant ones);
    # distributed arithmetic: no DSP, no BRAM
    assert 0 < result["ff"] <= tiny_project.estimate["ff"]
    assert result["dsp"] == 0 and result["bram"] == 0
    assert result["lut"] > 0 and result["carry"] > 0 and result["seconds"] > 0
    assert result["lut"] == sum(n for c, n in result["cells"].items() if c.startswith("LUT"))
    assert result["fmax"] is None and "no timing" in result["timing_note"]
    saved = json.loads((tiny_project.out_dir / "synthesis.json").read_text())
    assert saved["lut"] == result["lut"]
    section = rtl.report_section(tiny_project, None, {"status": "done", **result})
    err = section["estimate_vs_synthesis"]["lut_relative_error"]
    assert err == round((tiny_project.estimate["lut"] - result["lut"]) / result["lut"], 4)
    assert any("| LUT |" in line for line in rtl.report_markdown(section))


def test_synthesis_time_out_is_one_paragraph(tiny_project):
    opts = rtl.RtlOptions(latency_cycles=2, synth_timeout_s=0.2)
    with pytest.raises(rtl.RtlSynthesisTimeout, match="within 0.2 s .firmware.synth_timeout_s.") as err:
        rtl.synthesise(tiny_project, opts)
    assert "\n" not in str(err.value)
    status = rtl.synthesis_status(tiny_project, opts)
    assert status["status"] == "timed out" and "Raise the time-out" in status["reason"]
