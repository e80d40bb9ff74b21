"""Energy (QTools's Horowitz model), size (AutoQKeras bits) and FPGA estimate: hand-computed
values on tiny models, settings, the SRAM quirk and monotonicity."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from hqrun.cost import estimate
from hqrun.cost.config import make_config
from hqrun.cost.fpga import csd_digits
from hqrun.errors import ConfigError, CostModelError
from hqrun.quantizers.layers import QActivation, QDense, QInput

torch.set_num_threads(1)

SRAM = [9.02427321e-04, -2.68847858e-02, 2.08900804e-01, 0.0]


def sram_per_bit(bits: float) -> float:
    x = math.log2(bits)
    return max(SRAM[0] * x**3 + SRAM[1] * x**2 + SRAM[2] * x, 0.0)


def fmul(g: float) -> float:
    return 0.002994791667 * g * g + 0.001041666667 * g


def fadd(b: float) -> float:
    return 0.003125 * b


def tiny(wb: int = 6, bb: int = 6, ab: int = 6, n_in: int = 16, n_hidden: int = 4,
         seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    m = nn.Sequential()
    m.add_module("input", QInput(None))
    m.add_module("dense_1", QDense(n_in, n_hidden, f"quantized_bits({wb},0,alpha=1)",
                                   f"quantized_bits({bb},0,alpha=1)"))
    m.add_module("relu_1", QActivation(f"quantized_relu({ab},0)"))
    m.add_module("dense_2", QDense(n_hidden, 3, f"quantized_bits({wb},0,alpha=1)",
                                   f"quantized_bits({bb},0,alpha=1)"))
    m.add_module("softmax", QActivation("softmax"))
    return m


def test_hand_computed_sram_settings():
    r = estimate(tiny(), settings="notebook")
    d1 = r.row("dense_1")["energy"]
    # input layer, rd_wr_on_io false -> SRAM: 16 x 8 bits = 2 words x per-bit(128 bits)
    assert d1["inputs"] == pytest.approx(round(2 * sram_per_bit(128), 2), abs=0.006)
    w_bits, b_bits = 16 * 4 * 6, 4 * 6
    params = math.ceil(w_bits / 64) * sram_per_bit(w_bits) + 1 * sram_per_bit(b_bits)
    assert d1["parameters"] == pytest.approx(params, abs=0.011)
    # 8-bit input x 6-bit weight -> 14-bit product, + ceil(log2(17)) = 19-bit accumulator
    op = 64 * (fmul(math.sqrt(48)) + fadd(19))
    assert d1["op_cost"] == pytest.approx(op, abs=0.006)
    assert d1["total"] == pytest.approx(d1["inputs"] + d1["parameters"] + d1["op_cost"])
    relu = r.row("relu_1")["energy"]
    assert relu["outputs"] == pytest.approx(math.ceil(4 * 6 / 64) * sram_per_bit(24), abs=0.006)
    assert relu["total"] == relu["outputs"]  # QTools counts only an activation's outputs


def test_hand_computed_dram_defaults_and_fp32_reference():
    r = estimate(tiny())  # AutoQKeras defaults: params fixed, activations DRAM, rd_wr_on_io
    d1 = r.row("dense_1")
    assert d1["energy"]["inputs"] == pytest.approx(
        20.3125 * 128 + 2 * sram_per_bit(128), abs=0.006)
    assert d1["energy"]["parameters"] == 0.0
    ref = d1["reference_energy"]
    assert ref["op_cost"] == pytest.approx(64 * (3.7 + 0.9))  # fp32 multiply + add per MAC
    assert ref["inputs"] == pytest.approx(20.3125 * 512 + 8 * sram_per_bit(512), abs=0.006)
    total = sum(row["energy"]["total"] for row in r.rows)
    assert r.totals["energy"] == int(total)


def test_per_word_sram_is_64_times_qtools_for_sram_only_parts():
    a = estimate(tiny(), settings="notebook")
    b = estimate(tiny(), settings=make_config("notebook", sram_model="per_word"))
    for name in ("relu_1",):
        assert b.row(name)["energy"]["outputs"] == pytest.approx(
            64 * a.row(name)["energy"]["outputs"], rel=0.01)


def test_size_bits_hand_counted():
    r = estimate(tiny(wb=4, bb=8, ab=3))
    assert r.row("input")["size"]["activations"] == 16 * 8
    assert r.row("dense_1")["size"]["parameters"] == 16 * 4 * 4 + 4 * 8
    assert r.row("dense_1")["size"]["activations"] == 0  # linear output
    assert r.row("relu_1")["size"]["activations"] == 4 * 3
    assert r.row("softmax")["size"]["activations"] == 3 * 8  # output_bits
    assert r.totals["reference_size_bits"] == 8 * (16 + (16 * 4 + 4) + 4 + (4 * 3 + 3) + 3)


def test_fpga_zero_and_power_of_two_weights_need_no_multiplier():
    layer = QDense(4, 2, "quantized_bits(6,0,alpha=1)", "quantized_bits(6,0,alpha=1)")
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -0.25, 0.0, 0.125], [0.0, 0.0, 1 / 32, -0.5]]))
        layer.bias.zero_()
    m = nn.Sequential()
    m.add_module("dense", layer)
    f = estimate(m).row("dense")["fpga"]
    assert f["n_mult"] == 0 and f["dsp"] == 0
    assert f["ebops"] == 5 * 8 * 6  # 5 non-zero weights x 8-bit input x 6-bit weight
    with torch.no_grad():
        layer.weight[0, 0] = 0.40625  # 13/32: CSD 0.1010(-1)... -> a real multiplier
    f2 = estimate(m).row("dense")["fpga"]
    assert f2["n_mult"] == 1 and f2["lut"] > f["lut"]


def test_csd_digits():
    assert [csd_digits(v) for v in (0, 1, 2, 3, 7, 13, -13, 15)] == [0, 1, 1, 2, 2, 3, 3, 2]


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="activations_on_memory"):
        make_config({"activations_on_memory": ["dram", "disk"]})
    with pytest.raises(ConfigError, match="unknown cost setting"):
        make_config({"energy_scale": 2})
    with pytest.raises(ConfigError, match="preset"):
        make_config("nonsense")


def test_unknown_layer_error_reaches_estimate():
    m = tiny()
    m.add_module("extra", nn.LSTM(3, 3))
    with pytest.raises(CostModelError, match="LSTM"):
        estimate(m)


@settings(deadline=None, max_examples=25)
@given(wb=st.integers(3, 10), bb=st.integers(3, 10), ab=st.integers(3, 10),
       which=st.sampled_from(["wb", "bb", "ab"]), mode=st.sampled_from(["dram", "fixed"]))
def test_fewer_bits_never_cost_more(wb, bb, ab, which, mode):
    """(2+ bits: a 1-bit quantized_bits is a sign quantizer with no zero, so it has more
    non-zero weights and EBOPs than 2 bits.) SRAM modes are excluded: QTools's fitted SRAM
    curve falls between 2^5.3 and 2^14.6 bits (docs/cost.md)."""
    bits = {"wb": wb, "bb": bb, "ab": ab}
    fewer = dict(bits)
    fewer[which] = bits[which] - 1
    cfg = make_config(parameters_on_memory=[mode, mode], activations_on_memory=[mode, mode])
    big = estimate(tiny(**bits), settings=cfg).totals
    small = estimate(tiny(**fewer), settings=cfg).totals
    assert small["energy"] <= big["energy"]
    assert small["size_bits"] <= big["size_bits"]
    assert small["ebops"] <= big["ebops"]


def _tiny_cnn():
    from hqrun.models import build_model, homogeneous_plan

    return build_model({"name": "cnn", "input_shape": [1, 8, 8], "filters": [2],
                        "dense": [], "n_classes": 3}, homogeneous_plan(6), seed=0)


def test_qaveragepooling_and_flatten_follow_qtools():
    r = estimate(_tiny_cnn())
    pool = r.row("pool_1")
    # QTools: the pooled sum (6 + log2(4) bits) times Q(1/area) with no average quantizer ->
    # the default int8: 8 + 8 = 16 bits; a QAveragePooling2D has op count 0 in QTools
    assert pool["accumulator_bits"] == 8 and pool["output_bits"] == 16
    assert pool["energy"]["op_cost"] == 0.0
    assert r.row("flatten")["energy"]["inputs"] > 0  # QTools re-reads at a Flatten
    fixed = estimate(_tiny_cnn(), settings=make_config(qtools_quirks=False))
    assert fixed.row("pool_1")["energy"]["op_cost"] > 0
    assert fixed.row("flatten")["energy"]["total"] == 0.0
    assert fixed.row("flatten")["priced"] is False


def test_faster_clock_means_more_pipeline_stages():
    slow = estimate(tiny(n_in=16, n_hidden=8), settings=make_config(fpga={"clock_period_ns": 5.0}))
    fast = estimate(tiny(n_in=16, n_hidden=8), settings=make_config(fpga={"clock_period_ns": 1.5}))
    assert fast.totals["latency_cycles"] > slow.totals["latency_cycles"]
    assert fast.totals["latency_ns"] == pytest.approx(fast.totals["latency_cycles"] * 1.5)
    with pytest.raises(ConfigError, match="clock_period_ns"):
        make_config(fpga={"clock_period_ns": 0})


def test_input_quantizer_is_an_activation_layer_for_qtools():
    m = tiny()
    m.input = QInput("quantized_bits(6,0,alpha=1)")
    r = estimate(m)
    row = r.row("input")
    assert row["priced"] and row["output_bits"] == 6
    assert row["energy"]["total"] == row["energy"]["outputs"] > 0
    assert r.row("dense_1")["input_bits"] == 6
    # the reference is the float model: no input quantizer layer there
    assert r.row("input")["reference_energy"]["total"] == 0.0
    assert r.totals["reference_energy"] == estimate(tiny()).totals["reference_energy"]
    assert r.row("input")["size"]["activations"] == 16 * 8 + 16 * 6


def test_batchnorm_bits_follow_autoqkeras():
    from hqrun.models import build_model, homogeneous_plan

    m = build_model({"name": "jet_dnn", "batchnorm": True}, homogeneous_plan(6), seed=0)
    r = estimate(m)
    assert r.row("bn_1")["size"]["parameters"] == 64 * (6 + 5)  # QBatchNormalization: 6 + 5
    assert r.row("bn_1")["reference_size"]["parameters"] == 64 * (8 + 8)
    assert r.row("bn_1")["energy"]["total"] == r.row("bn_1")["energy"]["parameters"]
