"""Numeric kernels of the learned-width quantizers: exact widths, rounding, the surrogate gradient.

Kept apart from the module classes (``learned_base``) so the arithmetic can be tested on its own
(tests/test_learned_ops.py) and so the hot path is a handful of fused tensor ops inside one
autograd node per call, not a chain of Python-level autograd nodes.

Conventions are ``ap_fixed``'s (as :class:`~hqrun.quantizers.grid.FixedPointGrid`): a value with
``f`` fractional bits is ``n * 2**-f`` with an integer code ``n``; ``width`` counts every bit,
the sign bit included; a width of 0 means the value is always 0.

The gradient of the fractional bits (HGQ, Sun et al. 2024): with ``xq = round(x * 2**f) * 2**-f``
the quantization error is ``delta = xq - x``. Rounding to a step ``2**-f`` leaves an error that is
(for inputs spread over many steps) uniform in ``[-2**-f / 2, 2**-f / 2]``, i.e. proportional to
the step, so its expected response to ``f`` is ``d delta / d f = ln(2) * d(2**-f)/d f / 2**-f *
delta = -ln(2) * delta``. The loss therefore sees ``dL/df = -ln 2 * sum(dL/dxq * delta)`` over
the elements sharing ``f``; ``f`` itself is rounded with a straight-through estimator. The
exact derivative of ``round`` (zero almost everywhere) would never move ``f``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .native import kernels, kernels_for

__all__ = [
    "F_LIMIT",
    "F_MIN",
    "F_MAX",
    "LN2",
    "bit_length",
    "code_width",
    "range_width",
    "effective_frac",
    "WeightRound",
    "DataRound",
    "SaturatingRound",
]

#: Bounds of the (rounded) fractional bits (HGQ2's ``MinMax(-24, 24)``). The training loops
#: clip the parameter to them after every optimizer step (``LearnedFixedPoint.constraints``).
F_LIMIT = 24
F_MIN, F_MAX = -F_LIMIT, F_LIMIT
LN2 = math.log(2.0)
_HALF = {t: torch.tensor(0.5, dtype=t) for t in (torch.float32, torch.float64)}  # 2n + 1/2 in one op


def bit_length(n: torch.Tensor) -> torch.Tensor:
    """``int.bit_length`` of non-negative integer-valued floats, exactly.

    ``frexp`` writes ``y = m * 2**e`` with ``0.5 <= m < 1``, so for ``y = n + 0.5`` (which lies
    strictly between ``n`` and the next power of two above it) ``e`` is the bit length of ``n``;
    ``n = 0`` gives ``frexp(0.5) = (0.5, 0)``. Exact while ``n + 0.5`` is representable (codes
    below 2**22 in float32, 2**51 in float64); no ``log2`` rounding can creep in.
    """
    return torch.frexp(n + 0.5).exponent.to(n.dtype)


def code_width(n: torch.Tensor) -> torch.Tensor:
    """Smallest two's-complement width holding each integer code ``n`` (0 for ``n == 0``).

    ``n > 0`` needs ``bit_length(n) + 1 = bit_length(2n)`` bits and ``n < 0`` needs
    ``bit_length(-n - 1) + 1 = bit_length(-2n - 1)`` (so ``-1`` fits one bit, ``-2`` two); both
    are ``bit_length(|2n + 1/2| - 1/2)``, i.e. the ``frexp`` exponent of ``|2n + 1/2|`` (see
    :func:`bit_length`), and ``n = 0`` gives 0: a weight quantized to 0 is pruned. Four tensor
    ops, float arithmetic only (boolean tensors are several times slower per element on CPU).
    Exact for codes below 2**21 in float32 (2**50 in float64).
    """
    half = _HALF[n.dtype] if n.dtype in _HALF else torch.tensor(0.5, dtype=n.dtype)
    return torch.frexp(torch.add(half, n, alpha=2.0).abs_()).exponent.to(n.dtype)


def range_width(top_code: torch.Tensor, signed: bool) -> torch.Tensor:
    """Width holding every code in ``[-top, top]`` (signed) or ``[0, top]`` (unsigned).

    ``top_code`` is the rounded code of the tracked range (``>= 0``); 0 gives width 0 (a silent
    element); a signed element needs one bit more than the magnitude: ``bit_length(2 * top)``.
    """
    return bit_length(top_code * 2.0 if signed else top_code)


def effective_frac(f: torch.Tensor) -> torch.Tensor:
    """The fractional bits actually used: the parameter rounded (half to even) and clipped."""
    return torch.round(f.detach()).clamp_(F_MIN, F_MAX)


def _reduce_to(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    return t if t.shape == shape else t.sum_to_size(shape)


def _per_element(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """A per-group tensor broadcast to ``shape`` and laid out contiguously (for the C loops)."""
    return t if tuple(t.shape) == shape and t.is_contiguous() else t.expand(shape).contiguous()


class WeightRound(torch.autograd.Function):
    """Weights: ``wq = round(w * 2**f) * 2**-f`` and each element's width, in one autograd node.

    Returns ``(wq, width)``: ``width`` is the two's-complement width of each code (0: pruned).
    Backward: ``dw = dwq`` (straight through; weights never saturate) and HGQ's
    ``df = -ln2 * sum(dwq * (wq - w)) + sum(dwidth * [width > 0])`` (a live weight's width is
    ``f`` plus its integer bits, so its derivative in ``f`` is 1), summed over the elements
    sharing an ``f``. ``f`` is rounded with a straight-through estimator.
    """

    @staticmethod
    def forward(ctx: Any, w: torch.Tensor, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        lib = kernels_for(w)
        if lib is not None:  # one fused loop, same values (quantizer_kernels.c)
            w = w.contiguous()
            f_e = _per_element(f.detach(), tuple(w.shape))  # held: the C loop reads its memory
            wq, width, delta, live = (torch.empty_like(w) for _ in range(4))
            lib.hq_weight_round_fwd(w.data_ptr(), f_e.data_ptr(), wq.data_ptr(), width.data_ptr(),
                                    delta.data_ptr(), live.data_ptr(), w.numel())
            ctx.save_for_backward(delta, live, f)
            return wq, width
        frac = torch.round(f).clamp_(F_MIN, F_MAX)
        scale = torch.exp2(frac)
        codes = torch.mul(w, scale).round_()
        width = code_width(codes)
        wq = codes.div_(scale)  # exact: a power of two
        ctx.save_for_backward(wq - w, width.clamp_max(1.0), f)
        return wq, width

    @staticmethod
    def backward(ctx: Any, grad_wq: torch.Tensor, grad_width: torch.Tensor) -> tuple:  # type: ignore[override]
        delta, live, f = ctx.saved_tensors
        if grad_width is None:
            grad_f = grad_wq * delta * -LN2
        else:
            grad_f = torch.addcmul(grad_width * live, grad_wq, delta, value=-LN2)
        return grad_wq, _reduce_to(grad_f, f.shape)


class DataRound(torch.autograd.Function):
    """Activations in training: track the range, then ``xq = round(x * 2**f) * 2**-f`` (ReLU
    first with ``relu``).

    ``top`` (the tracked range, a buffer with ``f``'s shape) is raised in place to this batch's
    maximum over ``dims`` (after shrinking by ``decay``), so nothing saturates. Returns
    ``(xq, width)`` with ``width`` per element of ``f`` (the bits holding the range). Backward:
    ``dx = dxq`` (ReLU's gradient with ``relu``) and HGQ's ``df`` as in :class:`WeightRound`;
    where ReLU cut the input, ``dx`` is 0 and so is the weight of its error.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, f: torch.Tensor, top: torch.Tensor, dims: tuple,
                decay: float, signed: bool, relu: bool) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        if relu:  # top >= 0 always, so max(top, max(x)) is already the ReLU's range
            batch_top = torch.amax(x, dim=dims)
        else:
            batch_top = torch.amax(x.abs(), dim=dims)
        if decay:
            top.mul_(1.0 - decay)
        torch.maximum(top, batch_top.view(top.shape), out=top)
        frac = torch.round(f).clamp_(F_MIN, F_MAX)
        scale = torch.exp2(frac)
        width = range_width(torch.mul(top, scale).round_(), signed)
        xq = torch.mul(x, scale).round_()
        if relu:
            xq.clamp_min_(0.0)
        xq.div_(scale)  # exact: a power of two
        ctx.relu = relu
        ctx.save_for_backward(xq - x, width.clamp_max(1.0), f, x if relu else None)
        return xq, width

    @staticmethod
    def backward(ctx: Any, grad_xq: torch.Tensor, grad_width: torch.Tensor) -> tuple:  # type: ignore[override]
        delta, live, f, x = ctx.saved_tensors
        # ReLU's own backward kernel: grad where x > 0, else 0
        grad_x = torch.ops.aten.threshold_backward(grad_xq, x, 0.0) if ctx.relu else grad_xq
        if grad_x.dim() == 2 and f.shape == grad_x.shape[1:]:
            grad_f = torch.linalg.vecdot(grad_x, delta, dim=0)  # one pass, no temporary
        else:
            grad_f = (grad_x * delta).sum_to_size(f.shape)
        grad_f = grad_f.mul_(-LN2)
        if grad_width is not None:
            grad_f = grad_f.addcmul_(grad_width, live)
        return grad_x, grad_f, None, None, None, None, None



class SaturatingRound(torch.autograd.Function):
    """Activations with trainable integer bits ``i`` (and ``f``), in training:
    ``xq = round(clip(x, lo, hi) * 2**f) * 2**-f`` with ``hi = 2**(I-1) - 2**-f``, ``lo = -2**(I-1)``
    (``lo = 0``, ``hi = 2**I - 2**-f`` after ReLU, which the clip at 0 then is), ``I = round(i)``;
    an element with ``I + f <= 0`` is always 0.

    Returns ``(xq, width)``, ``width = max(I + f, 0)`` per element of ``f``. Backward:
    ``dx = dxq`` inside ``(lo, hi)``, 0 outside (clipped straight through); the clip bound's
    derivative carries the saturation error to ``i``:
    ``di = ln2 * 2**(I-1) * (sum over x > hi of dxq - sum over x < lo of dxq) + dwidth * live``
    (``2**I`` unsigned); ``df = -ln2 * sum(dx * (xq - clip(x))) + dwidth * live`` (HGQ's).
    Float arithmetic only: the masks come from ReLU's own backward kernel (``threshold_backward``).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, f: torch.Tensor, i: torch.Tensor,
                signed: bool) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        ctx.signed = signed
        lib = kernels_for(x) if x.dim() >= 1 else None
        if lib is not None:  # one fused loop, same values (quantizer_kernels.c)
            return SaturatingRound._native_forward(ctx, lib, x, f, i)
        ctx.native = None
        frac = torch.round(f).clamp_(F_MIN, F_MAX)
        integer = torch.round(i).clamp_(F_MIN, F_MAX)
        width = (integer + frac).clamp_min_(0.0)
        live = width.clamp_max(1.0)
        bound = torch.exp2(integer - 1.0 if signed else integer)  # 2**(I-1), or 2**I unsigned
        scale = torch.exp2(frac)
        hi = (bound - 1.0 / scale).mul_(live)  # an empty element (width 0) is clipped to 0
        lo = -(bound * live) if signed else torch.zeros_like(hi)
        xc = torch.clamp(x, lo, hi)
        xq = torch.mul(xc, scale).round_().div_(scale)  # exact: a power of two
        ctx.save_for_backward(x, xq - xc, lo, hi, bound, live, f, i)
        return xq, width

    @staticmethod
    def backward(ctx: Any, grad_xq: torch.Tensor, grad_width: torch.Tensor) -> tuple:  # type: ignore[override]
        if ctx.native is not None:
            return SaturatingRound._native_backward(ctx, grad_xq, grad_width)
        x, delta, lo, hi, bound, live, f, i = ctx.saved_tensors
        above_lo = torch.ops.aten.threshold_backward(grad_xq, x - lo, 0.0)  # g where x > lo
        grad_x = torch.ops.aten.threshold_backward(above_lo, hi - x, 0.0)  # ... and x < hi
        batch = 0  # per-sample sums over the batch axis
        total_above_lo = above_lo.sum(batch)
        saturated = total_above_lo - grad_x.sum(batch)  # sum of g over x >= hi
        if ctx.signed:  # the lower bound -2**(I-1) moves with I too
            saturated = saturated - (grad_xq.sum(batch) - total_above_lo)
        # d hi / d I = ln2 * 2**(I-1) (2**I unsigned), also for an empty element: it can revive
        grad_i = saturated.sum_to_size(i.shape).mul_(bound).mul_(LN2)
        if grad_x.dim() == 2 and f.shape == grad_x.shape[1:]:
            grad_f = torch.linalg.vecdot(grad_x, delta, dim=0)
        else:
            grad_f = (grad_x * delta).sum_to_size(f.shape)
        grad_f = grad_f.mul_(-LN2)
        if grad_width is not None:
            grad_f = grad_f.addcmul_(grad_width, live)
            grad_i = grad_i.addcmul_(grad_width, live)
        return grad_x, grad_f, grad_i, None

    @staticmethod
    def _native_forward(ctx: Any, lib: Any, x: torch.Tensor, f: torch.Tensor,
                        i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The forward above in one C loop (bounds, scale and widths computed there too)."""
        x = x.contiguous()
        shape = tuple(x.shape[1:])
        f_e, i_e = _per_element(f.detach(), shape), _per_element(i.detach(), shape)
        xq = torch.empty_like(x)
        width_e = torch.empty(shape, dtype=x.dtype)
        rows, n = x.shape[0], math.prod(shape)
        if lib.hq_sat_round_fwd(x.data_ptr(), xq.data_ptr(), f_e.data_ptr(), i_e.data_ptr(),
                                int(ctx.signed), width_e.data_ptr(), rows, n):
            raise MemoryError("SaturatingRound: the C loop could not allocate its constants")
        if f.shape == shape and i.shape == shape:
            width = width_e
        else:  # one width per group of elements (layer, channel): the same numbers, f's shape
            width = (torch.round(i.detach()).clamp_(F_MIN, F_MAX)
                     + torch.round(f.detach()).clamp_(F_MIN, F_MAX)).clamp_min_(0.0)
        ctx.native = (f_e, i_e)
        ctx.save_for_backward(x, width, f, i)
        return xq, width

    @staticmethod
    def _native_backward(ctx: Any, grad_xq: torch.Tensor, grad_width: torch.Tensor | None) -> tuple:
        """The backward above in one C loop: the same masks and sums (summed in another order)."""
        x, width, f, i = ctx.saved_tensors
        f_e, i_e = ctx.native
        g = grad_xq.contiguous()
        shape = tuple(x.shape[1:])
        per_element = f.shape == shape and i.shape == shape
        gw = None  # the width gradient goes into the C loop when widths are per element
        if grad_width is not None and per_element:
            gw = grad_width.contiguous()
        grad_x = torch.empty_like(x)
        sums = torch.empty((2,) + shape, dtype=x.dtype)
        grad_f, grad_i = sums[0], sums[1]
        if kernels().hq_sat_round_bwd(g.data_ptr(), x.data_ptr(), f_e.data_ptr(), i_e.data_ptr(),
                                      int(ctx.signed), 0 if gw is None else gw.data_ptr(),
                                      grad_x.data_ptr(), grad_f.data_ptr(), grad_i.data_ptr(),
                                      x.shape[0], math.prod(shape)):
            raise MemoryError("SaturatingRound: the C loop could not allocate its constants")
        if not per_element:
            grad_f, grad_i = _reduce_to(grad_f, f.shape), _reduce_to(grad_i, i.shape)
            if grad_width is not None:
                live = width.clamp_max(1.0)
                grad_f = torch.addcmul(grad_f, grad_width, live)
                grad_i = torch.addcmul(grad_i, grad_width, live)
        return grad_x, grad_f, grad_i, None
