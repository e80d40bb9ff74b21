"""Where a fused training chain starts and ends in a model, and whether it still holds.

Why shared: two fused training nodes exist — learned widths (``learned_chain``) and QKeras's
quantizers (``qkeras_chain``). Both replace a model's *leading* children up to its last dense
layer by one autograd node, run past layers that pass data on unchanged (a float input layer),
stop at the first layer they cannot run, and must notice on every step when a quantizer has been
swapped out (``set_quantizer``, another plan) so that the model then trains layer by layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

__all__ = ["IDENTITY", "Leading", "dense_chain_stage", "leading_stages", "slots_intact",
           "training_chain_for"]

#: What a stage function answers for a layer that is the identity (the chain runs past it).
IDENTITY = object()

#: ``(slots, name, quantizer)``: a chain holds while ``slots.get(name) is quantizer``.
Check = tuple[dict, str, Any]


@dataclass(frozen=True)
class Leading:
    """The stages of a model's leading chain, ending at its last dense stage."""

    stages: list[Any]
    #: Number of the model's leading children the chain replaces.
    length: int
    #: The children after the chain.
    rest: list[nn.Module]
    #: The quantizer slots of the layer the walk stopped at: when one of them changes, a longer
    #: chain may now qualify, so the chain holding them must be looked for again.
    watch: list[Check]


def leading_stages(model: nn.Module, stage_of: Callable[[nn.Module], Any],
                   is_dense: Callable[[Any], bool]) -> Leading | None:
    """Stages of ``model``'s leading children (``stage_of`` answers a stage, :data:`IDENTITY`
    or None to stop), cut after the last dense stage; None when there is no dense stage."""
    children = list(model.children())
    stages: list[Any] = []
    length = last_dense = 0
    watch: list[Check] = []
    for k, layer in enumerate(children):
        st = stage_of(layer)
        if st is None:
            watch = [(layer._modules, name, m) for name, m in layer._modules.items()]
            break
        if st is IDENTITY:
            continue
        stages.append(st)
        if is_dense(st):
            length, last_dense = k + 1, len(stages)
    if not last_dense:
        return None
    return Leading(stages[:last_dense], length, children[length:], watch)


def dense_chain_stage(layer: nn.Module, act_ok: Callable[[Any], bool],
                      weight_ok: Callable[[Any], bool], make_act: Callable[..., Any],
                      make_dense: Callable[..., Any]) -> Any:
    """One layer's stage in a dense chain: :data:`IDENTITY` for a float input layer,
    ``make_act(layer, q)`` for a ``QInput``/``QActivation`` whose quantizer passes ``act_ok``,
    ``make_dense(layer, kq, bq, act)`` for a ``QDense`` whose kernel (and bias) quantizers pass
    ``weight_ok`` and whose fused activation is absent or passes ``act_ok``; else None. The two
    fused chains differ only in these predicates and stage classes."""
    from .layers_core import QActivation, QInput
    from .layers_dense import QDense

    if isinstance(layer, (QInput, QActivation)):
        q = layer._modules.get("activation")
        if q is None and getattr(layer, "activation", None) is None:
            return IDENTITY  # a float input layer: passes the data on unchanged
        return make_act(layer, q) if act_ok(q) else None
    if isinstance(layer, QDense):
        m = layer._modules
        kq, bq, act = m.get("kernel_quantizer"), m.get("bias_quantizer"), m.get("activation")
        if not weight_ok(kq) or (bq is not None and not weight_ok(bq)):
            return None
        if act is not None and not act_ok(act):
            return None
        return make_dense(layer, kq, bq if layer.bias is not None else None, act)
    return None


def slots_intact(checks: list[Check]) -> bool:
    """True while every slot still holds the quantizer the chain was built on (a flat list of
    identity tests: it runs on every training step)."""
    return all(slots.get(name) is q for slots, name, q in checks)


def training_chain_for(model: nn.Module) -> Any:
    """The fused training chain of ``model`` (learned widths first, then QKeras quantizers), or
    None when its leading layers qualify for neither."""
    from .learned_chain import chain_for as learned_chain_for
    from .qkeras_chain import chain_for as qkeras_chain_for

    return learned_chain_for(model) or qkeras_chain_for(model)
