"""One cost per model: computed once, under the input type its firmware uses, by
hqrun.cost.deployed.deployed_cost; `hqrun train`'s cost.json, `hqrun cost run=` and the firmware
report's estimate all show its numbers. QTools's convention (8-bit input) stays what `estimate`
and `hqrun cost quant=...` give, so the golden QTools numbers hold."""

from __future__ import annotations

import json

import pytest

from hqrun.cli import main
from hqrun.cost import estimate
from hqrun.cost.deployed import deployed_cost, deployed_input_type
from hqrun.models import build_model, load_plan
from jets_data import write_tiny_jets


def _model(plan: str | dict = "q6"):
    return build_model({"name": "jet_dnn"}, load_plan(plan), seed=0)


def test_deployed_cost_prices_the_firmware_input_and_says_so() -> None:
    model = _model()
    qtools = estimate(model)
    deployed = deployed_cost(model)
    assert qtools.totals["energy"] == 37834                    # QTools's published Q6 number
    assert deployed.totals["energy"] != qtools.totals["energy"]
    assert deployed.basis["what"] == "deployed" and deployed.basis["kind"] == "estimated"
    assert deployed.basis["input_type"] == "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"
    assert deployed.basis["input_from"] == "firmware.input_type"
    assert qtools.basis["what"] == "qtools" and "8" in qtools.basis["input_type"]
    assert "energy_pj" not in deployed.totals                  # one energy field, not two
    assert "basis: estimated by hqrun.cost as deployed" in deployed.table()


def test_the_firmware_builds_the_input_type_the_cost_assumes() -> None:
    from hqrun.firmware import ExportConfig, build_ir

    for fw in ({}, {"input_type": "ap_fixed<12,4,AP_RND_CONV,AP_SAT>"}):
        model = _model()
        ir = build_ir(model, (16,), ExportConfig.from_mapping(fw).parsed_input_type())
        assert deployed_cost(model, None, fw).basis["input_type"] == ir.input_type.hls_name
    plan = {**load_plan("q6").to_dict(), "input": "quantized_bits(8,3,alpha=1)"}
    model = _model(plan)
    fixed, source = deployed_input_type(model, {"input_type": "ap_fixed<12,4>"})
    assert source == "the plan's input quantizer"
    assert fixed.hls_name == build_ir(model, (16,), None).input_type.hls_name


def test_clock_and_reuse_of_the_firmware_enter_the_estimate() -> None:
    fast = deployed_cost(_model(), None, {"clock_period": 2.5})
    assert fast.totals["clock_period_ns"] == 2.5 and fast.basis["clock_period_ns"] == 2.5
    reused = deployed_cost(_model(), None, {"reuse_factor": 4})
    assert any("reuse factor 4" in flag for flag in reused.flags)


def test_firmware_report_estimate_is_the_deployed_cost() -> None:
    from hqrun.firmware_command import _estimate

    model = _model()
    fw = {"clock_period": 4.0}
    est = _estimate(model, None, fw)
    assert est["totals"] == deployed_cost(model, None, fw).totals
    assert est["kind"] == "estimated" and "as deployed" in est["basis_text"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("deployed")
    data = write_tiny_jets(root / "tiny.npz", n=400, seed=0, spread=2.0)
    run = root / "run"
    main(["train", "data=jets_file", f"data.path={data}", "quant=q4", "trainer.max_epochs=2",
          "trainer.batch_size=64", "trainer.progress_bar=false", f"hydra.run.dir={run}"])
    return run


def test_hqrun_cost_of_a_run_prints_its_cost_json(trained_run, tmp_path, capsys) -> None:
    written = json.loads((trained_run / "cost.json").read_text())
    assert written["basis"]["what"] == "deployed"
    out_dir = tmp_path / "priced"
    main(["cost", f"run={trained_run}", f"hydra.run.dir={out_dir}"])
    again = json.loads((out_dir / "cost.json").read_text())
    assert again["totals"] == written["totals"] and again["basis"] == written["basis"]
    assert "as deployed" in capsys.readouterr().out


def test_hqrun_cost_of_a_plan_keeps_qtools_convention(tmp_path, capsys) -> None:
    main(["cost", "quant=q6", f"hydra.run.dir={tmp_path / 'plan'}"])
    out = capsys.readouterr().out
    assert "energy 37834 pJ" in out and "QTools's convention" in out
