"""Conformance of hqrun.quantizers with QKeras 0.9.0, value for value and gradient for gradient.

The golden file tests/golden/qkeras_quantizers.json was made with QKeras 0.9.0 itself by
tools/qkeras_oracle/gen_quantizers.py (docs/oracle.md says how to regenerate it).  Each entry
holds a spec, an input x, QKeras's output y = q(x), a cotangent r and QKeras's gradient
d/dx sum(q(x) * r).  The call under test is exactly the documented one:
``hqrun.quantizers.get(spec)(torch.tensor(x))``.

Entries recorded in the ``kernel`` context are what QDense does to a kernel quantizer
(``alpha=None`` silently becomes ``alpha="auto_po2"``); their ``effective_spec`` is the
standalone spec with the same behaviour, and that is what is tested here.
"""

from __future__ import annotations

import functools
import json
import pathlib

import numpy as np
import pytest

import torch

import hqrun.models as hqm
import hqrun.quantizers as hq

GOLDEN = pathlib.Path(__file__).parent / "golden" / "qkeras_quantizers.json"

# Gradient tolerance for entries whose QKeras gradient goes through tanh or a real sigmoid
# (binary/ternary with alpha=None use tanh(x) as their straight-through surrogate;
# quantized_tanh(use_real_tanh=1), quantized_sigmoid(use_real_sigmoid=1)).  TensorFlow's and
# torch's float32 tanh/sigmoid may differ in the last bit, so those gradients can only agree
# to rounding.  Every other gradient is a product of exact masks and r and must match exactly.
GRAD_ATOL = 1e-6


@functools.lru_cache(maxsize=1)
def _golden() -> dict:
    return json.loads(GOLDEN.read_text())


def _entries(pred) -> list:
    return [pytest.param(e, id=e["id"]) for e in _golden()["entries"] if pred(e)]


def _arr(values, shape) -> torch.Tensor:
    return torch.from_numpy(np.asarray(values, dtype=np.float32).reshape(shape))


def _mismatch_report(x, want, got, limit=8) -> str:
    """First few differing elements, so a failure says what QKeras does differently."""
    x, want, got = (t.detach().reshape(-1).numpy() for t in (x, want, got))
    bad = np.flatnonzero(~((want == got) | (np.isnan(want) & np.isnan(got))))
    rows = [f"  x={x[i]!r:>14} qkeras={want[i]!r:>14} hqrun={got[i]!r:>14}" for i in bad[:limit]]
    return f"{len(bad)} of {want.size} differ:\n" + "\n".join(rows)


def _build(entry):
    q = hq.get(entry["effective_spec"])
    assert isinstance(q, torch.nn.Module), f"get({entry['effective_spec']!r}) is not an nn.Module"
    # Stochastic quantizers were recorded in Keras inference mode (learning phase 0), where
    # QKeras uses the deterministic binary/ternary path; nn.Module.eval() is the equivalent.
    if entry["stochastic"]:
        q.eval()
    else:
        q.train()
    return q


deterministic = _entries(lambda e: e["mode"] == "inference")


@pytest.mark.parametrize("entry", deterministic)
def test_values_match_qkeras(entry):
    q = _build(entry)
    x = _arr(entry["x"], entry["shape"])
    want = _arr(entry["y"], entry["shape"])
    with torch.no_grad():
        got = q(x.clone())
    assert got.dtype == torch.float32, f"{entry['effective_spec']} returned {got.dtype}"
    assert got.shape == want.shape
    assert torch.equal(got, want), (
        f"{entry['id']} (effective {entry['effective_spec']}) values differ from QKeras 0.9.0; "
        + _mismatch_report(x, want, got))


@pytest.mark.parametrize("entry", deterministic)
def test_gradients_match_qkeras(entry):
    q = _build(entry)
    x = _arr(entry["x"], entry["shape"]).clone().requires_grad_(True)
    r = _arr(entry["r"], entry["shape"])
    want = _arr(entry["grad"], entry["shape"])
    (q(x) * r).sum().backward()
    got = x.grad if x.grad is not None else torch.zeros_like(x)
    if entry["grad_exact"]:
        assert torch.equal(got, want), (
            f"{entry['id']} straight-through gradient differs from QKeras 0.9.0; "
            + _mismatch_report(x, want, got))
    else:
        assert torch.allclose(got, want, rtol=0.0, atol=GRAD_ATOL), (
            f"{entry['id']} gradient differs from QKeras 0.9.0 by more than {GRAD_ATOL}; "
            + _mismatch_report(x, want, got))


@pytest.mark.parametrize("entry", _entries(lambda e: e.get("train_support")))
def test_stochastic_training_support(entry):
    """Training-mode outputs of stochastic quantizers lie on QKeras's per-column levels."""
    q = hq.get(entry["effective_spec"])
    q.train()
    torch.manual_seed(0)
    x = _arr(entry["x"], entry["shape"])
    with torch.no_grad():
        got = q(x).numpy()
    sup = entry["train_support"]
    scale = np.asarray(sup["column_scale"], dtype=np.float32)
    allowed = scale[None, :, None] * np.asarray(sup["levels"], dtype=np.float32)[None, None, :]
    ok = np.any(got[:, :, None] == allowed, axis=2)
    assert ok.all(), (
        f"{entry['id']}: {int((~ok).sum())} training-mode outputs are not scale*level; "
        f"first bad column scale {scale[np.argwhere(~ok)[0][1]]}, levels {sup['levels']}")


@pytest.mark.parametrize("entry", _entries(lambda e: e["group"] == "default_space"))
def test_default_space_spec_parses_and_reports_bits(entry):
    """Every AutoQKeras default-menu spec parses as written and costs the menu's bits."""
    q = hq.get(entry["spec"])
    assert isinstance(q, torch.nn.Module)
    assert int(q.bits) == entry["bits"], f"{entry['spec']}: bits {q.bits} != QKeras {entry['bits']}"


def test_golden_file_covers_the_default_menus():
    """Guard against a regenerated golden file that silently lost part of the search space."""
    g = _golden()
    specs = {e["spec"] for e in g["entries"] if e["group"] == "default_space"}
    for kind, menu in g["default_quantization_config"].items():
        missing = set(menu) - specs
        assert not missing, f"golden file lacks default {kind} specs {sorted(missing)}"


# ----------------------------------------------------------------------------------------
# Whole jet model, layer by layer (tests/golden/qkeras_jet_forward.json, gen_layers.py).
# This is where the layer-level quirks live: QDense turns alpha-less kernel quantizers into
# alpha="auto_po2", takes per-output-channel scales on the Keras (in, out) kernel layout and
# quantizes the bias on its own.  Inputs and weights are on short dyadic grids, so every
# value is exact in float32 whatever the summation order; only softmax is compared loosely.
# ----------------------------------------------------------------------------------------
JET = GOLDEN.parent / "qkeras_jet_forward.json"


@functools.lru_cache(maxsize=1)
def _jet() -> dict:
    return json.loads(JET.read_text())


def _jet_model(case: dict):
    """Adapter: hqrun's jet model with the QKeras weights loaded (nn.Linear layout)."""
    model = hqm.build_model({"name": "jet_dnn"}, {"name": "oracle", "layers": case["plan"]}, seed=0)
    with torch.no_grad():
        for name, w in case["weights"].items():
            layer = getattr(model, name)
            kernel = _arr(w["kernel_keras_layout"], w["kernel_shape"])
            layer.weight.copy_(kernel.t())
            layer.bias.copy_(torch.tensor(np.asarray(w["bias"], dtype=np.float32)))
    model.eval()  # QKeras was run in inference mode (stochastic kernels take their eval path)
    return model


@pytest.mark.parametrize("case_name", ["q6", "hetero", "menu"])
def test_jet_model_matches_qkeras_layer_by_layer(case_name):
    g = _jet()
    case = g["cases"][case_name]
    model = _jet_model(case)
    x = _arr(g["x"], g["x_shape"]).clone().requires_grad_(True)
    outs, h = {}, x
    for name, module in model.named_children():
        h = module(h)
        outs[name] = h
    bad = []
    for name, row in case["layers"].items():
        want = _arr(row["output"], row["shape"])
        got = outs[name].detach()
        ok = (torch.allclose(got, want, rtol=0, atol=1e-6) if name == "softmax"
              else torch.equal(got, want))
        if not ok:
            bad.append(f"{name}: " + _mismatch_report(want, want, got, limit=3))
    assert not bad, f"{case_name}: layer outputs differ from QKeras 0.9.0:\n" + "\n".join(bad)

    r = _arr(g["r"], g["r_shape"])
    (outs["dense_4"] * r).sum().backward()
    gbad = []
    if not torch.equal(x.grad, _arr(case["grad_x"], g["x_shape"])):
        gbad.append("input: " + _mismatch_report(x, _arr(case["grad_x"], g["x_shape"]), x.grad, 3))
    for name, w in case["weights"].items():
        layer = getattr(model, name)
        want_k = _arr(w["grad_kernel"], w["kernel_shape"])
        if layer.weight.grad is None or not torch.equal(layer.weight.grad.t(), want_k):
            gbad.append(f"{name}.kernel grad differs")
        want_b = torch.tensor(np.asarray(w["grad_bias"], dtype=np.float32))
        if layer.bias.grad is None or not torch.equal(layer.bias.grad, want_b):
            gbad.append(f"{name}.bias grad differs")
    assert not gbad, f"{case_name}: gradients differ from QKeras 0.9.0: " + "; ".join(gbad)
