"""Create the shape-dependent parameters of quantizers (learned bit widths) right after a build.

A learned-width quantizer's parameters have the shape of the tensor it quantizes, which only a
forward pass reveals. Creating them lazily during training would hide them from the optimizer
and from ``load_state_dict``, so every model is run once on ``zeros(1, *input_shape)`` as soon as
its plan is applied: in eval mode and without gradient, so no batch-norm statistic, activation
range or step counter moves, and the result is the same for every build of the same model.
"""

from __future__ import annotations

import torch
from torch import nn

from hqrun.errors import PlanError
from hqrun.quantizers.ebops import model_device


def needs_materialization(model: nn.Module) -> bool:
    """True when some module still waits for its first call to create its parameters."""
    return any(getattr(m, "materialized", True) is False for m in model.modules())


def materialize(model: nn.Module) -> nn.Module:
    """Dry-run ``model`` once (eval mode, no gradient, modes restored) if it needs it."""
    if not needs_materialization(model):
        return model
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise PlanError(
            f"the model ({type(model).__name__}) has learned-width quantizers whose parameters "
            "take the shape of their tensors, but it does not declare `input_shape`, so they "
            "cannot be created before training. Build it with hqrun.models.build_model, or set "
            "model.input_shape = (features,) before applying the plan."
        )
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *shape), device=model_device(model)))
    finally:
        for m, mode in modes.items():
            m.training = mode
    return model
