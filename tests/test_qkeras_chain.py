"""The fused training node of QKeras-quantized dense chains (quantizers/qkeras_chain.py).

The node stands in for the layer-by-layer training step, so it must give the *same bits*: the
same loss and the same gradient on every parameter (torch.equal, not allclose), hence the same
training trajectory — for every quantizer of the search's deployable menu — and it must step aside
(or stop early) where a layer is not one it covers.
"""

from __future__ import annotations

import copy
import gc
import shutil
import weakref

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hqrun.models import attach_weight_constraints, build_model, load_plan
from hqrun.quantizers.chain_walk import training_chain_for
from hqrun.quantizers.learned_chain import LearnedChain
from hqrun.quantizers.qkeras_chain import QKerasChain, chain_for
from hqrun.train.losses import cross_entropy
from hqrun.train.module import make_optimizer

HAS_CC = bool(shutil.which("cc") or shutil.which("gcc") or shutil.which("clang"))
pytestmark = pytest.mark.skipif(not HAS_CC, reason="no C compiler on this machine (the chain "
                                "runs on the C loops; without them models train layer by layer)")

#: conf/search/space/deployable.yaml's menu, plus straight-through activations and an input
#: quantizer (both run inside the node too)
KERNELS = ["binary", "ternary", "quantized_bits(2,1,1,alpha=1.0)", "quantized_bits(4,0,1,alpha=1)",
           "quantized_bits(6,0,1,alpha=1)", "quantized_bits(8,0,1,alpha=1)", "quantized_po2(4,1)",
           "quantized_bits(4,0,1,alpha='auto_po2')", "quantized_bits(6,2)"]
BIASES = ["quantized_bits(4,0,1,alpha=1)", "quantized_bits(8,3,1,alpha=1)", "quantized_po2(4,8)"]
ACTIVATIONS = ["quantized_relu(2,0)", "quantized_relu(2,1)", "quantized_relu(3,1)",
               "quantized_relu(4,2)", "quantized_relu(6,2)", "quantized_relu(8,4)",
               "quantized_relu(16,8)", "quantized_relu(24,4)", "quantized_bits(8,2)"]


def plan_of(kernels, biases, activations, input_q=None, model="jet_dnn"):
    dense = 4 if model == "jet_dnn" else 3
    layers = {f"dense_{k + 1}": {"kernel": kernels[k], "bias": biases[k]} for k in range(dense)}
    for k in range(dense - 1):
        layers[f"relu_{k + 1}"] = {"activation": activations[k]}
    return load_plan({"name": "t", "input": input_q, "default": {}, "layers": layers})


def model_of(plan, name="jet_dnn", seed=0):
    model = build_model({"name": name}, plan, seed=seed)
    model.train()
    return model


def batch(n=300, seed=1, features=16):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, features, generator=gen) * 2, torch.randint(0, 5, (n,), generator=gen)


def trajectory(model, x, y, fused: bool, steps: int = 3, lr: float = 0.3):
    """Loss and every gradient over ``steps`` SGD steps (large steps: many codes change)."""
    model.fused_training = fused
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    out = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = cross_entropy(model(x), y)
        loss.backward()
        out.append((loss.detach().clone(),
                    {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
        opt.step()
    return out


def assert_same_bits(a, b):
    assert len(a) == len(b)
    for (la, ga), (lb, gb) in zip(a, b):
        assert torch.equal(la, lb), (float(la), float(lb))
        assert ga.keys() == gb.keys()
        for name in ga:
            assert torch.equal(ga[name], gb[name]), name


def test_the_q6_jet_model_trains_through_one_chain_node():
    model = model_of(load_plan("q6"))
    chain = training_chain_for(model)
    assert isinstance(chain, QKerasChain) and chain.length == len(model) - 1  # all but softmax
    assert len(chain.weight_batch.index) == 8  # every kernel and bias rounded in one C call
    x, _ = batch()
    assert type(model(x).grad_fn).__name__ == "_ChainFunctionBackward"
    model.fused_training = False
    assert type(model(x).grad_fn).__name__ != "_ChainFunctionBackward"
    model.eval()  # inference runs the layers
    assert model(x).grad_fn is None or type(model(x).grad_fn).__name__ != "_ChainFunctionBackward"


@pytest.mark.parametrize("plan", ["q2", "q4", "q6", "q8", "q16"])
def test_homogeneous_plans_give_the_layer_paths_bits(plan):
    x, y = batch()
    fused = trajectory(model_of(load_plan(plan)), x, y, True)
    layers = trajectory(model_of(load_plan(plan)), x, y, False)
    assert_same_bits(fused, layers)


@settings(max_examples=12, deadline=None)
@given(data=st.data(), seed=st.integers(0, 1000), model_name=st.sampled_from(["jet_dnn", "mlp"]))
def test_every_deployable_quantizer_gives_the_layer_paths_bits(data, seed, model_name):
    dense = 4 if model_name == "jet_dnn" else 3
    kernels = data.draw(st.lists(st.sampled_from(KERNELS), min_size=dense, max_size=dense))
    biases = data.draw(st.lists(st.sampled_from(BIASES), min_size=dense, max_size=dense))
    acts = data.draw(st.lists(st.sampled_from(ACTIVATIONS), min_size=dense - 1, max_size=dense - 1))
    input_q = data.draw(st.sampled_from([None, "quantized_bits(8,3)"]))
    plan = plan_of(kernels, biases, acts, input_q, model_name)
    features = model_of(plan, model_name).input_shape[0]
    x, y = batch(seed=seed, features=features)
    fused_model = model_of(plan, model_name, seed)
    assert isinstance(training_chain_for(fused_model), QKerasChain)
    assert_same_bits(trajectory(fused_model, x, y, True),
                     trajectory(model_of(plan, model_name, seed), x, y, False))


def test_training_with_adam_and_weight_clips_ends_on_the_same_weights():
    x, y = batch(512)
    finals = []
    for fused in (True, False):
        model = model_of(load_plan("q4"), seed=3)
        model.fused_training = fused
        opt = make_optimizer(model.parameters(), 3e-2)
        attach_weight_constraints(model, opt)
        for step in range(20):
            rows = slice(128 * (step % 4), 128 * (step % 4 + 1))
            opt.zero_grad(set_to_none=True)
            cross_entropy(model(x[rows]), y[rows]).backward()
            opt.step()
        finals.append({n: p.detach().clone() for n, p in model.named_parameters()})
    for name in finals[0]:
        assert torch.equal(finals[0][name], finals[1][name]), name


def test_a_layer_it_cannot_run_ends_the_chain_there_with_the_same_bits():
    # quantized_tanh has a tanh-shaped gradient: the node covers dense_1 only
    plan = plan_of(["quantized_bits(6,0,1,alpha=1)"] * 4, ["quantized_bits(6,0,1,alpha=1)"] * 4,
                   ["quantized_tanh(4)", "quantized_relu(4,0)", "quantized_relu(4,0)"])
    model = model_of(plan)
    chain = chain_for(model)
    assert chain is not None and chain.length == 2  # input, dense_1
    x, y = batch()
    assert_same_bits(trajectory(model, x, y, True), trajectory(model_of(plan), x, y, False))


@pytest.mark.parametrize("kernel", ["stochastic_ternary(alpha='auto_po2')",
                                    "quantized_bits(4,0,1,alpha=1,use_stochastic_rounding=True)",
                                    "quantized_bits(4,0,1,alpha=1,qnoise_factor=0.5)",
                                    "quantized_bits(4,0,1,alpha=1,use_ste=False)"])
def test_random_or_partial_kernels_train_layer_by_layer(kernel):
    from hqrun.quantizers import get

    assert not get(kernel).straight_through
    assert not get("binary(alpha=None)").straight_through  # tanh's gradient (not as a kernel:
    # QDense gives binary/ternary kernels alpha='auto_po2', which is straight-through)
    plan = plan_of([kernel] * 4, ["quantized_bits(4,0,1,alpha=1)"] * 4, ["quantized_relu(4,0)"] * 3)
    assert chain_for(model_of(plan)) is None


def test_float_and_learned_models_are_not_qkeras_chains():
    assert training_chain_for(model_of(load_plan("float"))) is None
    from importlib import resources

    import yaml

    learned = yaml.safe_load((resources.files("hqrun.conf") / "quant" / "learned.yaml").read_text())
    assert isinstance(training_chain_for(model_of(load_plan(learned))), LearnedChain)
    assert chain_for(build_model({"name": "cnn"}, "q6", seed=0)) is None  # convolutions first


def test_swapping_a_quantizer_rebuilds_the_chain():
    model = model_of(load_plan("q6"))
    x, _ = batch()
    model(x)
    first = model.__dict__["_chain"]
    model.relu_2.set_quantizer("activation", "quantized_tanh(4)")
    model(x)
    second = model.__dict__["_chain"]
    assert second is not first and second.length == 4  # input, dense_1, relu_1, dense_2
    model.relu_2.set_quantizer("activation", "quantized_relu(6,0)")
    model(x)
    assert model.__dict__["_chain"].length == len(model) - 1


def test_float64_models_and_sequence_inputs_run_the_layers():
    model = model_of(load_plan("q6")).double()
    x, _ = batch()
    assert type(model(x.double()).grad_fn).__name__ != "_ChainFunctionBackward"


def test_no_step_keeps_its_graph_alive_after_the_next():
    """The node keeps plain tensors only, never its own output: nothing of a step survives the
    step after it (a reference cycle through C++ would leak every step's activations)."""
    model = model_of(load_plan("q6"))
    x, y = batch()

    def step():
        out = model(x)
        cross_entropy(out, y).backward()
        return weakref.ref(out)

    ref = step()
    step()
    gc.collect()
    assert ref() is None


def test_a_trained_model_pickles_and_copies_and_trains_on():
    """The chain is a cache: pickling and deep copies leave it out and rebuild it."""
    import pickle

    model = model_of(load_plan("q6"))
    x, y = batch()
    cross_entropy(model(x), y).backward()
    assert isinstance(model.__dict__["_chain"], QKerasChain)
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert "_chain" not in twin.__dict__
        twin.train()
        assert type(twin(x).grad_fn).__name__ == "_ChainFunctionBackward"
        assert twin.__dict__["_chain"].stages[0].layer is twin.dense_1
