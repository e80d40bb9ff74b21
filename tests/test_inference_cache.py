"""Quantized weights reused across inference batches (quantizers/inference_cache.py).

A reused value must be exactly what a fresh quantization would give: after optimizer steps that
write parameters through the trainer's flat buffer (no version-counter bump), after a quantizer is
swapped, for quantizers with trainable state of their own (never reused), with the per-call
``scale`` restored.
"""

from __future__ import annotations

import copy

import torch

from hqrun.models import attach_weight_constraints, build_model, load_plan
from hqrun.train.losses import cross_entropy
from hqrun.train.module import make_optimizer

MENU_PLAN = {"name": "t", "input": None, "layers": {},
             "default": {"kernel": "ternary", "bias": "quantized_po2(4,8)",
                         "activation": "quantized_relu(4,2)"}}


def fresh_eval(model, x):
    """The model's inference output with every cache dropped (a deep copy computes afresh)."""
    twin = copy.deepcopy(model)
    for m in twin.modules():
        m.__dict__.pop("_inference_cache", None)
    twin.eval()
    with torch.no_grad():
        return twin(x)


def test_inference_after_flat_buffer_optimizer_steps_sees_the_new_weights():
    model = build_model({"name": "jet_dnn"}, load_plan(MENU_PLAN), seed=0)
    opt = make_optimizer(model.parameters(), 5e-2)  # FlatAdam: writes through p.data views
    attach_weight_constraints(model, opt)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(256, 16, generator=gen), torch.randint(0, 5, (256,), generator=gen)
    for _ in range(4):
        model.eval()
        with torch.no_grad():
            first = model(x)
            again = model(x)  # from the cache
        assert torch.equal(first, again)
        assert torch.equal(first, fresh_eval(model, x))
        assert "_inference_cache" in model.dense_1.__dict__
        model.train()
        opt.zero_grad(set_to_none=True)
        cross_entropy(model(x), y).backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            after = model(x)
        assert not torch.equal(after, first)  # the steps moved the weights
        assert torch.equal(after, fresh_eval(model, x))


def test_a_swapped_quantizer_and_in_place_edits_are_seen():
    model = build_model({"name": "jet_dnn"}, "q6", seed=0).eval()
    x = torch.randn(64, 16)
    with torch.no_grad():
        before = model(x)
        model.dense_1.set_quantizer("kernel", "quantized_bits(2,0,alpha=1)")
        swapped = model(x)
        assert not torch.equal(before, swapped)
        assert torch.equal(swapped, fresh_eval(model, x))
        model.dense_2.weight.data.mul_(0.5)  # no version bump through .data
        halved = model(x)
        assert torch.equal(halved, fresh_eval(model, x)) and not torch.equal(halved, swapped)


def test_the_per_call_scale_is_restored_on_reuse():
    model = build_model({"name": "jet_dnn"}, load_plan(MENU_PLAN), seed=0).eval()
    q = model.dense_1.kernel_quantizer
    x = torch.randn(32, 16)
    with torch.no_grad():
        model(x)
        scale = q.scale.clone()
        q.scale = torch.zeros_like(scale)
        model(x)  # reused
    assert torch.equal(q.scale, scale)


def test_learned_widths_and_training_mode_are_never_reused():
    import yaml
    from importlib import resources

    learned = yaml.safe_load((resources.files("hqrun.conf") / "quant" / "learned.yaml").read_text())
    model = build_model({"name": "jet_dnn"}, load_plan(learned), seed=0).eval()
    with torch.no_grad():
        model(torch.randn(8, 16))
    assert "kernel" not in model.dense_1.__dict__.get("_inference_cache", {})
    q6 = build_model({"name": "jet_dnn"}, "q6", seed=0).train()
    with torch.no_grad():
        q6(torch.randn(8, 16))
    assert "_inference_cache" not in q6.dense_1.__dict__
