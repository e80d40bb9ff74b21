"""get(spec): parsing as QKeras users write specs, round trips, equality, and clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hqrun.errors import HqrunError, QuantizerSpecError
from hqrun.quantizers import Quantizer, get, parse_spec, quantized_bits, quantized_relu, valid_names

torch.set_num_threads(1)

# AutoQKeras 0.9.0's default search menu plus the variants users commonly write.
SPECS = [
    "binary", "stochastic_binary", "ternary", "stochastic_ternary", "bernoulli", "linear",
    "quantized_bits(2,1,1,alpha=1.0)", "quantized_bits(4,0,1)", "quantized_bits(8,0,1)",
    "quantized_po2(4,1)", "quantized_bits(8,3,1)", "quantized_po2(4,8)",
    "binary(alpha='auto_po2')", "quantized_relu(3,1)", "quantized_relu(4,2)",
    "quantized_relu(8,2)", "quantized_relu(8,4)", "quantized_relu(16,8)",
    "quantized_relu_po2(4,4)", "quantized_bits(4,1)", "quantized_bits(8,2)",
    "quantized_bits(16,10)", "quantized_po2(6,4)",
    "quantized_bits(6,0,alpha=1)", "quantized_bits(6, 0, alpha = 1)",
    'quantized_bits(4,0,alpha="auto")', "quantized_bits(4,0,keep_negative=False)",
    "quantized_bits(4,0,0,False,'auto_po2',False,1)",
    "quantized_relu(4,0,negative_slope=0.25)", "quantized_relu(6,2,use_sigmoid=1)",
    "quantized_relu(6,1,is_quantized_clip=False,relu_upper_bound=1.5)",
    "quantized_po2(5,4,log2_rounding='floor')", "quantized_relu_po2(5,4,quadratic_approximation=True)",
    "ternary(alpha=2.0,threshold=0.25)", "ternary(alpha='auto_po2',number_of_unrolls=1)",
    "stochastic_ternary(alpha='auto',temperature=4.0)", "bernoulli(alpha='auto_po2')",
    "binary(use_01=1,alpha=2.0)", "quantized_tanh(4,symmetric=1)", "quantized_sigmoid(6,use_real_sigmoid=1)",
    "quantized_bits(6,0,alpha=1,use_stochastic_rounding=True)",
    "quantized_ulaw(4,1,1)", "quantized_hswish(6,2,relu_shift=2,relu_upper_bound=4)",
]


@pytest.mark.parametrize("spec", SPECS)
def test_round_trip(spec: str):
    q = get(spec)
    assert isinstance(q, Quantizer) and isinstance(q, nn.Module)
    again = get(str(q))
    assert again == q and str(again) == str(q)
    assert get(q.to_dict()) == q
    assert get(q) is q
    assert type(q)(**q.get_config()) == q


def test_canonical_strings():
    assert str(get("quantized_bits(6, 0, alpha=1)")) == "quantized_bits(6,0,alpha=1)"
    assert str(get("quantized_relu(4,2)")) == "quantized_relu(4,2)"
    assert str(get("binary(alpha='auto_po2')")) == "binary(alpha='auto_po2')"
    assert str(get("quantized_po2(4,1)")) == "quantized_po2(4,max_value=1)"
    assert repr(get("ternary")) == "ternary()"


def test_dict_form_as_qkeras_serializes():
    q = get({"class_name": "quantized_relu", "config": {"bits": 4, "integer": 2}})
    assert q == quantized_relu(4, 2)
    assert get({"class_name": "binary"}) == get("binary")


def test_none_and_linear():
    assert get(None) is None
    lin = get("linear")
    assert lin.is_identity and str(lin) == "linear()" and get("linear()") == lin


def test_equality_is_by_spec_hash_by_identity():
    a, b = get("quantized_bits(6,0,alpha=1)"), get("quantized_bits(bits=6,integer=0,alpha=1.0)")
    assert a == b and a.key == b.key and a is not b
    assert a != get("quantized_bits(6,0)")  # alpha=None and alpha=1 are different specs
    assert {a.key: 1}[b.key] == 1
    # Equal quantizers inside one module must both follow .eval()/.train() (torch de-duplicates
    # children with a set, so a spec-based hash would silently skip the second one).
    m = nn.Module()
    m.k, m.b = a, b
    m.eval()
    assert not a.training and not b.training
    assert len(list(m.children())) == 2


def test_valid_names_cover_qkeras_family():
    names = set(valid_names())
    assert {"quantized_bits", "quantized_relu", "quantized_po2", "quantized_relu_po2", "binary",
            "stochastic_binary", "ternary", "stochastic_ternary", "bernoulli", "quantized_tanh",
            "quantized_sigmoid", "quantized_ulaw", "quantized_hswish", "linear"} <= names


def test_parse_spec_is_not_eval():
    assert parse_spec("quantized_bits(4, 0, alpha='auto')") == ("quantized_bits", [4, 0], {"alpha": "auto"})
    for hostile in ["__import__('os').system('true')", "quantized_bits(4, x.y)",
                    "quantized_bits(*[4])", "quantized_bits(**{'bits': 4})", "(lambda: 1)()"]:
        with pytest.raises(QuantizerSpecError):
            get(hostile)


@pytest.mark.parametrize(
    "spec, fragments",
    [
        ("quantized_bitz(4,0)", ["quantized_bitz", "Did you mean 'quantized_bits'", "quantized_relu"]),
        ("relu", ["'relu'", "Valid quantizers", "quantized_relu"]),
        ("quantized_bits(4,0,foo=1)", ["'foo'", "Valid arguments", "keep_negative", "alpha"]),
        ("quantized_bits(0,0)", ["bits=0"]),
        ("quantized_bits(-2,0)", ["bits=-2"]),
        ("quantized_relu(0)", ["bits=0"]),
        ("quantized_bits(4,5)", ["integer=5", "bits=4"]),
        ("quantized_relu(3,4)", ["integer=4"]),
        ("quantized_bits(4.5,0)", ["bits=4.5"]),
        ("quantized_relu(4,0,negative_slope=0.3)", ["negative_slope=0.3", "power of two"]),
        ("quantized_relu(4,0,negative_slope=-0.5)", ["negative_slope"]),
        ("quantized_relu_po2(4,negative_slope=0.2)", ["negative_slope"]),
        ("quantized_bits(4,0,alpha='best')", ["alpha='best'"]),
        ("quantized_bits(4,0,alpha=auto)", ["alpha", "quoted"]),
        ("quantized_bits(4,0,alpha=-1)", ["alpha=-1"]),
        ("quantized_po2(4,-1)", ["max_value=-1"]),
        ("quantized_po2(4,log2_rounding='ceil')", ["log2_rounding"]),
        ("ternary(alpha='auto',threshold=0.5)", ["threshold"]),
        ("ternary(use_stochastic_rounding=1)", ["use_stochastic_rounding"]),
        ("quantized_bits(1,2,3,4,5,6,7,8,9,10,11,12)", ["at most 11 arguments"]),
        ("quantized_bits(4,bits=4)", ["'bits'", "twice"]),
        ("quantized_bits(4,0", ["name(arg"]),
        ("binary(temperature=2)", ["'temperature'", "use_01"]),
    ],
)
def test_errors_name_the_culprit(spec: str, fragments: list[str]):
    with pytest.raises(QuantizerSpecError) as info:
        get(spec)
    msg = str(info.value)
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} missing from: {msg}"
    assert isinstance(info.value, HqrunError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "bad",
    [{"config": {"bits": 4}}, {"class_name": "quantized_relu", "config": [4]},
     {"class_name": "quantized_relu", "cfg": {}}, 42, 3.5, ["quantized_bits(4,0)"]],
)
def test_bad_spec_types(bad):
    with pytest.raises(QuantizerSpecError):
        get(bad)


def test_direct_construction_validates_too():
    with pytest.raises(QuantizerSpecError, match="bits"):
        quantized_bits(bits=0)
    with pytest.raises(QuantizerSpecError, match="negative_slope"):
        quantized_relu(4, 0, negative_slope=0.75)
