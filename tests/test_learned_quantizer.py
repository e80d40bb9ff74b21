"""learned_bits / learned_relu: spec round trip, roles, eval output on the grid, pruning."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hqrun.errors import PlanError, QuantizerSpecError
from hqrun.models import Plan, apply_plan, build_model
from hqrun.quantizers import get, learned_bits, learned_relu
from hqrun.quantizers.layers import QDense, QBatchNormalization, is_elementwise

granularities = st.sampled_from(["element", "channel", "layer"])
overflows = st.sampled_from(["SAT", "WRAP"])


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(["learned_bits", "learned_relu"]), init=st.integers(-8, 20),
       granularity=granularities, overflow=overflows, decay=st.sampled_from([0.0, 0.01, 0.5]))
def test_spec_round_trip(name, init, granularity, overflow, decay):
    q = get(f"{name}(init_frac={init},granularity={granularity!r},overflow={overflow!r},range_decay={decay})")
    assert get(str(q)) == q and str(get(str(q))) == str(q)
    assert get(q.to_dict()) == q
    assert str(get(name)) == f"{name}()"
    assert q.elementwise and is_elementwise(q)
    assert q.applies_relu is (name == "learned_relu")


@pytest.mark.parametrize("spec, word", [
    ("learned_bits(granularity='neuron')", "granularity"),
    ("learned_bits(overflow='SAT_SYM')", "overflow"),
    ("learned_relu(range_decay=1.0)", "range_decay"),
    ("learned_bits(init_frac=99)", "init_frac"),
    ("learned_bits(bits=4)", "bits"),
])
def test_bad_arguments_name_the_argument(spec, word):
    with pytest.raises(QuantizerSpecError) as err:
        get(spec)
    assert word in str(err.value) and "\n" not in str(err.value)


def test_slots_decide_the_role_and_refuse_what_cannot_learn():
    layer = QDense(4, 3, kernel_quantizer="learned_bits()", bias_quantizer="learned_bits()",
                   activation="learned_relu()")
    assert layer.kernel_quantizer.role == "weight" and layer.bias_quantizer.role == "weight"
    assert layer.activation.role == "data"
    with pytest.raises(QuantizerSpecError, match="'kernel' slot"):
        QDense(4, 3, kernel_quantizer="learned_relu()")
    with pytest.raises(QuantizerSpecError, match="'gamma' slot"):
        QBatchNormalization(3, gamma_quantizer="learned_bits()")
    model = build_model({"name": "jet_dnn", "batchnorm": True}, "float")
    with pytest.raises(PlanError, match=r"layers\.bn_1\.beta"):
        apply_plan(model, {"name": "p", "layers": {"bn_1": {"beta": "learned_bits()"}}})
    # one object given to two slots: the second gets its own copy (its own parameters)
    q = learned_bits()
    a, b = QDense(4, 3, kernel_quantizer=q), QDense(4, 3, kernel_quantizer=q)
    a.kernel_quantizer(a.weight)
    c = QDense(4, 3, kernel_quantizer=a.kernel_quantizer)
    assert a.kernel_quantizer is q and b.kernel_quantizer is q
    assert c.kernel_quantizer is not q and not c.kernel_quantizer.materialized


def trained_data_quantizer(spec: str, shape: tuple[int, ...], seed: int) -> torch.nn.Module:
    q = get(spec)
    gen = torch.Generator().manual_seed(seed)
    q.train()
    f_shape = None
    for _ in range(3):
        x = torch.randn((8, *shape), generator=gen) * 3
        q(x)
        f_shape = q.f.shape
    with torch.no_grad():  # spread the learned widths a little
        q.f.add_(torch.randint(-3, 3, f_shape, generator=gen).float())
    return q.eval()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), name=st.sampled_from(["learned_bits", "learned_relu"]),
       granularity=granularities, overflow=overflows, init=st.integers(-2, 8),
       conv=st.booleans(), learned_integer=st.booleans())
def test_eval_output_is_bit_exact_on_the_exported_grid(seed, name, granularity, overflow, init, conv,
                                                       learned_integer):
    shape = (3, 4, 5) if conv else (6,)
    if learned_integer:
        overflow = "SAT"
    int_bits = "learned" if learned_integer else "range"
    q = trained_data_quantizer(f"{name}(init_frac={init},granularity={granularity!r},"
                               f"overflow={overflow!r},int_bits={int_bits!r})", shape, seed)
    grid = q.fixed_point_grid()
    assert grid.shape == shape and grid.overflow == overflow
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn((50, *shape), generator=gen) * 8  # far beyond the tracked range too
    y = q(x)
    assert torch.equal(y, grid.quantize(x))
    assert grid.contains(y) and q.fixed_point_type().contains(y)
    assert q.bits == int(grid.bits().max())
    if name == "learned_relu":
        assert not grid.signed.any() and (y >= 0).all()


def test_training_output_never_saturates_and_tracks_the_range():
    q = get("learned_bits(init_frac=2)")
    q.train()
    x = torch.tensor([[0.3, -5.1], [1.2, 0.4]])
    y = q(x)
    assert torch.equal(y, torch.round(x * 4) / 4)
    assert q.range.tolist() == [1.2000000476837158, 5.099999904632568]
    q.eval()
    assert q(torch.tensor([[100.0, -100.0]])).tolist() == [[1.75, -8.0]]  # 4 and 6 bits, saturated


def test_weights_each_fit_their_own_value_and_zero_codes_are_pruned():
    torch.manual_seed(0)
    layer = QDense(8, 4, kernel_quantizer="learned_bits(init_frac=3)", bias_quantizer="learned_bits(init_frac=2)")
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([0.0, 0.5, -0.25, 3.0]))
        layer.weight[0, :3] = torch.tensor([0.01, -0.06, 0.9])
    layer.eval()
    with torch.no_grad():
        kernel = layer.quantized_kernel()
        bias = layer.quantized_bias()
    q = layer.kernel_quantizer
    grid = q.fixed_point_grid()
    assert torch.equal(kernel, grid.quantize(layer.weight))
    assert kernel[0, :3].tolist() == [0.0, -0.0, 0.875]  # codes 0, 0, 7
    assert grid.bits()[0, :3].tolist() == [0, 0, 4]
    assert q.pruned() == int((kernel == 0).sum()) >= 2
    assert (kernel[torch.as_tensor(grid.bits() == 0)] == 0).all()
    # the same values in training mode (no saturation for weights)
    layer.train()
    assert torch.equal(layer.quantized_kernel().detach(), kernel)
    assert bias.tolist() == [0.0, 0.5, -0.25, 3.0]
    assert layer.bias_quantizer.fixed_point_grid().bits().tolist() == [0, 3, 1, 5]  # codes 0, 2, -1, 12
    assert math.isinf(q.max())  # no QKeras weight clip on learned kernels
    assert layer.constraints() == []


def test_quantizer_used_alone_quantizes_data_and_is_deterministic():
    outs = []
    for _ in range(2):
        q = learned_relu(init_frac=3).train()
        gen = torch.Generator().manual_seed(5)
        for _ in range(4):
            q(torch.randn(16, 10, generator=gen))
        outs.append((q.range.clone(), q.eval()(torch.randn(4, 10, generator=gen))))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def test_not_materialized_quantizer_explains_itself():
    with pytest.raises(QuantizerSpecError, match="first call"):
        learned_bits().fixed_point_grid()
    assert learned_bits().fixed_point_type() is None and learned_bits().bits == 0


def test_plan_schema_knobs_expand_to_specs():
    plan = Plan.from_dict({"name": "mix", "learn": ["activation", "input"], "granularity": "channel",
                           "init_frac": {"activation": 3, "input": 5},
                           "default": {"kernel": "quantized_bits(6,0,alpha=1)", "bias": None,
                                       "activation": None}})
    assert plan.input == "learned_bits(init_frac=5,granularity='channel')"
    assert plan.default["activation"] == "learned_relu(init_frac=3,granularity='channel')"
    assert plan.default["kernel"] == "quantized_bits(6,0,alpha=1)"
    assert "learn" not in plan.to_dict() and Plan.from_dict(plan.to_dict()).to_dict() == plan.to_dict()


def test_learned_integer_bits_saturate_and_get_the_clip_gradient():
    q = get("learned_bits(init_frac=1,int_bits='learned')")
    q.train()
    q(torch.tensor([[1.0], [-1.5]]))  # first batch: range 1.5 -> codes up to 3 -> 3 bits, I = 2
    assert q.i.tolist() == [2.0] and q.fixed_point_grid().bits().tolist() == [3]
    x = torch.tensor([[5.0], [-7.0], [0.7]], requires_grad=True)
    y = q(x)
    assert y.detach().flatten().tolist() == [1.5, -2.0, 0.5]  # saturated at 2**(2-1) - 2**-1, -2
    g = torch.tensor([[1.0], [2.0], [3.0]])
    (g * y).sum().backward()
    assert x.grad.flatten().tolist() == [0.0, 0.0, 3.0]  # clipped straight through
    # d hi/d I = d(-lo)/d I = ln2 * 2**(I-1): 1 * ln2 * 2 - 2 * ln2 * 2
    assert q.i.grad.item() == pytest.approx(math.log(2) * 2 * (1 - 2))
    with pytest.raises(QuantizerSpecError, match="overflow='SAT'"):
        get("learned_relu(int_bits='learned',overflow='WRAP')")
    with pytest.raises(QuantizerSpecError, match="activation and input slots only"):
        QDense(4, 3, kernel_quantizer="learned_bits(int_bits='learned')")
