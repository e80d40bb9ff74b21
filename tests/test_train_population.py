"""Population training: each member trained in a population equals the member trained alone."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from hqrun.models import build_model, load_plan
from hqrun.train.population import PopulationError, PopulationModel, apply_slot, stack_slot
from hqrun.train.population_runner import fit_population
from hqrun.train.runner import fit_and_evaluate
from test_train_runner import make_splits, quick

torch.set_num_threads(1)

JET = {"name": "jet_dnn", "n_inputs": 16, "n_classes": 5, "hidden": [64, 32, 32]}


def plan(name: str, kernel: str | None, bias: str | None, activation: str | None, layers=None) -> dict:
    return {"name": name, "input": None, "default": {"kernel": kernel, "bias": bias, "activation": activation},
            "layers": layers or {}}


PLANS = [
    plan("q6", "quantized_bits(6,0,alpha=1)", "quantized_bits(6,0,alpha=1)", "quantized_relu(6,0)"),
    plan("mixed", "quantized_bits(4,0,alpha=1)", "quantized_bits(8,3,alpha=1)", "quantized_relu(3,1)",
         layers={"relu_2": {"activation": None}, "dense_3": {"kernel": "quantized_bits(3,1,alpha=1)"}}),
    plan("wide", "quantized_bits(10,2,alpha=1)", None, "quantized_relu(8,2)"),
]


def member(p: dict, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(OmegaConf.create(JET), load_plan(p))


def test_slot_matches_the_quantizers_own_forward_and_gradient() -> None:
    from hqrun.quantizers.bits import quantized_bits
    from hqrun.quantizers.relu import quantized_relu

    qs = [quantized_relu(6, 0), quantized_bits(4, 1, alpha=1), quantized_relu(3, 2), None]
    slot = stack_slot(qs, "test", 2)
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(len(qs), 50, 7, generator=gen) * 3)
    x[:, 0, 0] = 0.0  # the ReLU gradient's edge
    x[0, 0, 1] = 63 / 64  # quantized_relu(6,0)'s top code: inside the gradient window
    x.requires_grad_(True)
    grad = torch.randn(x.shape, generator=gen)
    apply_slot(x, slot, training=True).backward(grad)
    for k, q in enumerate(qs):
        xs = x.detach()[k].clone().requires_grad_(True)
        if q is None:
            ys = xs * 1.0
        else:
            q.train()
            ys = q(xs)
        ys.backward(grad[k])
        assert torch.equal(apply_slot(x.detach(), slot, training=True)[k], ys.detach()), k
        assert torch.equal(x.grad[k], xs.grad), k
        if q is not None:
            q.eval()
            assert torch.equal(apply_slot(x.detach(), slot, training=False)[k], q(x.detach()[k])), k


def noisy_splits(noise: float):
    """The runner tests' synthetic splits with extra feature noise: a plateau to stop on."""
    splits = make_splits(600)
    rng = np.random.default_rng(1)
    for name in ("X_train", "X_val"):
        x = getattr(splits, name)
        setattr(splits, name, (x + rng.normal(size=x.shape) * noise).astype(np.float32))
    return splits


@pytest.mark.parametrize("scheduler,early_stopping,noise,lr", [("none", False, 0.0, 1e-2),
                                                               ("plateau", True, 2.0, 3e-2)])
def test_member_in_population_equals_member_trained_alone(scheduler: str, early_stopping: bool,
                                                           noise: float, lr: float) -> None:
    splits = noisy_splits(noise)
    cfg = quick(max_epochs=6, batch_size=64, scheduler=scheduler, early_stopping=early_stopping, patience=2,
                plateau_patience=0, lr=lr)
    members = [member(p, 10 + i) for i, p in enumerate(PLANS)]
    solos = [copy.deepcopy(m) for m in members]
    together = fit_population(splits, cfg, members, seed=3)
    assert len(together) == len(PLANS)
    for solo_model, pop in zip(solos, together):
        alone = fit_and_evaluate(splits, cfg, model=solo_model, seed=3, evaluate_test=False)
        assert len(alone.history) == len(pop.history)
        for a, b in zip(alone.history, pop.history):
            assert a["epoch"] == b["epoch"]
            assert a["lr"] == pytest.approx(b["lr"])
            for key in ("train_loss", "val_loss", "val_acc"):
                assert a[key] == pytest.approx(b[key], abs=2e-4), (key, a, b)
        assert alone.metrics["best_epoch"] == pop.metrics["best_epoch"]
        for pa, pb in zip(alone.model.parameters(), pop.model.parameters()):
            torch.testing.assert_close(pb, pa, rtol=0, atol=2e-4)
    moved = max(float((p.detach() - q.detach()).abs().max()) for p, q in zip(together[0].model.parameters(),
                                                           member(PLANS[0], 10).parameters()))
    assert moved > 1e-3
    if early_stopping:  # the case exercises per-member stopping and learning-rate schedules
        assert min(len(r.history) for r in together) < cfg.max_epochs
        assert len({len(r.history) for r in together}) > 1
        assert any(r.history[-1]["lr"] < lr for r in together)


def test_population_refuses_members_of_different_shapes() -> None:
    other = build_model(OmegaConf.create(dict(JET, hidden=[32, 32, 32])), load_plan(PLANS[0]))
    with pytest.raises(PopulationError, match="dense_1"):
        PopulationModel([member(PLANS[0], 0), other])


def test_population_refuses_auto_alpha() -> None:
    auto = plan("auto", "quantized_bits(6,0,alpha='auto_po2')", None, "quantized_relu(6,0)")
    with pytest.raises(PopulationError, match="population=1"):
        PopulationModel([member(PLANS[0], 0), member(auto, 0)])
