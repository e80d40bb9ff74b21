"""The calibrated RTL LUT/FF estimate: features, monotonicity, the shipped fit, the cost report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hqrun.cost import estimate
from hqrun.cost.config import make_config
from hqrun.cost.fpga import csd_digits
from hqrun.cost.lut_features import DA_SHAPE, centred_column_digits, csd_digit_counts, model_features
from hqrun.cost.lut_fit import error_summary, fit_nonnegative_relative, fit_table
from hqrun.cost.lut_model import (
    CALIBRATION_FILE,
    FF_TERMS,
    LUT_TERMS,
    Calibration,
    load_calibration,
    rtl_estimate,
)
from hqrun.errors import CostModelError
from hqrun.models import build_model
from hqrun.quantizers.fixedpoint import FixedPointType
from hqrun.quantizers.typeinfer import infer_types

torch.set_num_threads(1)

TABLE = Path(__file__).resolve().parent.parent / "bench" / "calibration" / "lut_table.json"
INPUT = FixedPointType.from_hls_name("ap_fixed<10,4,AP_RND_CONV,AP_SAT>")


def small_model(relu: str = "quantized_relu(4,1)", kernel: str = "quantized_bits(6,0,alpha=1)",
                seed: int = 0, hidden: int = 6) -> torch.nn.Module:
    plan = {"name": "t", "input": None, "default": {"kernel": kernel, "bias": kernel,
                                                    "activation": relu}, "layers": {}}
    return build_model({"name": "mlp", "n_inputs": 5, "n_classes": 3, "hidden": [hidden]}, plan,
                       seed=seed).eval()


def lut_of(model: torch.nn.Module, cal: Calibration, input_type: FixedPointType = INPUT) -> float:
    return rtl_estimate(infer_types(model, input_type, "exact", input_shape=(5,)), cal).lut


coefficients = st.lists(st.floats(0.0, 5.0), min_size=len(LUT_TERMS), max_size=len(LUT_TERMS))


def calibration_of(values: list[float]) -> Calibration:
    return Calibration("test", dict(zip(LUT_TERMS, values)), dict.fromkeys(FF_TERMS, 1.0))


@settings(max_examples=200, deadline=None)
@given(st.integers(-(2**40), 2**40))
def test_vectorised_csd_digits_match_the_scalar_rule(code):
    assert int(csd_digit_counts(np.array([code]))[0]) == csd_digits(code)


def features_of(model: torch.nn.Module) -> dict:
    return {f.name: f for f in model_features(infer_types(model, INPUT, "exact", input_shape=(5,)))}


def test_features_count_digits_widths_and_constants():
    model = small_model()
    with torch.no_grad():
        model.dense_1.weight.zero_()
        model.dense_1.weight[0, :2] = torch.tensor([7 / 32, -0.5])   # 7 = 8 - 1: 2 digits; 1 digit
        model.dense_1.bias.zero_()
    feats = features_of(model)
    d1 = feats["dense_1"]
    assert (d1.nonzero, d1.digits, d1.centred_digits) == (2, 3, 3)
    assert d1.span == 5                                          # codes 7 and 16: bits 0..4
    shape = DA_SHAPE
    expected = 3 * (INPUT.width + 1) ** shape["width"] * 6 ** shape["outputs"] * 5 ** shape["span"]
    assert d1.da_cost == pytest.approx(expected)
    # outputs 1-5 are the constant 0 (no weight, no bias): only output 0 reaches the ReLU, and
    # |7/32 x0 - x1/2| <= 5.75 saturates quantized_relu(4,1) at 1.875: 4 bits
    assert feats["relu_1"].cast_out_bits == 4
    assert feats["softmax"].digits == 0 and feats["softmax"].cast_out_bits == 0   # not in the RTL


def test_a_model_whose_relus_are_dead_costs_nothing():
    model = small_model()
    with torch.no_grad():
        model.dense_1.weight.zero_()
        model.dense_1.bias.fill_(-0.5)        # every ReLU input is -0.5: the outputs are 0
    assert lut_of(model, calibration_of([1.0, 1.0])) == 0.0


def test_an_unread_neuron_costs_nothing():
    """A hidden neuron whose outgoing weights are all 0 is removed by synthesis: its incoming
    weights and its ReLU no longer change the estimate; a last layer of zeros costs nothing."""
    cal = calibration_of([1.0, 1.0])
    model = small_model()
    with torch.no_grad():
        model.dense_2.weight[:, 2] = 0.0
    before = lut_of(model, cal)
    with torch.no_grad():
        model.dense_1.weight[2] = torch.tensor([0.75, -0.375, 0.625, 0.5, -0.875])
    assert lut_of(model, cal) == pytest.approx(before)
    assert features_of(model)["relu_1"].cast_out_bits < features_of(small_model())["relu_1"].cast_out_bits
    with torch.no_grad():
        model.dense_2.weight.zero_()
    assert lut_of(model, cal) == 0.0


def test_centred_digits_share_a_column_value():
    binary = np.array([[1], [1], [-1], [1], [1], [1]])
    assert centred_column_digits(binary)[0] == 1 * 1 + 1          # centre 1: one -2 left, +1 adder
    full = np.full((6, 1), 7)                                       # 7 = 8 - 1, twice per weight
    holed = full.copy()
    holed[0, 0] = 0
    assert centred_column_digits(full)[0] == 1                      # every weight is the centre
    assert centred_column_digits(holed)[0] == 1 + 2                 # the zero costs -7's digits
    # per-output power-of-two scales (binary kernels carry them) are wiring, not digits
    scaled = binary * np.array([[1], [2], [4], [8], [1], [2]])
    assert centred_column_digits(scaled)[0] == centred_column_digits(binary)[0]


@settings(max_examples=25, deadline=None)
@given(coefficients, st.integers(0, 4), st.lists(st.integers(-16, 16), min_size=6, max_size=6),
       st.integers(0, 50))
def test_connecting_an_input_never_costs_fewer_luts(coef, col, codes, seed):
    """An input whose weights were all zero gets non-zero weights: the estimate never drops.

    (Single weights are not monotone, in alkaid's adder graphs as here: a column of equal
    weights with one zero costs more than the full column; see test_centred_digits_...)"""
    cal = calibration_of(coef)
    model = small_model(seed=seed)
    with torch.no_grad():
        model.dense_1.weight[:, col] = 0.0
    before = lut_of(model, cal)
    with torch.no_grad():
        model.dense_1.weight[:, col] = torch.tensor(codes, dtype=torch.float32) / 32
    assert lut_of(model, cal) >= before - 1e-9


RELUS = ["quantized_relu(2,0)", "quantized_relu(3,1)", "quantized_relu(4,1)", "quantized_relu(6,2)",
         "quantized_relu(8,2)"]


@settings(max_examples=20, deadline=None)
@given(coefficients, st.integers(0, len(RELUS) - 2), st.integers(0, 50), st.integers(4, 12))
def test_more_bits_never_cost_fewer_luts(coef, i, seed, in_width):
    """Wider activations (same weights) and a wider input type never lower the estimate."""
    cal = calibration_of(coef)
    narrow, wide = small_model(RELUS[i], seed=seed), small_model(RELUS[i + 1], seed=seed)
    wide.load_state_dict(narrow.state_dict())
    assert lut_of(wide, cal) >= lut_of(narrow, cal) - 1e-9
    t_in = FixedPointType(in_width, 3, True)
    t_wider = FixedPointType(in_width + 2, 4, True)
    assert lut_of(narrow, cal, t_wider) >= lut_of(narrow, cal, t_in) - 1e-9


def test_flip_flops_only_with_register_stages():
    cal = load_calibration()
    types = infer_types(small_model(), INPUT, "exact", input_shape=(5,))
    assert rtl_estimate(types, cal, 0).ff == 0
    one, three = rtl_estimate(types, cal, 1).ff, rtl_estimate(types, cal, 3).ff
    assert 0 < one <= three


def test_bad_calibrations_are_one_paragraph(tmp_path):
    with pytest.raises(CostModelError, match="negative coefficients da_cost"):
        Calibration.from_dict({"id": "x", "lut": {"da_cost": -1.0}, "ff": {}})
    with pytest.raises(CostModelError, match="adder-graph shape"):
        Calibration.from_dict({"id": "x", "lut": {"da_cost": 1.0}, "ff": {},
                               "shape": {**DA_SHAPE, "width": 1.0}})
    with pytest.raises(CostModelError, match="unknown terms ebops"):
        Calibration.from_dict({"id": "x", "lut": {"ebops": 1.0}, "ff": {}})
    with pytest.raises(CostModelError, match="missing or bad field"):
        Calibration.from_dict({"lut": {}})
    with pytest.raises(CostModelError, match="does not exist"):
        load_calibration(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CostModelError, match="cannot be read as JSON"):
        load_calibration(bad)
    with pytest.raises(CostModelError, match="does not exist"):
        estimate(small_model(), settings=make_config(rtl={"calibration": str(tmp_path / "nope.json")}))


def test_nonnegative_relative_fit_recovers_exact_coefficients():
    rng = np.random.default_rng(0)
    X = rng.uniform(1, 100, size=(30, 3))
    truth = np.array([0.7, 0.0, 2.5])
    coef = fit_nonnegative_relative(X, X @ truth)
    np.testing.assert_allclose(coef, truth, rtol=1e-9, atol=1e-12)
    with pytest.raises(CostModelError, match="at least 3"):
        fit_nonnegative_relative(X[:2], X[:2] @ truth)
    assert error_summary([0.1, -0.3, 0.05]) == {"n": 3, "median_abs": 0.1, "mean_abs": 0.15,
                                                "worst": -0.3, "median": 0.05}


def test_shipped_calibration_is_the_fit_of_the_committed_table():
    """The coefficients in hqrun are reproducible from bench/calibration/lut_table.json alone,
    and the held-out error they quote is what the table gives."""
    shipped = json.loads(CALIBRATION_FILE.read_text())
    refit = fit_table(json.loads(TABLE.read_text())["models"])
    for kind in ("lut", "ff"):
        for term, value in shipped[kind].items():
            assert refit[kind][term] == pytest.approx(value, rel=1e-9, abs=1e-12), (kind, term)
    for key in ("models", "fit_models", "holdout_models", "lut_error", "alkaid_lut_error", "ff_error"):
        assert refit["provenance"][key] == shipped["provenance"][key], key
    p = shipped["provenance"]
    assert p["models"] >= 40 and p["holdout_models"] >= 10
    assert p["lut_error"]["holdout"]["median_abs"] <= 0.15


def test_cost_report_labels_both_builds():
    rep = estimate(small_model(), input_type=INPUT, settings=make_config(rtl={"latency_cycles": 2}))
    t = rep.totals
    assert t["lut"] > 0 and t["ff"] > 0 and t["rtl_latency_cycles"] == 2
    assert t["lut_calibration"] == load_calibration().id and "Yosys" in t["lut_source"]
    assert {"hls_lut", "hls_ff", "hls_dsp", "hls_latency_cycles", "hls_latency_ns"} <= set(t)
    assert not {"dsp", "latency_cycles", "latency_ns"} & set(t)      # no name with two meanings
    assert abs(sum(r["rtl"]["lut"] for r in rep.rows) - t["lut"]) <= len(rep.rows)
    text = rep.table()
    assert "RTL build: LUT" in text and "hls4ml build (first-order rules" in text
    comb = estimate(small_model(), input_type=INPUT)
    assert comb.totals["ff"] == 0 and comb.totals["lut"] == t["lut"]


def test_latency_setting_is_checked():
    from hqrun.errors import ConfigError

    with pytest.raises(ConfigError, match="rtl.latency_cycles"):
        make_config(rtl={"latency_cycles": -1})
    with pytest.raises(ConfigError, match="unknown cost.rtl"):
        make_config(rtl={"latency": 1})


def test_firmware_report_sets_the_estimate_against_yosys():
    from hqrun.firmware.report import calibrated_vs_synthesis

    est = {"totals": {"lut": 1100, "ff": 40, "lut_calibration": "cal-x"}}
    cmp_ = calibrated_vs_synthesis("rtl", est, {"status": "done", "lut": 1000, "ff": 50})
    assert cmp_["lut_relative_error"] == 0.1 and cmp_["calibration"] == "cal-x"
    assert (cmp_["ff_estimate"], cmp_["ff_yosys"]) == (40, 50)
    assert calibrated_vs_synthesis("hls4ml", est, {"lut": 1000}) is None      # another design
    assert calibrated_vs_synthesis("rtl", est, {"status": "not run"}) is None
    assert calibrated_vs_synthesis("rtl", None, {"lut": 1000}) is None


def test_fit_refuses_a_table_of_two_yosys_versions():
    rows = json.loads(TABLE.read_text())["models"]
    done = [r for r in rows if (r.get("yosys") or {}).get("status") == "done"]
    mixed = [dict(r) for r in done]
    mixed[0] = {**mixed[0], "yosys": {**mixed[0]["yosys"], "tool_version": "Yosys 0.23 (git sha1 7ce5011c2)"}}
    with pytest.raises(CostModelError, match="mixes 2 Yosys versions"):
        fit_table(mixed)
