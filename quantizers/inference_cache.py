"""Quantized weights reused across inference batches while the weights have not changed.

Why: a validation pass runs the model on ~16 batches with the same weights, and every batch
quantized every kernel and bias again. For the scale-searching quantizers (ternary, binary,
``alpha="auto_po2"``, power-of-two) that is 50-150 µs per tensor — for a search trial's jet model
more than the validation's matrix products. In inference (eval mode, autograd off) a layer keeps
its last quantized parameter and hands out a copy of it while the parameter's bits, the quantizer
object and its mode are the ones it was computed from.

The test is on the parameter's *bits* (a copy is kept), not on its version counter: the
trainer's optimizer writes parameters through a flat buffer (``p.data`` views), which bumps no
version counter of ``p``. Only quantizers that say so are cached (``inference_cacheable``: not
when the output is random, nor when one C loop costs less than the check); a
quantizer's per-call state (``scale``) is restored on a hit, so code reading it after a forward
sees what a fresh call would have left. Only quantizers without parameters, buffers or children
of their own are cached (learned widths change with training while the weights may not).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from .ste import same_bits

__all__ = ["inference_value"]

_NO_SCALE = object()


def inference_value(layer: nn.Module, slot: str, quantizer: Any, param: torch.Tensor,
                    compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``compute()`` — the quantized ``param`` of ``layer``'s ``slot`` — or, in inference, a copy
    of the value computed last from the same bits by the same quantizer."""
    if (quantizer is None or layer.training or quantizer.training or torch.is_grad_enabled()
            or not getattr(quantizer, "inference_cacheable", False) or param.dtype != torch.float32
            or quantizer._parameters or quantizer._buffers or quantizer._modules):
        return compute()  # (a quantizer with tensors of its own, e.g. learned widths, is not
        # a function of the parameter alone)
    cache = layer.__dict__.setdefault("_inference_cache", {})
    hit = cache.get(slot)
    if hit is not None and hit[0] is quantizer and same_bits(hit[1], param):
        if hit[3] is not _NO_SCALE and quantizer.__dict__.get("scale", _NO_SCALE) is not hit[3]:
            quantizer.scale = hit[3]
        return hit[2].clone()
    value = compute()
    cache[slot] = (quantizer, param.detach().clone(), value.detach().clone(),
                   getattr(quantizer, "scale", _NO_SCALE))
    return value
