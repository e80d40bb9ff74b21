"""The fused training node of learned-width dense chains (quantizers/learned_chain.py).

The chain must be an exact stand-in for the layer-by-layer forward and backward: the same loss,
the same EBOPs penalty, the same gradient on every parameter (up to the order of float
summation), the same training trajectory — and it must step aside whenever the model is not a
chain it covers.
"""

from __future__ import annotations

import gc
import shutil
import weakref
from importlib import resources

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hqrun.models import attach_weight_constraints, build_model, load_plan
from hqrun.models.penalty import BetaSchedule, EbopsPenalty
from hqrun.quantizers.learned_chain import chain_for, fused_ebops
from hqrun.train.module import make_optimizer

HAS_CC = bool(shutil.which("cc") or shutil.which("gcc") or shutil.which("clang"))
pytestmark = pytest.mark.skipif(not HAS_CC, reason="no C compiler on this machine (the chain "
                                "runs on the C loops; without them models train layer by layer)")

LEARNED = yaml.safe_load((resources.files("hqrun.conf") / "quant" / "learned.yaml").read_text())


def learned_model(name: str = "jet_dnn", seed: int = 0, **plan_keys):
    plan = load_plan({**LEARNED, **plan_keys})
    model = build_model({"name": name}, plan, seed=seed)
    model.train()
    return model


def batch(n: int = 300, seed: int = 1, features: int = 16):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, features, generator=gen) * 2, torch.randint(0, 5, (n,), generator=gen)


def loss_and_grads(model, x, y, beta: float, fused: bool):
    model.fused_training = fused
    penalty = EbopsPenalty(model, BetaSchedule(beta=beta))
    for p in model.parameters():
        p.grad = None
    ce = torch.nn.functional.cross_entropy(model(x), y)
    ebops = penalty(model)
    (ce + beta * ebops).backward()
    return float(ce.detach()), float(ebops.detach()), {n: p.grad.clone() for n, p in model.named_parameters()}


def assert_grads_close(a: dict, b: dict, rtol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for name in a:
        scale = max(float(b[name].abs().max()), 1e-6)
        assert torch.allclose(a[name], b[name], rtol=rtol, atol=rtol * scale), name


def test_the_learned_jet_model_trains_through_one_chain_node():
    model = learned_model()
    chain = chain_for(model)
    assert chain is not None and chain.length == len(model) - 1  # all but the softmax
    assert chain.covers_macs
    x, _ = batch()
    out = model(x)
    assert type(out.grad_fn).__name__ == "_ChainFunctionBackward"
    model.fused_training = False
    assert type(model(x).grad_fn).__name__ != "_ChainFunctionBackward"


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 1000), beta=st.sampled_from([0.0, 1e-4, 3e-2]),
       granularity=st.sampled_from(["element", "channel", "layer"]),
       model_name=st.sampled_from(["jet_dnn", "mlp"]))
def test_chain_equals_the_layer_by_layer_path(seed, beta, granularity, model_name):
    """Loss, EBOPs and every parameter's gradient (weights, biases, f and i of every quantizer)."""
    model = learned_model(model_name, seed=seed, granularity=granularity)
    assert chain_for(model) is not None
    x, y = batch(seed=seed)
    model.train()
    model.fused_training = False
    model(x)  # the first training batch sets the integer bits in both paths alike
    ce_l, e_l, g_l = loss_and_grads(model, x, y, beta, fused=False)
    ce_c, e_c, g_c = loss_and_grads(model, x, y, beta, fused=True)
    assert ce_c == ce_l
    assert e_c == e_l  # integer widths: the two counts are exact and equal
    assert_grads_close(g_c, g_l)


def test_three_training_steps_match_and_widths_report_alike():
    states, ebops = [], []
    for fused in (True, False):
        model = learned_model(seed=3)
        model.fused_training = fused
        opt = make_optimizer(model.parameters(), lr=1e-2)
        attach_weight_constraints(model, opt)
        penalty = EbopsPenalty(model, BetaSchedule(beta=1e-3))
        x, y = batch(512, seed=4)
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(x), y) + 1e-3 * penalty(model)
            loss.backward()
            opt.step()
        model.eval()
        ebops.append(penalty.report(model)["ebops"])
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    assert ebops[0] == ebops[1]
    for key in states[1]:
        assert torch.allclose(states[0][key].float(), states[1][key].float(), rtol=1e-4, atol=1e-5), key


def test_penalty_takes_the_chains_count_once_and_falls_back_otherwise():
    model = learned_model()
    penalty = EbopsPenalty(model, BetaSchedule(beta=1e-3))
    x, _ = batch()
    model(x)
    chain = model.__dict__["_chain"]
    assert chain.pending is not None
    first = penalty(model)
    assert chain.pending is None  # taken
    second = penalty(model)  # counted again layer by layer from the same widths: same number
    assert float(first.detach()) == float(second.detach())
    assert type(first.grad_fn).__name__ == "_ChainFunctionBackward"
    assert type(second.grad_fn).__name__ != "_ChainFunctionBackward"


def test_a_float_input_read_at_other_input_bits_is_not_taken_from_the_chain():
    model = learned_model(learn=["kernel", "bias", "activation"])  # no input quantizer
    chain = chain_for(model)
    assert chain is not None and chain.reads_float_input
    x, _ = batch()
    model(x)
    assert fused_ebops(model, 6.0) is None  # the node counted the default 8 input bits
    model(x)
    assert fused_ebops(model, 8.0) is not None


def test_the_chain_steps_aside_for_models_it_does_not_cover():
    assert chain_for(build_model({"name": "jet_dnn"}, "q6", seed=0)) is None
    assert chain_for(learned_model(int_bits="range")) is None  # tracked ranges: layer by layer
    mixed = learned_model(learn=["activation", "input"], default={"kernel": "quantized_bits(6,0,alpha=1)",
                                                                  "bias": "quantized_bits(6,0,alpha=1)",
                                                                  "activation": None})
    assert chain_for(mixed) is None


def test_a_model_in_float64_trains_layer_by_layer_with_the_same_numbers():
    """The C loops read float32 CPU memory only: a model moved to float64 (or a GPU) must not be
    handed to them — the layers run instead, and the fused switch changes nothing."""
    model = learned_model(seed=5).double()
    x, y = batch(seed=5)
    x = x.double()
    model.fused_training = False
    model(x)  # integer bits from the first batch, in both paths alike
    out = model(x)
    assert type(out.grad_fn).__name__ != "_ChainFunctionBackward"
    ce_l, e_l, g_l = loss_and_grads(model, x, y, 1e-4, fused=False)
    ce_c, e_c, g_c = loss_and_grads(model, x, y, 1e-4, fused=True)
    assert (ce_c, e_c) == (ce_l, e_l)
    assert all(torch.equal(g_c[n], g_l[n]) for n in g_l)
    assert model.__dict__.get("_chain") is not None  # the chain exists; it declined the operands


def test_replacing_a_quantizer_shortens_the_chain_at_once():
    """A QKeras kernel in dense_2: the node covers input and dense_1 only, the rest trains layer
    by layer, and the penalty counts layer by layer (not every MAC layer is in the node)."""
    model = learned_model()
    x, y = batch()
    model(x)
    old = model.__dict__["_chain"]
    model.dense_2.set_quantizer("kernel", "quantized_bits(6,0,alpha=1)")
    model(x)
    chain = model.__dict__["_chain"]
    assert chain is not old and chain.length == 2 and not chain.covers_macs
    assert fused_ebops(model, 8.0) is None
    ce_c, e_c, g_c = loss_and_grads(model, x, y, 1e-3, fused=True)
    ce_l, e_l, g_l = loss_and_grads(model, x, y, 1e-3, fused=False)
    assert (ce_c, e_c) == (ce_l, e_l)
    assert_grads_close(g_c, g_l)


def test_no_step_keeps_its_graph_alive_after_the_next():
    """The node keeps plain data only: nothing of a step survives the step after it (a
    reference cycle through an output would leak every step's activations)."""
    model = learned_model()
    penalty = EbopsPenalty(model, BetaSchedule(beta=1e-3))
    x, y = batch()

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y) + 1e-3 * penalty(model)
        loss.backward()

    step()
    width = model.dense_1.kernel_quantizer._last_bits
    ref = weakref.ref(width)
    del width
    step()
    gc.collect()
    assert ref() is None
