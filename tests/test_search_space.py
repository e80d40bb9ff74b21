"""Search space: AutoQKeras's menu and limits, regex groups, width tuning, early validation."""

from __future__ import annotations

import pytest

from hqrun.errors import SearchError
from hqrun.search.space import DEFAULT_MENU, LayerInfo, build_space
from hqrun.search.toy import ToyBackend, toy_bits

LAYERS = ToyBackend(hidden=(16, 8)).describe()   # input, dense_1, relu_1, dense_2, relu_2, dense_3


def check(spec: str) -> int | None:
    """Stand-in parser: accept QKeras names, reject anything else (as the real one does)."""
    name = spec.split("(")[0]
    if name not in {"binary", "stochastic_binary", "ternary", "stochastic_ternary",
                    "quantized_bits", "quantized_po2", "quantized_relu", "quantized_relu_po2"}:
        raise SearchError(f"unknown quantizer {name!r}")
    return toy_bits(spec)


def space(**cfg):
    return build_space(cfg, LAYERS, check_spec=check)


def test_default_menu_is_autoqkeras():
    assert DEFAULT_MENU["kernel"]["quantized_po2(4,1)"] == 4
    assert DEFAULT_MENU["activation"]["quantized_relu(16,8)"] == 16
    assert DEFAULT_MENU["bias"] == {"quantized_bits(4,0,1)": 4, "quantized_bits(8,3,1)": 8,
                                    "quantized_po2(4,8)": 4}
    assert len(DEFAULT_MENU["linear"]) == 6
    s = space()
    keys = s.keys
    # every slot of every searched layer, softmax and input excluded
    assert keys == ["dense_1__kernel", "dense_1__bias", "relu_1__activation", "dense_2__kernel",
                    "dense_2__bias", "relu_2__activation", "dense_3__kernel", "dense_3__bias"]
    assert s.choice("dense_1__kernel").options == list(DEFAULT_MENU["kernel"])
    assert s.choice("relu_1__activation").options == list(DEFAULT_MENU["activation"])


def test_input_uses_linear_menu():
    s = space(input=True)
    assert s.choice("input__activation").options == list(DEFAULT_MENU["linear"])
    cfg = {c.key: c.options[0] for c in s.choices}
    assert s.plan(cfg)["input"] == "binary"


def test_limits_class_list_and_default():
    s = space(limits={"Dense": [4, 4], "Activation": [3], "default": 8})
    assert all(DEFAULT_MENU["kernel"][o] <= 4 for o in s.choice("dense_2__kernel").options)
    assert "quantized_bits(8,0,1)" not in s.choice("dense_2__kernel").options
    assert s.choice("dense_1__bias").options == ["quantized_bits(4,0,1)", "quantized_po2(4,8)"]
    assert s.choice("relu_1__activation").options == ["binary", "binary(alpha='auto_po2')",
                                                      "ternary", "quantized_relu(3,1)"]


def test_limits_dict_and_explicit_list():
    s = space(limits={"Dense": {"kernel": ["ternary", "quantized_bits(4,0,1)"], "bias": 4}})
    assert s.choice("dense_3__kernel").options == ["ternary", "quantized_bits(4,0,1)"]
    assert s.choice("dense_3__kernel").bits == {"ternary": 2, "quantized_bits(4,0,1)": 4}
    assert len(s.choice("relu_1__activation").options) == len(DEFAULT_MENU["activation"])


def test_regex_group_shares_one_choice():
    s = space(limits={"^dense_[12]$": [4, 4], "Dense": 8})
    kernel = [c for c in s.choices if ("dense_1", "kernel") in c.targets]
    assert len(kernel) == 1 and set(kernel[0].targets) == {("dense_1", "kernel"),
                                                           ("dense_2", "kernel")}
    cfg = {c.key: c.options[-1] for c in s.choices}
    plan = s.plan(cfg)
    assert plan["layers"]["dense_1"]["kernel"] == plan["layers"]["dense_2"]["kernel"]
    assert "dense_3__kernel" in s.keys           # not in the group: its own choice


def test_layers_selects_searched_layers():
    s = space(layers=["^dense_3$", "^relu_1$"])
    assert s.keys == ["relu_1__activation", "dense_3__kernel", "dense_3__bias"]
    plan = s.plan({k: s.choice(k).options[0] for k in s.keys})
    assert set(plan["layers"]) == {"relu_1", "dense_3"}
    assert plan["default"] == {"kernel": None, "bias": None, "activation": None}


def test_width_modes():
    s = space(width={"mode": "layer"})
    assert [c.key for c in s.choices if c.key.startswith("width")] == ["width__dense_1",
                                                                        "width__dense_2"]
    b = space(width={"mode": "block", "multipliers": [0.5, 2.0]})
    w = b.choice("width")
    assert w.options == [0.5, 2.0] and {t[0] for t in w.targets} == {"dense_1", "dense_2"}
    cfg = {c.key: c.options[0] for c in b.choices}
    assert b.widths(cfg) == {"dense_1": 0.5, "dense_2": 0.5}   # output layer never resized


@pytest.mark.parametrize("cfg, culprit", [
    ({"menu": {"kernel": {"quantized_foo(4)": 4}}}, "quantized_foo(4)"),
    ({"menu": {"kernels": {"binary": 1}}}, "kernels"),
    ({"limits": {"Dense": [0]}}, "Dense"),
    ({"limits": {"Activation": [["quantized_relu(3,1)", "bogus(2)"]]}}, "bogus(2)"),
    ({"limits": {"^conv_\\d+$": 4}}, "^conv_\\d+$"),
    ({"limits": {"Dence": 4}}, "Dence"),
    ({"layers": ["^dens_1$"]}, "^dens_1$"),
    ({"limits": {"Activation": [[]]}}, "relu_1"),
    ({"width": {"mode": "wide"}}, "wide"),
])
def test_bad_spaces_fail_naming_the_entry(cfg, culprit):
    with pytest.raises(SearchError) as err:
        space(**cfg)
    assert culprit in str(err.value)


def test_unknown_quantizer_with_real_parser():
    """The default checker goes through hqrun.quantizers.get (or its name list)."""
    with pytest.raises(SearchError, match="quantized_nonsense"):
        build_space({"menu": {"kernel": {"quantized_nonsense(4,0)": 4}}}, LAYERS)


def test_empty_space_is_refused():
    with pytest.raises(SearchError, match="empty"):
        build_space({}, [LayerInfo("softmax", "Activation", ())], check_spec=check)


def test_lean_adam_matches_torch_adam():
    import torch

    from hqrun.search.trial import LeanAdam

    torch.manual_seed(0)
    a, b = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    oa, ob = torch.optim.Adam(a.parameters(), lr=0.01), LeanAdam(b.parameters(), lr=0.01)
    for _ in range(20):
        x = torch.randn(8, 5)
        for m, o in ((a, oa), (b, ob)):
            o.zero_grad()
            m(x).pow(2).sum().backward()
            o.step()
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_search_configs_compose_and_match_the_schema():
    """Every conf/search/*.yaml composes with Hydra and merges into SearchConfig exactly."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from hqrun.search.config import SearchConfig

    schema_keys = set(OmegaConf.structured(SearchConfig).keys())
    with initialize_config_module("hqrun.conf", version_base="1.3"):
        for name in ("random", "bayesian", "asha", "blocks"):
            cfg = compose("config", overrides=["command=search", f"search={name}"])
            assert set(cfg.search.keys()) == schema_keys, name
            merged = OmegaConf.merge(OmegaConf.structured(SearchConfig), cfg.search)
            assert merged.algorithm == name
            assert OmegaConf.to_container(merged.space.menu) == DEFAULT_MENU
        cfg = compose("config", overrides=["command=search", "search/space=deployable"])
        menu = OmegaConf.to_container(cfg.search.space.menu)
        assert not any("stochastic" in s or "auto_po2" in s for m in menu.values() for s in m)
