"""QKeras's weight constraints for quantization-aware training.

QKeras gives every quantized kernel/bias (and batch-norm gamma/beta) a ``Clip`` constraint that
Keras applies after each optimizer update. Training loops that want QKeras's behaviour attach
it once: ``attach_weight_constraints(model, optimizer)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def constrain_weights_(model: nn.Module) -> None:
    """Clip every quantized parameter of ``model`` in place (see ``QLayer.constrain_``)."""
    for layer in model.modules():
        fn = getattr(layer, "constrain_", None)
        if callable(fn):
            fn()


def attach_weight_constraints(model: nn.Module, optimizer: torch.optim.Optimizer) -> Any:
    """Run :func:`constrain_weights_` after every ``optimizer.step()``; returns the hook handle.

    Only layers with a quantized slot do any work, so a float model pays a loop over its layers.
    """
    layers = [m for m in model.modules() if callable(getattr(m, "constrain_", None))
              and getattr(m, "constrained_params", None)]

    def hook(_opt: Any, _args: Any, _kwargs: Any) -> None:
        for layer in layers:
            layer.constrain_()

    return optimizer.register_step_post_hook(hook)
