"""Load trained weights into a freshly built model, explaining what a mismatch means.

A learned-bits model keeps its trained widths in the state dict next to its weights (each learned
quantizer's ``f``, and the tracked ``range`` or the weights' ``width``/``frac`` snapshot). A state
dict without them would silently give the *initial* widths — a different model with a different
price — so :func:`load_trained_state` refuses it with one paragraph naming the missing tensors.
Used wherever a trained model is read back (``hqrun cost``, ``hqrun firmware``, notebooks).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from hqrun.errors import ConfigError, PlanError

__all__ = ["learned_state_keys", "check_learned_widths", "load_trained_state"]


def learned_state_keys(model: nn.Module) -> list[str]:
    """State-dict keys that hold learned bit widths (their quantizers' parameters and buffers)."""
    keys = []
    for name, module in model.named_modules():
        if name and callable(getattr(module, "bit_widths", None)):
            keys += [f"{name}.{k}" for k in module.state_dict()]
    return keys


def check_learned_widths(model: nn.Module, state: Mapping[str, Any], source: str) -> None:
    """Refuse ``state`` when it lacks the learned width tensors ``model``'s plan has.

    Every reader of trained weights (training from a checkpoint, ``hqrun cost``, ``hqrun
    firmware``) asks this first: such a file is not a "shape mismatch" to fix with overrides —
    the widths *are* the deployed fixed-point types, and nothing else holds them.
    """
    widths = [k for k in learned_state_keys(model) if k not in state]
    if widths:
        raise PlanError(
            f"{source} lacks the learned bit widths of this model ({', '.join(widths[:4])}"
            f"{', ...' if len(widths) > 4 else ''}: {len(widths)} tensor(s)). Its plan has "
            "learned_bits/learned_relu quantizers, whose trained widths are saved in the state "
            "dict with the weights; without them the model would have its initial widths, not the "
            "trained ones, and could be neither priced nor built. Load the model.pt or best.ckpt "
            "that `hqrun train` wrote for this run (a state dict filtered to weights only drops "
            "them), or use the plan the weights were trained with."
        )


def load_trained_state(model: nn.Module, state: Mapping[str, torch.Tensor],
                       source: str = "the checkpoint") -> nn.Module:
    """``model.load_state_dict(state)`` (strict), with a clear error for what can go wrong.

    Raises PlanError when ``state`` lacks learned width tensors the model's plan has, and
    ConfigError for any other missing or unexpected key or a shape mismatch.
    """
    own = model.state_dict()
    check_learned_widths(model, state, source)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or mismatched:
        raise ConfigError(
            f"{source} does not fit the model built from its plan (missing: {missing[:4]}, "
            f"unexpected: {unexpected[:4]}, shape mismatch: {mismatched[:4]}); pass the model "
            "config and plan it was trained with."
        )
    model.load_state_dict(state)
    return model
