"""Quantization plans: schema, round trips, named plans, validation errors against a model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from hqrun.errors import PlanError
from hqrun.models import Plan, build_model, homogeneous_plan, jet_dnn, load_plan

CONF = Path(__file__).resolve().parents[1] / "conf"

HETERO = {
    "name": "hetero",
    "input": "quantized_bits(8,3,alpha=1)",
    "default": {"kernel": "quantized_bits(6,0,alpha=1)", "bias": "quantized_bits(6,0,alpha=1)",
                "activation": "quantized_relu(6,0)"},
    "layers": {"dense_1": {"kernel": "quantized_bits(4,0,alpha=1)"},
               "relu_1": {"activation": "quantized_relu(3,1)"},
               "dense_4": {"bias": None}},
}


def test_dict_round_trip() -> None:
    plan = Plan.from_dict(HETERO)
    assert Plan.from_dict(plan.to_dict()) == plan
    assert plan.to_dict()["layers"]["dense_4"] == {"bias": None}


def test_yaml_round_trip(tmp_path: Path) -> None:
    plan = Plan.from_dict(HETERO)
    path = tmp_path / "plan.yaml"
    text = plan.to_yaml(path)
    assert path.read_text() == text
    assert Plan.from_yaml(path) == plan
    assert load_plan(str(path)) == plan
    assert Plan.from_yaml(text) == plan


def test_dict_spec_and_omegaconf_input() -> None:
    data = dict(HETERO, layers={"dense_2": {"kernel": {"class_name": "quantized_bits",
                                                       "config": {"bits": 4, "integer": 0}}}})
    plan = load_plan(OmegaConf.create(data))
    assert plan.layers["dense_2"]["kernel"]["config"]["bits"] == 4


def test_named_plans() -> None:
    assert load_plan(None) == load_plan("float")
    assert load_plan("float").default == {"kernel": None, "bias": None, "activation": None}
    q6 = load_plan("q6")
    assert q6.default["kernel"] == "quantized_bits(6,0,alpha=1)"
    assert q6.default["activation"] == "quantized_relu(6,0)"
    assert load_plan("q23") == homogeneous_plan(23)  # any q<n>, not only the shipped files
    with pytest.raises(PlanError, match="q<n>"):
        load_plan("q6x")


@pytest.mark.parametrize("path", sorted((CONF / "quant").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_quant_configs_load(path: Path) -> None:
    plan = Plan.from_dict(OmegaConf.load(path))
    assert plan.name == path.stem
    if path.stem.startswith("q"):
        assert plan == homogeneous_plan(int(path.stem[1:]))


def test_q_files_cover_2_to_16() -> None:
    names = {p.stem for p in (CONF / "quant").glob("q*.yaml")}
    assert {f"q{n}" for n in range(2, 17)} <= names


def test_unknown_layer_lists_valid_names() -> None:
    plan = Plan.from_dict({"name": "bad", "layers": {"dense_9": {"kernel": None}}})
    with pytest.raises(PlanError) as err:
        plan.validate(jet_dnn())
    msg = str(err.value)
    assert "dense_9" in msg
    for name in ("input", "dense_1", "relu_1", "dense_4", "softmax"):
        assert name in msg


def test_slot_the_layer_lacks() -> None:
    plan = Plan.from_dict({"name": "bad", "layers": {"relu_1": {"kernel": "quantized_bits(4,0)"}}})
    with pytest.raises(PlanError, match="relu_1.*no kernel slot.*activation"):
        build_model({"name": "jet_dnn"}, plan)
    softmax = Plan.from_dict({"name": "bad", "layers": {"softmax": {"activation": "quantized_relu(4,0)"}}})
    with pytest.raises(PlanError, match="softmax"):
        build_model({"name": "jet_dnn"}, softmax)


def test_schema_errors() -> None:
    with pytest.raises(PlanError, match="unknown key"):
        Plan.from_dict({"name": "x", "layer": {}})
    with pytest.raises(PlanError, match="unknown slot"):
        Plan.from_dict({"name": "x", "layers": {"dense_1": {"kernal": None}}})
    with pytest.raises(PlanError, match="default"):
        Plan.from_dict({"name": "x", "default": {"gamma": None}})
    with pytest.raises(PlanError, match="not a quantizer spec"):
        Plan.from_dict({"name": "x", "default": {"kernel": 6}})
    with pytest.raises(PlanError, match="does not exist"):
        load_plan("no/such/plan.yaml")


def test_bad_spec_names_the_slot() -> None:
    plan = Plan.from_dict({"name": "x", "layers": {"dense_2": {"kernel": "quantized_bitz(4,0)"}}})
    with pytest.raises(PlanError, match="layers.dense_2.kernel"):
        build_model({"name": "jet_dnn"}, plan)


def test_docs_example_plan_builds() -> None:
    """The plan shown in docs/models.md is valid for jet_dnn."""
    text = (CONF.parent / "docs" / "models.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    model = build_model({"name": "jet_dnn"}, Plan.from_yaml(block))
    assert str(model.input.activation) == "quantized_bits(8,3,alpha=1)"
    assert str(model.relu_1.activation) == "quantized_relu(3,1)"
    assert model.dense_4.bias_quantizer is None


def test_hydra_composes_quant_group_with_overrides() -> None:
    import hydra

    with hydra.initialize_config_module("hqrun.conf", version_base="1.3"):
        cfg = hydra.compose("config", overrides=[
            "quant=q4", '+quant.layers.dense_1.kernel="quantized_bits(3,0,alpha=1)"'])
    model = build_model(cfg.model, cfg.quant)
    assert str(model.dense_1.kernel_quantizer) == "quantized_bits(3,0,alpha=1)"
    assert str(model.dense_2.kernel_quantizer) == "quantized_bits(4,0,alpha=1)"


_BITS = st.integers(2, 12)


@settings(deadline=None, max_examples=20)
@given(kernel=st.dictionaries(st.sampled_from(["dense_1", "dense_2", "dense_3", "dense_4"]), _BITS),
       relu=st.dictionaries(st.sampled_from(["relu_1", "relu_2", "relu_3"]), _BITS),
       default=st.one_of(st.none(), _BITS))
def test_random_plans_round_trip_and_build(kernel, relu, default) -> None:
    layers = {n: {"kernel": f"quantized_bits({b},0,alpha=1)"} for n, b in kernel.items()}
    layers.update({n: {"activation": f"quantized_relu({b},0)"} for n, b in relu.items()})
    plan = Plan.from_dict({
        "name": "random",
        "default": {"kernel": None if default is None else f"quantized_bits({default},0,alpha=1)"},
        "layers": layers,
    })
    again = Plan.from_yaml(plan.to_yaml())
    assert again == plan
    model = build_model({"name": "jet_dnn"}, again)
    for i in range(1, 5):
        q = getattr(model, f"dense_{i}").kernel_quantizer
        bits = kernel.get(f"dense_{i}", default)
        assert (q is None) if bits is None else (q.bits == bits)
    for i in range(1, 4):
        act = getattr(model, f"relu_{i}").activation
        bits = relu.get(f"relu_{i}")
        assert isinstance(act, torch.nn.ReLU) if bits is None else act.bits == bits
