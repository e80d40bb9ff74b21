"""QKeras's weight constraints for quantization-aware training.

QKeras gives every quantized kernel/bias (and batch-norm gamma/beta) a ``Clip`` constraint that
Keras applies after each optimizer update. Training loops that want QKeras's behaviour attach
it once, after the plan is applied: ``attach_weight_constraints(model, optimizer)``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch import nn


def _groups(model: nn.Module) -> dict[float, list[torch.Tensor]]:
    """Clip bound -> parameters, so one fused call clips all parameters sharing a bound."""
    groups: dict[float, list[torch.Tensor]] = defaultdict(list)
    for layer in model.modules():
        fn = getattr(layer, "constraints", None)
        if callable(fn) and getattr(layer, "constrained_params", None):
            for p, m in fn():
                groups[m].append(p)
    return {m: _coalesced(ps) for m, ps in groups.items()}


def _coalesced(params: list[torch.Tensor]) -> list[torch.Tensor]:
    """The same elements as fewer tensors: parameters lying back to back in one storage (the
    flat buffers of ``hqrun.train.flat_adam``) become one tensor over their span. On the CPU a
    ``foreach`` clamp is one operation per tensor, so a learned-widths model's 16 width tensors
    cost 32 operations per step where one span costs 2."""
    out: list[torch.Tensor] = []
    by_storage: dict[tuple, list[torch.Tensor]] = defaultdict(list)
    for p in params:
        if p.is_contiguous() and p.numel() > 0:
            by_storage[(p.untyped_storage().data_ptr(), p.dtype, p.device)].append(p)
        else:
            out.append(p)
    for ps in by_storage.values():
        ps.sort(key=lambda t: t.storage_offset())
        run = [ps[0]]
        for p in ps[1:] + [None]:
            last = run[-1]
            if p is not None and p.storage_offset() == last.storage_offset() + last.numel():
                run.append(p)
                continue
            if len(run) == 1:
                out.append(run[0])
            else:
                start = run[0].storage_offset()
                size = last.storage_offset() + last.numel() - start
                span = torch.empty(0, dtype=last.dtype, device=last.device)
                out.append(span.set_(last.untyped_storage(), start, (size,)))
            run = [p]
    return out


def _clip(groups: dict[float, list[torch.Tensor]]) -> None:
    with torch.no_grad():
        for m, params in groups.items():
            if len(params) == 1:  # one coalesced span (the trainer's flat buffer): one kernel
                params[0].clamp_(-m, m)
                continue
            torch._foreach_clamp_min_(params, -m)
            torch._foreach_clamp_max_(params, m)


def constrain_weights_(model: nn.Module) -> None:
    """Clip every quantized parameter of ``model`` in place (see ``QLayer.constraints``)."""
    _clip(_groups(model))


def attach_weight_constraints(model: nn.Module, optimizer: torch.optim.Optimizer) -> Any:
    """Clip after every ``optimizer.step()``; returns the hook handle (``.remove()`` detaches).

    The set of constrained parameters is read now: attach after the plan has been applied
    (a float model has none and the hook does nothing).
    """
    groups = _groups(model)

    def hook(_opt: Any, _args: Any, _kwargs: Any) -> None:
        if groups:
            _clip(groups)

    return optimizer.register_step_post_hook(hook)
