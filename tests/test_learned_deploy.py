"""A trained learned-bits model deploys like any other: lowering, cost, firmware.

* the quantizers lower to the firmware IR themselves (data: relu/quant onto the per-element grid;
  a weight's quantizer refuses);
* hqrun.cost prices the exported model with exactly the EBOPs the trainer's penalty reports
  (one definition, quantizers/ebops.py), per element, pruned weights free, through the Python
  API and through ``hqrun cost run=<dir>``;
* the RTL backend builds per-element weight widths, per-element activation grids and pruned
  weights bit-exactly (skipped only without iverilog/alkaid);
* hls4ml refuses per-element activation formats by layer name, and builds per-layer activations
  with per-element weights bit-exactly (C simulation, slow; skipped without g++).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import firmware_cases as fc
from hqrun.cost.deployed import deployed_cost
from hqrun.errors import FirmwareError
from hqrun.firmware import build_ir, export
from hqrun.models import EbopsPenalty, build_model, load_plan
from hqrun.quantizers import get
from hqrun.quantizers.lowering import Lowering
from rtl_support import needs_alkaid, needs_iverilog

torch.set_num_threads(1)

ALL = ["kernel", "bias", "activation", "input"]


def trained(model_cfg: dict, plan_data: dict, steps: int = 8, beta: float = 2e-3, seed: int = 0):
    """A model after a few steps of QAT with the EBOPs penalty, then evaluated once (ranges
    frozen, the weights' width snapshot taken, as validation does)."""
    plan = load_plan({"name": "l", "beta": beta, **plan_data})
    model = build_model(model_cfg, plan, seed=seed)
    penalty = EbopsPenalty(model, plan.penalty)
    gen = torch.Generator().manual_seed(seed)
    shape = tuple(model.input_shape)
    n_out = model_cfg.get("n_classes", 5)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    model.train()
    for _ in range(steps):
        x = torch.randn((64, *shape), generator=gen) * 1.5
        y = torch.randint(0, n_out, (64,), generator=gen)
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y) + beta * penalty(model)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        model(torch.zeros((1, *shape)))
    return model, penalty


def prune_some(model, layer: str, n: int = 5) -> None:
    """Give ``n`` weights a value that rounds to 0 at their width: they are pruned."""
    with torch.no_grad():
        w = getattr(model, layer).weight
        w.view(-1)[:n] = 1e-6
        model(torch.zeros((1, *model.input_shape)))


# ----------------------------------------------------------------------------- lowering
def test_data_quantizers_lower_onto_their_own_grid_and_weights_refuse():
    model, _ = trained({"name": "mlp", "n_inputs": 6, "hidden": [5], "n_classes": 3},
                       {"learn": ALL, "init_frac": 3})
    relu, inp = model.relu_1.activation, model.input.activation
    low = relu.lowering()
    assert isinstance(low, Lowering) and low.op == "relu"
    assert np.array_equal(low.grid.integer, relu.fixed_point_grid().integer)
    assert np.array_equal(low.grid.fractional, relu.fixed_point_grid().fractional)
    assert inp.lowering().op == "quant" and bool(np.all(inp.lowering().grid.signed))
    x = torch.randn(50, 5) * 4
    assert not low.grid.is_uniform
    # the grid the firmware gets is the eval-mode function, bit for bit
    assert torch.equal(low.grid.quantize(torch.relu(x)).float(), relu(x))
    with pytest.raises(FirmwareError, match="quantizes a layer's weights"):
        model.dense_1.kernel_quantizer.lowering()
    with pytest.raises(FirmwareError, match="no widths yet"):
        get("learned_relu()").lowering()


def test_a_learned_input_deploys_on_its_per_element_grid():
    model, _ = trained({"name": "mlp", "n_inputs": 6, "hidden": [5], "n_classes": 3},
                       {"learn": ALL, "init_frac": 3})
    with torch.no_grad():  # features of very different ranges: one width each
        model.input.activation.range.copy_(torch.tensor([0.4, 1.0, 2.0, 5.0, 9.0, 30.0]))
    ir = build_ir(model, (6,))
    grid = model.input.activation.fixed_point_grid()
    assert not grid.is_uniform
    assert ir.input_grid is not None and np.array_equal(ir.input_grid.integer, grid.integer)
    assert ir.input_type == grid.union()


# ----------------------------------------------------------------------------- cost == trainer
@pytest.mark.parametrize("model_cfg, plan", [
    ({"name": "jet_dnn"}, {"learn": ALL}),
    ({"name": "jet_dnn"}, {"learn": ["activation", "input"],
                           "default": {"kernel": "quantized_bits(4,0,alpha=1)",
                                       "bias": "quantized_bits(4,0,alpha=1)"}}),
    ({"name": "cnn", "input_shape": [1, 8, 8], "filters": [2], "dense": [4], "n_classes": 3},
     {"input": "learned_bits(granularity='layer')",
      "default": {"kernel": "learned_bits()", "bias": "learned_bits()",
                  "activation": "learned_relu(granularity='layer')"}}),
], ids=["jet-all-learned", "jet-learned-activations-qkeras-kernels", "cnn-layer-activations"])
def test_deployed_cost_ebops_equal_the_trainers(model_cfg, plan):
    model, penalty = trained(model_cfg, plan)
    if "dense_1" in dict(model.named_children()):
        prune_some(model, "dense_1")
    reported = penalty.report(model)
    cost = deployed_cost(model)
    layers = {row["name"]: row["fpga"]["ebops"] for row in cost.to_dict()["layers"]}
    assert reported["ebops"] > 0 and reported["pruned_weights"] > 0
    for name, value in reported["ebops_layers"].items():
        assert layers[name] == pytest.approx(value, rel=1e-6, abs=1e-6), name
    assert cost.totals["ebops"] == pytest.approx(reported["ebops"], rel=1e-6)


def test_per_element_formats_through_a_flatten_cost_as_the_trainer_counts():
    """A 'same'-padded conv1d, per-element ReLU formats, a Keras-order Flatten, a dense: the
    type inference carries the flattened grid, and both counts agree (fractional: the padded
    border counts as zeros)."""
    from test_contracts import TestLearnedConv1DFlatten
    from hqrun.cost import estimate
    from hqrun.quantizers.ebops import model_ebops

    model = TestLearnedConv1DFlatten().model()
    assert not model.relu_1.activation.fixed_point_grid().is_uniform
    ours = model_ebops(model, dtype=torch.float64)
    rows = {r["name"]: r["fpga"]["ebops"] for r in estimate(model).to_dict()["layers"]}
    for name, value in ours.layers.items():
        assert rows[name] == pytest.approx(float(value), rel=1e-9), name
    ir = build_ir(model, tuple(model.input_shape))
    assert ir.layer("dense_1").in_grid.shape == (24,)


def test_train_hints_the_rtl_backend_when_hls4ml_would_refuse():
    from hqrun.train.command import _backend_needed

    per_element, _ = trained({"name": "mlp", "n_inputs": 6, "hidden": [5], "n_classes": 3},
                             {"learn": ALL, "init_frac": 3})
    per_layer, _ = trained({"name": "mlp", "n_inputs": 6, "hidden": [5], "n_classes": 3},
                           {"input": "learned_bits(granularity='layer')",
                            "default": {"kernel": "learned_bits()", "bias": "learned_bits()",
                                        "activation": "learned_relu(granularity='layer')"}})
    assert _backend_needed(per_element) == "rtl"
    assert _backend_needed(per_layer) is None


def test_a_pruned_weight_costs_nothing():
    model, penalty = trained({"name": "mlp", "n_inputs": 4, "hidden": [3], "n_classes": 2},
                             {"learn": ALL, "init_frac": 3})
    before = deployed_cost(model).to_dict()["layers"]
    with torch.no_grad():
        w = model.dense_1.weight
        kept = w[0, 0].item()
        w[0, 0] = 0.0
        model(torch.zeros(1, 4))
    width_in = int(model.input.activation.fixed_point_grid().bits()[0])
    model.dense_1.weight.data[0, 0] = kept
    with torch.no_grad():
        model(torch.zeros(1, 4))
    width_w = int(model.dense_1.kernel_quantizer.fixed_point_grid().bits()[0, 0])
    model.dense_1.weight.data[0, 0] = 0.0
    with torch.no_grad():
        model(torch.zeros(1, 4))
    after = deployed_cost(model).to_dict()["layers"]
    ebops = {r["name"]: r["fpga"]["ebops"] for r in after}
    old = {r["name"]: r["fpga"]["ebops"] for r in before}
    assert old["dense_1"] - ebops["dense_1"] == width_in * width_w
    assert ebops["dense_1"] == penalty.report(model)["ebops_layers"]["dense_1"]


def test_hqrun_cost_of_a_learned_run_equals_its_metrics(tmp_path):
    from hqrun.cli import main
    from jets_data import write_tiny_jets

    data = write_tiny_jets(tmp_path / "tiny.npz", n=300, seed=5, spread=2.0)
    run = tmp_path / "run"
    main(["train", "data=jets_file", f"data.path={data}", "quant=learned", "trainer.max_epochs=2",
          "trainer.batch_size=64", "trainer.progress_bar=false", "trainer.roc_plot=false",
          f"hydra.run.dir={run}"])
    metrics = json.loads((run / "metrics.json").read_text())
    main(["cost", f"run={run}", f"hydra.run.dir={tmp_path / 'cost'}"])
    cost = json.loads((tmp_path / "cost" / "cost.json").read_text())
    by_layer = {row["name"]: row["fpga"]["ebops"] for row in cost["layers"]}
    assert cost["totals"]["ebops"] == metrics["ebops"] > 0
    assert {k: by_layer[k] for k in metrics["ebops_layers"]} == metrics["ebops_layers"]
    # the run's own cost.json (written by hqrun train) says the same
    assert json.loads((run / "cost.json").read_text())["totals"]["ebops"] == metrics["ebops"]


# ----------------------------------------------------------------------------- firmware
@needs_alkaid
@needs_iverilog
def test_rtl_firmware_is_bit_exact_with_per_element_widths_and_pruned_weights(tmp_path):
    model, _ = trained({"name": "mlp", "n_inputs": 8, "hidden": [6], "n_classes": 3},
                       {"learn": ALL, "init_frac": 3})
    prune_some(model, "dense_1", 6)
    ir = build_ir(model, (8,))
    dense, relu = ir.layer("dense_1"), ir.layer("relu_1")
    assert dense.weight_grid is not None and not dense.weight_grid.is_uniform
    assert relu.out_grid is not None and not relu.out_grid.is_uniform
    pruned = model.dense_1.kernel_quantizer.fixed_point_grid().bits() == 0
    assert pruned.sum() >= 6 and np.all(dense.weight[pruned] == 0)  # exact zeros in the design
    x = fc.samples(model, 40, 3)  # wide spread: activations saturate at their own widths
    result = export(model, x, tmp_path / "fw", {"backend": "rtl", "synthesize": "never",
                                                "rtl": {"simulator": "iverilog"}})
    assert result.passed and result.verification.csim_equal
    assert result.verification.n_samples == 40
    assert "Icarus" in result.report["simulator"] or "iverilog" in result.report["simulator"]


@needs_alkaid
@needs_iverilog
def test_rtl_firmware_is_bit_exact_for_per_element_conv_and_flatten(tmp_path):
    """Per-element casts after a conv (its codes are a transposed view in the emulation) and a
    Keras-order Flatten feeding per-element formats into a dense."""
    from test_contracts import TestLearnedConv1DFlatten

    model = TestLearnedConv1DFlatten().model()
    result = export(model, fc.samples(model, 30, 4), tmp_path / "fw",
                    {"backend": "rtl", "synthesize": "never", "rtl": {"simulator": "iverilog"}})
    assert result.passed and result.verification.torch_equal


def test_hls4ml_refuses_per_element_activations_by_layer_name(tmp_path):
    model, _ = trained({"name": "mlp", "n_inputs": 6, "hidden": [5], "n_classes": 3},
                       {"learn": ALL, "init_frac": 3})
    with pytest.raises(FirmwareError) as err:
        export(model, fc.samples(model, 10, 1), tmp_path / "fw", {"backend": "hls4ml"})
    text = str(err.value)
    assert "'relu_1'" in text and "firmware.backend=rtl" in text
    assert "learned_relu(granularity='layer')" in text and "\n" not in text
    assert not (tmp_path / "fw").exists()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is needed for hls4ml's C simulation")
def test_hls4ml_builds_per_layer_activations_with_per_element_weights(tmp_path):
    model, _ = trained({"name": "mlp", "n_inputs": 6, "hidden": [5], "n_classes": 3},
                       {"input": "learned_bits(granularity='layer')",
                        "default": {"kernel": "learned_bits()", "bias": "learned_bits()",
                                    "activation": "learned_relu(granularity='layer')"}})
    prune_some(model, "dense_1", 4)
    assert not model.dense_1.kernel_quantizer.fixed_point_grid().is_uniform
    result = export(model, fc.samples(model, 40, 2), Path(tmp_path) / "fw",
                    {"backend": "hls4ml", "synthesize": "never"})
    assert result.passed and result.verification.n_samples == 40
