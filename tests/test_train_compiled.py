"""trainer.compile: a compiled training step gives the eager step's weights (float reassociation
tolerance), on the Q6 jet model whose quantizers round (a wrong gradient or value shows at once)."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from hqrun.models import attach_weight_constraints, build_model, load_plan
from hqrun.train.compiled import training_loss
from hqrun.train.module import make_optimizer
from test_train_runner import make_splits, quick, small_model

torch.set_num_threads(1)

JET = {"name": "jet_dnn", "n_inputs": 16, "n_classes": 5, "hidden": [64, 32, 32]}


def q6_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(OmegaConf.create(JET), load_plan("q6"))
    model.train()
    return model


def train_steps(model: torch.nn.Module, compile: bool, batches: list) -> dict[str, torch.Tensor]:
    optimizer = make_optimizer(model.parameters(), lr=3e-3)
    attach_weight_constraints(model, optimizer)
    loss_fn = training_loss(model, compile)
    for x, y in batches:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(x, y).backward()
        optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_compiled_step_matches_eager_step_on_q6() -> None:
    gen = torch.Generator().manual_seed(7)
    batches = [(torch.randn(256, 16, generator=gen) * 2, torch.randint(0, 5, (256,), generator=gen))
               for _ in range(4)]
    eager = train_steps(q6_model(3), False, batches)
    compiled = train_steps(q6_model(3), True, batches)
    initial = q6_model(3).state_dict()
    assert eager.keys() == compiled.keys()
    moved = 0.0
    for key in eager:
        torch.testing.assert_close(compiled[key], eager[key], rtol=0, atol=1e-5)
        moved = max(moved, float((eager[key] - initial[key]).abs().max()))
    assert moved > 1e-3  # the steps did train: equality is not two untouched models


def test_fit_with_compile_matches_eager_history() -> None:
    from hqrun.train.runner import fit_and_evaluate

    splits = make_splits(400)
    runs = []
    for compile in (False, True):
        torch.manual_seed(0)
        result = fit_and_evaluate(splits, quick(max_epochs=2, compile=compile, early_stopping=False),
                                  model=small_model(), seed=1, evaluate_test=False)
        runs.append(result.history)
    assert len(runs[0]) == len(runs[1]) == 2
    for a, b in zip(*runs):
        assert abs(a["val_loss"] - b["val_loss"]) < 1e-5
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-5
