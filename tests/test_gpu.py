"""Training on a GPU: learned widths and QKeras plans, step by step and through the trainer.

The fused learned chain and the C loops are CPU float32 code: on a GPU the layers must run
instead, and every constant the EBOPs count and the trainer make must live where the model
lives. Skips on machines without CUDA (a missing device is the only reason); the CPU-only test
below checks the device plumbing with torch's ``meta`` device.
"""

from __future__ import annotations

from importlib import resources

import pytest
import torch
import yaml

from hqrun.models import attach_weight_constraints, build_model, load_plan
from hqrun.models.penalty import EbopsPenalty
from hqrun.models.state import learned_state_keys
from hqrun.quantizers.ebops import model_device, slot_bits
from hqrun.train.losses import cross_entropy
from hqrun.train.module import make_optimizer, param_groups

LEARNED = yaml.safe_load((resources.files("hqrun.conf") / "quant" / "learned.yaml").read_text())
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def losses_of(plan_cfg, device: str, steps: int = 12) -> list[float]:
    torch.manual_seed(0)
    plan = load_plan(plan_cfg)
    model = build_model({"name": "jet_dnn"}, plan, seed=0).to(device)
    model.train()
    scales = dict.fromkeys(learned_state_keys(model), plan.width_lr_scale) if plan.penalty else None
    opt = make_optimizer(param_groups(model, 1e-3, scales), lr=1e-3)
    attach_weight_constraints(model, opt)
    penalty = EbopsPenalty(model, plan.penalty) if plan.penalty else None
    gen = torch.Generator().manual_seed(1)
    x_all, y_all = torch.randn(4096, 16, generator=gen), torch.randint(0, 5, (4096,), generator=gen)
    out = []
    for s in range(steps):
        i = (s * 1024) % 4096
        x, y = x_all[i:i + 1024].to(device), y_all[i:i + 1024].to(device)
        opt.zero_grad(set_to_none=True)
        loss = cross_entropy(model(x), y)
        if penalty is not None:
            loss = loss + plan.penalty.beta * penalty(model)
        loss.backward()
        opt.step()
        out.append(float(loss.detach()))
    return out


#: The search's deployable menu's scale-searching kernels and power-of-two biases: on the CPU
#: they train through the fused QKeras chain and the C loops, on a GPU layer by layer in torch.
MENU = {"name": "menu", "input": None, "default": {"activation": "quantized_relu(4,2)"},
        "layers": {"dense_1": {"kernel": "ternary", "bias": "quantized_po2(4,8)"},
                   "dense_2": {"kernel": "binary", "bias": "quantized_bits(8,3,1,alpha=1)"},
                   "dense_3": {"kernel": "quantized_po2(4,1)", "bias": "quantized_bits(4,0,1,alpha=1)"},
                   "dense_4": {"kernel": "quantized_bits(6,0,1,alpha=1)",
                               "bias": "quantized_bits(4,0,1,alpha=1)"}}}


@needs_cuda
@pytest.mark.parametrize("plan", [LEARNED, "q6", MENU], ids=["learned", "q6", "menu"])
def test_training_on_the_gpu_follows_the_cpu(plan):
    cpu, gpu = losses_of(plan, "cpu"), losses_of(plan, "cuda")
    assert max(abs(a - b) / abs(a) for a, b in zip(cpu, gpu)) < 1e-4


@needs_cuda
def test_inference_on_the_gpu_reuses_weights_only_while_they_are_unchanged():
    """The inference cache compares parameter bits where they live (here on the GPU)."""
    model = build_model({"name": "jet_dnn"}, load_plan(MENU), seed=0).to("cuda").eval()
    x = torch.randn(512, 16, device="cuda")
    with torch.no_grad():
        first, again = model(x), model(x)
        assert torch.equal(first, again)
        assert "_inference_cache" in model.dense_1.__dict__
        model.dense_1.weight.data.mul_(0.5)
        changed = model(x)
    assert not torch.equal(first, changed)
    cpu = build_model({"name": "jet_dnn"}, load_plan(MENU), seed=0).eval()
    cpu.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
    with torch.no_grad():
        assert torch.allclose(cpu(x.cpu()), changed.cpu(), rtol=1e-4, atol=1e-5)


@needs_cuda
def test_the_trainer_fits_a_learned_model_on_the_gpu():
    from jets_data import synthetic_splits

    from hqrun.train.config import TrainerConfig
    from hqrun.train.runner import fit_and_evaluate

    splits = synthetic_splits(3000, 0)
    cfg = TrainerConfig(max_epochs=2, batch_size=1024, early_stopping=False, scheduler="none",
                        progress_bar="false", checkpoint=False, csv_log=False, accelerator="gpu")
    plan = load_plan(LEARNED)
    result = fit_and_evaluate(splits, cfg, model=build_model({"name": "jet_dnn"}, plan, seed=0),
                              plan=plan, seed=0, evaluate_test=False)
    assert result.metrics["epochs_run"] == 2 and result.metrics["ebops"] > 0


def test_fixed_widths_are_made_where_the_values_and_the_model_are():
    """CPU-only check of the plumbing the GPU runs need, on torch's data-less ``meta`` device."""
    q6 = build_model({"name": "jet_dnn"}, "q6", seed=0)
    quantizer = next(m.kernel_quantizer for m in q6.children() if hasattr(m, "kernel_quantizer"))
    value = torch.ones(64, 16, device="meta")
    assert slot_bits(quantizer, (64, 16), value).device.type == "meta"
    assert slot_bits(quantizer, (64, 16), device="meta").device.type == "meta"
    assert slot_bits(quantizer, (64, 16)).device.type == "cpu"
    assert model_device(q6).type == "cpu"
    assert model_device(q6.to("meta")).type == "meta"
    assert model_device(torch.nn.Sequential()).type == "cpu"
