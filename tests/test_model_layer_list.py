"""The `layers` model: an architecture written as a list of layer specs builds exactly that list,
takes plans by layer name like every model, and refuses malformed lists naming the entry."""

from __future__ import annotations

import pytest
import torch

from hqrun.errors import ConfigError
from hqrun.models import build_model, plan_from_model
from hqrun.quantizers.layers import Flatten, QActivation, QConv1D, QDense

torch.set_num_threads(1)

MLP = {"name": "layers", "n_inputs": 6, "layers": [
    {"type": "input"}, {"type": "dense", "units": 8}, {"type": "relu"},
    {"type": "dense", "units": 4}, {"type": "activation"}, {"type": "dense", "units": 3},
    {"type": "softmax"}]}


def test_layers_builds_the_list_with_default_names_and_inferred_sizes():
    model = build_model(MLP)
    assert [n for n, _ in model.named_children()] == \
        ["input", "dense_1", "relu_1", "dense_2", "act_1", "dense_3", "softmax"]
    assert model.dense_2.in_features == 8 and model.dense_3.in_features == 4
    assert isinstance(model.act_1, QActivation) and model.act_1.activation is None
    assert model(torch.zeros(2, 6)).shape == (2, 3)  # forward skips the trailing softmax


def test_layers_takes_a_plan_by_name():
    plan = {"name": "p", "input": "quantized_bits(8,2,alpha=1)",
            "default": {"kernel": "quantized_bits(4,0,alpha=1)", "bias": None,
                        "activation": "quantized_relu(4,1)"},
            "layers": {"act_1": {"activation": "quantized_bits(6,2)"}}}
    model = build_model(MLP, plan)
    back = plan_from_model(model).to_dict()
    assert back["layers"]["relu_1"] == {"activation": "quantized_relu(4,1)"}
    assert back["layers"]["act_1"] == {"activation": "quantized_bits(6,2)"}
    assert back["layers"]["dense_3"] == {"kernel": "quantized_bits(4,0,alpha=1)"}


def test_layers_builds_convolutions_with_explicit_names():
    cfg = {"name": "layers", "input_shape": [3, 10], "layers": [
        {"type": "input"},
        {"type": "conv1d", "name": "c", "filters": 4, "kernel_size": 3, "strides": 2},
        {"type": "flatten", "keras_order": False}, {"type": "dense", "units": 2, "use_bias": False}]}
    model = build_model(cfg)
    assert isinstance(model.c, QConv1D) and isinstance(model.flatten, Flatten)
    assert not model.flatten.keras_order
    assert isinstance(model.dense_1, QDense) and model.dense_1.in_features == 16
    assert model.dense_1.bias is None


@pytest.mark.parametrize("cfg, words", [
    ({"name": "layers", "layers": [{"type": "dense", "units": 2}]}, "exactly one of n_inputs"),
    ({"name": "layers", "n_inputs": 3, "layers": [{"type": "lstm"}]}, "layers[0] has type 'lstm'"),
    ({"name": "layers", "n_inputs": 3, "layers": [{"type": "dense"}]}, "lacks units"),
    ({"name": "layers", "n_inputs": 3, "layers": ["dense"]}, "each layer is a mapping"),
    ({"name": "layers", "n_inputs": 3, "layers": [{"type": "relu", "name": "a"},
                                                    {"type": "relu", "name": "a"}]}, "named 'a'"),
    ({"name": "layers", "input_shape": [1, 4, 4], "layers": [{"type": "dense", "units": 2}]},
     "put a {type: flatten}"),
    ({"name": "layers", "n_inputs": 3, "layers": [{"type": "dense", "units": 2, "colour": 1}]},
     "layers[0] (dense)"),
])
def test_malformed_layer_lists_are_refused_naming_the_entry(cfg, words):
    with pytest.raises(ConfigError) as info:
        build_model(cfg)
    assert words in str(info.value)
