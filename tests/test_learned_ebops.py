"""EBOPs: a hand-counted model, the dense fast path, convolutions, and trainer == exported grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hqrun.models import EbopsPenalty, build_model, load_plan
from hqrun.quantizers.ebops import mac_ebops, model_ebops
from hqrun.quantizers.layers import QConv2D, QDense


def test_hand_counted_small_model():
    # 3 inputs -> 2 hidden (ReLU) -> 2 outputs; 8-bit signed input, 4-bit kernels and biases,
    # 3-bit ReLU; one zero weight and one zero bias in each layer
    plan = {"name": "hand", "input": "quantized_bits(8,3,alpha=1)",
            "default": {"kernel": "quantized_bits(4,0,alpha=1)", "bias": "quantized_bits(4,0,alpha=1)",
                        "activation": "quantized_relu(3,0)"}}
    model = build_model({"name": "mlp", "n_inputs": 3, "hidden": [2], "n_classes": 2}, plan)
    with torch.no_grad():
        model.dense_1.weight.copy_(torch.tensor([[0.25, 0.0, -0.5], [0.125, 0.75, -0.25]]))
        model.dense_1.bias.copy_(torch.tensor([0.0, 0.5]))
        model.dense_2.weight.copy_(torch.tensor([[0.5, -0.5], [0.0, 0.25]]))
        model.dense_2.bias.copy_(torch.tensor([0.25, 0.0]))
    model.eval()
    report = model_ebops(model, dtype=torch.float64)
    # dense_1: 5 non-zero weights x 8 x 4 + one non-zero bias x 4 bits (HGQ2's bias term)
    # dense_2: 3 non-zero weights x 3 x 4 + one non-zero bias x 4
    assert report.layers["dense_1"] == 5 * 8 * 4 + 4 == 164
    assert report.layers["dense_2"] == 3 * 3 * 4 + 4 == 40
    assert report.total == 204 and report.pruned == 2 and report.weights == 10
    # a float input counts the declared input width
    model.input.set_quantizer("activation", None)
    assert model_ebops(model, input_bits=16).layers["dense_1"] == 5 * 16 * 4 + 4


def test_hand_counted_learned_widths():
    plan = load_plan({"name": "l", "learn": ["kernel", "bias", "activation", "input"], "init_frac": 2})
    model = build_model({"name": "mlp", "n_inputs": 2, "hidden": [2], "n_classes": 2}, plan)
    with torch.no_grad():
        model.dense_1.weight.copy_(torch.tensor([[0.25, -1.0], [0.1, 0.75]]))  # codes 1,-4,0,3
        model.dense_1.bias.copy_(torch.tensor([0.5, 0.0]))  # codes 2, 0
        model.input.activation.range.copy_(torch.tensor([1.0, 3.0]))  # codes 4, 12
        model.relu_1.activation.range.copy_(torch.tensor([0.5, 0.0]))  # codes 2, 0
    model.train(False)
    model(torch.zeros(1, 2))  # refresh the weights' width snapshot
    r = model_ebops(model, dtype=torch.float64)
    b_in = [4, 5]  # signed widths of +-4 and +-12
    b_w = [[2, 3], [0, 3]]  # widths of codes 1, -4, 0, 3
    b_b = [3, 0]
    expect = sum(b_in[i] * b_w[j][i] for j in range(2) for i in range(2)) + sum(b_b)
    assert r.layers["dense_1"] == expect == 4 * 2 + 5 * 3 + 5 * 3 + 3
    # dense_2 sees relu_1's widths: unsigned codes 2 and 0 -> 2 and 0 bits
    k2 = model.dense_2.kernel_quantizer.fixed_point_grid().bits()
    bb2 = model.dense_2.bias_quantizer.fixed_point_grid().bits()
    assert r.layers["dense_2"] == 2 * k2[:, 0].sum() + bb2.sum()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), bias=st.booleans())
def test_dense_fast_path_is_the_layers_own_map(seed, bias):
    gen = torch.Generator().manual_seed(seed)
    layer = QDense(7, 4)
    b_in = torch.randint(0, 9, (7,), generator=gen).double().requires_grad_(True)
    b_w = torch.randint(0, 9, (4, 7), generator=gen).double().requires_grad_(True)
    b_b = torch.randint(0, 9, (4,), generator=gen).double().requires_grad_(True) if bias else None
    fast = mac_ebops(layer.mac, b_in, b_w, b_b)
    slow = layer.mac(b_in.unsqueeze(0), b_w).sum() + (b_b.sum() if bias else 0)
    assert fast == slow
    inputs = (b_in, b_w) + ((b_b,) if bias else ())
    assert all(torch.equal(a, b) for a, b in zip(torch.autograd.grad(fast, inputs),
                                                 torch.autograd.grad(slow, inputs)))


def test_conv_counts_one_kernel_instance():
    layer = QConv2D(2, 3, 3)
    b_w = torch.randint(0, 5, (3, 2, 3, 3)).double()
    b_w[0, 0] = 0  # zero weights cost nothing
    in_bits = torch.full((2, 6, 6), 7.0, dtype=torch.float64)
    # uniform input widths, valid padding: sum over non-zero kernel weights of b_in * b_w
    assert mac_ebops(layer.mac, in_bits, b_w, torch.full((3,), 2.0, dtype=torch.float64)) == \
        7 * b_w.sum() + 6


def test_cnn_with_learned_widths_builds_and_counts():
    plan = load_plan({"name": "l", "learn": ["kernel", "bias", "activation", "input"],
                      "granularity": "channel"})
    model = build_model({"name": "cnn", "input_shape": [1, 12, 12], "filters": [2], "dense": [4],
                         "n_classes": 3}, plan)
    model.train()
    model(torch.rand(5, 1, 12, 12)).sum().backward()
    r = model_ebops(model)
    assert set(r.layers) == {"conv_1", "dense_1", "dense_2"} and r.total > 0
    assert model.conv_1.kernel_quantizer.f.shape == (2, 1, 1, 1)
    assert model.relu_1.activation.f.shape == (2, 1, 1)


def train_steps(model, penalty, steps=6, beta=1e-3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        x = torch.randn(64, 16, generator=gen)
        y = torch.randint(0, 5, (64,), generator=gen)
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y) + beta * penalty(model)
        loss.backward()
        opt.step()


@pytest.mark.parametrize("learn", [["kernel", "bias", "activation", "input"], ["activation", "input"]])
def test_trainer_count_equals_the_count_on_exported_grids(learn):
    fixed = "quantized_bits(4,0,alpha=1)"
    plan = load_plan({"name": "l", "learn": learn, "beta": 1e-3,
                      "default": {s: None if s in learn else fixed for s in ("kernel", "bias")}})
    model = build_model({"name": "jet_dnn"}, plan, seed=0)
    penalty = EbopsPenalty(model, plan.penalty)
    train_steps(model, penalty)
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 16))  # as validation does: the weights' snapshot is current
    reported = penalty.report(model)
    # the same function on widths read off the exported grids (what hqrun.cost will do)
    grids_in = {"dense_1": model.input.activation, "dense_2": model.relu_1.activation,
                "dense_3": model.relu_2.activation, "dense_4": model.relu_3.activation}
    total = 0.0
    for name, q_in in grids_in.items():
        layer = getattr(model, name)
        b_in = torch.as_tensor(q_in.fixed_point_grid().bits(), dtype=torch.float64)
        with torch.no_grad():
            kernel, bias = layer.quantized_kernel(), layer.quantized_bias()
        kq, bq = layer.kernel_quantizer, layer.bias_quantizer
        b_w = torch.as_tensor(np.broadcast_to(kq.fixed_point_grid().bits(), kernel.shape).copy(),
                              dtype=torch.float64) * (kernel != 0)
        b_b = torch.as_tensor(np.broadcast_to(bq.fixed_point_grid().bits(), bias.shape).copy(),
                              dtype=torch.float64) * (bias != 0)
        value = float(mac_ebops(layer.mac, b_in, b_w, b_b))
        assert value == reported["ebops_layers"][name]
        total += value
    assert total == reported["ebops"]


def test_penalty_is_differentiable_in_every_learned_width():
    plan = load_plan("learned")
    model = build_model({"name": "jet_dnn"}, plan, seed=0)
    penalty = EbopsPenalty(model, plan.penalty)
    with torch.no_grad():  # zero biases are pruned (width 0, no gradient): give them values
        for name in ("dense_1", "dense_2", "dense_3", "dense_4"):
            getattr(model, name).bias.fill_(0.3)
    model.train()
    model(torch.randn(32, 16))
    penalty(model).backward()
    fs = {n: p for n, p in model.named_parameters() if n.endswith(".f")}
    assert len(fs) == 12  # input, 4 x (kernel, bias), 3 ReLUs
    # every width that feeds a multiplication is pushed down (dense_4's output is not quantized)
    for name, p in fs.items():
        assert p.grad is not None and (p.grad >= 0).all(), name
        assert p.grad.sum() > 0, name


def test_fixed_plans_count_as_hqrun_cost():
    """For QKeras plans hqrun.cost's EBOPs are the same definition, bias term (one adder input
    per bias bit, HGQ2's) included: one function, two callers."""
    from hqrun.cost import estimate

    model = build_model({"name": "jet_dnn"}, "q6", seed=0)
    with torch.no_grad():
        for name in ("dense_1", "dense_2", "dense_3", "dense_4"):
            getattr(model, name).bias.uniform_(-0.5, 0.5)
    model.eval()
    ours = model_ebops(model, dtype=torch.float64).layers
    cost = {row["name"]: row["fpga"]["ebops"] for row in estimate(model).to_dict()["layers"]}
    for name, value in ours.items():
        assert value == cost[name], name


@pytest.mark.parametrize("learn", [["kernel", "bias", "activation", "input"], ["kernel", "activation"]])
def test_program_total_is_the_general_count_in_one_node(learn):
    """EbopsProgram.total (the penalty's one-node count for dense chains) equals the general
    count, value and gradient, also with float slots (biases, the input) in the chain."""
    import yaml
    from importlib import resources

    from hqrun.quantizers.ebops import EbopsProgram

    raw = yaml.safe_load((resources.files("hqrun.conf") / "quant" / "learned.yaml").read_text())
    model = build_model({"name": "jet_dnn"}, load_plan({**raw, "learn": learn}), seed=0)
    model.train()
    model.fused_training = False  # widths from the layer-by-layer forward
    program = EbopsProgram(model)  # (its dry run resets the widths: before the forward)
    model(torch.randn(64, 16) * 3)
    assert program.dense_chain
    params = [p for n, p in model.named_parameters() if n.endswith((".f", ".i"))]
    fast = program.total()
    general = program(count_pruned=False).total
    assert type(fast.grad_fn).__name__ == "_DenseChainEbopsBackward"
    assert float(fast.detach()) == float(general.detach())
    g_fast = torch.autograd.grad(fast, params, retain_graph=True, allow_unused=True)
    g_general = torch.autograd.grad(general, params, allow_unused=True)
    for a, b in zip(g_fast, g_general):
        assert (a is None and b is None) or torch.allclose(a, b, rtol=1e-6, atol=1e-9)
