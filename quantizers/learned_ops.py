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
    "LearnedLinear",
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


def _round_weights(w: torch.Tensor, f: torch.Tensor, lib: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(wq, width)`` of a weight tensor at trainable fractional bits ``f``:
    ``wq = round(w * 2**F) * 2**-F`` (``F = f`` rounded and clipped) and each code's
    two's-complement width. One C loop when the library is there, else the same numbers in
    torch. The backward (:func:`_weight_frac_grad`) needs ``w``, ``wq`` and ``width`` only.
    ``lib``: the C library when the caller already knows it applies (float32, CPU)."""
    lib = lib if lib is not None else kernels_for(w)
    if lib is not None:  # one fused loop, same values (quantizer_kernels.c)
        w = w.contiguous()
        f_e = _per_element(f.detach(), tuple(w.shape))  # held: the C loop reads its memory
        wq, width = torch.empty_like(w), torch.empty_like(w)
        lib.hq_weight_round_fwd(w.data_ptr(), f_e.data_ptr(), wq.data_ptr(), width.data_ptr(),
                                w.numel())
        return wq, width
    frac = torch.round(f.detach()).clamp_(F_MIN, F_MAX)
    scale = torch.exp2(frac)
    codes = torch.mul(w, scale).round_()
    width = code_width(codes)
    return codes.div_(scale), width  # exact: a power of two


def _weight_frac_grad(grad_wq: torch.Tensor, grad_width: torch.Tensor | None, w: torch.Tensor,
                      wq: torch.Tensor, width: torch.Tensor, shape: torch.Size,
                      col: torch.Tensor | None = None, scale: float | None = None,
                      lib: Any = None) -> torch.Tensor:
    """HGQ's ``df = -ln2 * dwq * (wq - w) + dwidth * [width > 0]``, summed to ``f``'s shape.

    The width gradient is ``grad_width`` (a tensor, or None), or — what the EBOPs count sends,
    given compactly so nothing is broadcast — ``col[i] * scale`` for a kernel (``col``: its
    input widths, ``scale``: the count's gradient) or ``scale`` everywhere for a bias
    (``col=None``); both forms may come together. One C loop when it can (the same operations
    in the same order as the torch code below); ``lib``: the library, when the caller knows it
    applies.
    """
    compact = scale is not None
    if compact and grad_width is not None:  # both: add them up (rare: widths used directly)
        extra = torch.full_like(grad_wq, scale) if col is None else (col * scale).expand(grad_wq.shape)
        grad_width, compact = grad_width + extra, False
    lib = lib if lib is not None else kernels_for(grad_wq)
    if lib is not None and grad_width is None and grad_wq.is_contiguous() \
            and w.is_contiguous() and (col is None or col.is_contiguous()):
        out = torch.empty_like(grad_wq)
        cols = grad_wq.shape[-1] if grad_wq.dim() else 1
        lib.hq_weight_frac_grad(grad_wq.data_ptr(), w.data_ptr(), wq.data_ptr(), width.data_ptr(),
                                None if col is None or not compact else col.data_ptr(),
                                float(scale) if compact else 0.0, int(compact), out.data_ptr(),
                                grad_wq.numel() // max(cols, 1), cols)
        return _reduce_to(out, shape)
    delta, live = wq - w, width.clamp_max(1.0)
    if compact:
        grad_width = torch.full_like(grad_wq, scale) if col is None else (col * scale).expand(grad_wq.shape)
    if grad_width is None:
        grad_f = grad_wq * delta * -LN2
    else:
        grad_f = torch.addcmul(grad_width * live, grad_wq, delta, value=-LN2)
    return _reduce_to(grad_f, shape)


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
        wq, width = _round_weights(w, f)
        ctx.save_for_backward(w.contiguous(), wq, width, f)
        return wq, width

    @staticmethod
    def backward(ctx: Any, grad_wq: torch.Tensor, grad_width: torch.Tensor) -> tuple:  # type: ignore[override]
        w, wq, width, f = ctx.saved_tensors
        return grad_wq, _weight_frac_grad(grad_wq, grad_width, w, wq, width, f.shape)


class LearnedLinear(torch.autograd.Function):
    """A dense layer with learned-width kernel and bias, ``y = x @ Wq.T + bq``, in one autograd
    node: the two weight roundings of :class:`WeightRound` and the matrix product.

    Why fused: on the jet model a training step is dominated by per-node overhead, not by
    arithmetic; one node instead of four (two roundings, the transpose, ``addmm``) per layer is a
    measurable share of the step (bench/learned_throughput.py). Values equal the unfused path's
    exactly, gradients are the same formulas (tests/test_learned_ops.py compares the two).

    ``b`` and ``fb`` may be None (no bias, or a bias kept in float: then ``fb`` is None and ``b``
    is used as it is). Returns ``(y, width_w, width_b)``; ``width_b`` is an empty tensor when the
    bias has no learned width.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, fw: torch.Tensor,  # type: ignore[override]
                b: torch.Tensor | None, fb: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        wq, width_w = _round_weights(w, fw)
        if fb is not None:
            bq, width_b = _round_weights(b, fb)
        else:
            bq, width_b = b, x.new_empty(0)
        y = torch.addmm(bq, x, wq.t()) if bq is not None else torch.mm(x, wq.t())
        ctx.save_for_backward(x, w, wq, width_w, fw, b, bq if fb is not None else None,
                              width_b if fb is not None else None, fb)
        ctx.has_bias = b is not None
        if fb is None:
            ctx.mark_non_differentiable(width_b)
        return y, width_w, width_b

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor, grad_ww: torch.Tensor | None,  # type: ignore[override]
                 grad_wb: torch.Tensor | None) -> tuple:
        x, w, wq, width_w, fw, b, bq, width_b, fb = ctx.saved_tensors
        need_x, need_w, need_fw, need_b, need_fb = ctx.needs_input_grad
        grad_x = grad_y.mm(wq) if need_x else None
        grad_w = grad_y.t().mm(x) if (need_w or need_fw) else None
        grad_fw = _weight_frac_grad(grad_w, grad_ww, w, wq, width_w, fw.shape) if need_fw else None
        grad_b = grad_fb = None
        if ctx.has_bias and (need_b or need_fb):
            grad_b = grad_y.sum(0)
            if fb is not None and need_fb:
                grad_fb = _weight_frac_grad(grad_b, grad_wb, b, bq, width_b, fb.shape)
        return grad_x, grad_w if need_w else None, grad_fw, grad_b if need_b else None, grad_fb


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
        xq, width, state = sat_round_forward(lib, x, f, i, ctx.signed)
        ctx.native = state[2:]
        ctx.save_for_backward(*state[:2], f, i)
        return xq, width

    @staticmethod
    def _native_backward(ctx: Any, grad_xq: torch.Tensor, grad_width: torch.Tensor | None) -> tuple:
        """The backward above in one C loop: the same masks and sums (summed in another order)."""
        x, width, f, i = ctx.saved_tensors
        grad_x, grad_f, grad_i = sat_round_backward((x, width, *ctx.native), f, i, ctx.signed,
                                                    grad_xq, grad_width)
        return grad_x, grad_f, grad_i, None


def sat_round_forward(lib: Any, x: torch.Tensor, f: torch.Tensor, i: torch.Tensor,
                      signed: bool) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    """:class:`SaturatingRound`'s forward in the C loop (``lib``, from :func:`kernels_for`).

    Returns ``(xq, width, state)``; ``state`` is what :func:`sat_round_backward` needs (the
    contiguous input, the widths, and ``f``/``i`` broadcast per element). Kept as functions so
    the autograd node here and the fused chain (``learned_chain``) run the same code.
    """
    x = x.contiguous()
    shape = tuple(x.shape[1:])
    f_e, i_e = _per_element(f.detach(), shape), _per_element(i.detach(), shape)
    xq = torch.empty_like(x)
    width_e = torch.empty(shape, dtype=x.dtype)
    rows, n = x.shape[0], math.prod(shape)
    if lib.hq_sat_round_fwd(x.data_ptr(), xq.data_ptr(), f_e.data_ptr(), i_e.data_ptr(),
                            int(signed), width_e.data_ptr(), rows, n):
        raise MemoryError("SaturatingRound: the C loop could not allocate its constants")
    if f.shape == shape and i.shape == shape:
        width = width_e
    else:  # one width per group of elements (layer, channel): the same numbers, f's shape
        width = (torch.round(i.detach()).clamp_(F_MIN, F_MAX)
                 + torch.round(f.detach()).clamp_(F_MIN, F_MAX)).clamp_min_(0.0)
    return xq, width, (x, width, f_e, i_e)


def sat_round_backward(state: tuple, f: torch.Tensor, i: torch.Tensor, signed: bool,
                       grad_xq: torch.Tensor, grad_width: torch.Tensor | None,
                       grad_width_scale: float = 1.0, grad_x_sum: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(grad_x, grad_f, grad_i)`` of :func:`sat_round_forward` (the C loop's backward);
    the widths' gradient is ``grad_width * grad_width_scale``. ``grad_x_sum`` (a tensor of the
    per-sample shape, or None) receives ``grad_x.sum(0)`` from the same pass (summed row after
    row): the bias gradient of a dense layer before the quantizer."""
    x, width, f_e, i_e = state
    g = grad_xq.contiguous()
    shape = tuple(x.shape[1:])
    per_element = f.shape == shape and i.shape == shape
    gw = None  # the width gradient goes into the C loop when widths are per element
    if grad_width is not None and per_element:
        gw = grad_width.contiguous()
    grad_x = torch.empty_like(x)
    grad_f, grad_i = torch.empty(shape, dtype=x.dtype), torch.empty(shape, dtype=x.dtype)
    if kernels().hq_sat_round_bwd(g.data_ptr(), x.data_ptr(), f_e.data_ptr(), i_e.data_ptr(),
                                  int(signed), 0 if gw is None else gw.data_ptr(),
                                  float(grad_width_scale),
                                  grad_x.data_ptr(), grad_f.data_ptr(), grad_i.data_ptr(),
                                  None if grad_x_sum is None else grad_x_sum.data_ptr(),
                                  x.shape[0], math.prod(shape)):
        raise MemoryError("SaturatingRound: the C loop could not allocate its constants")
    if not per_element:
        grad_f, grad_i = _reduce_to(grad_f, f.shape), _reduce_to(grad_i, i.shape)
        if grad_width is not None:
            if grad_width_scale != 1.0:
                grad_width = grad_width * grad_width_scale
            live = width.clamp_max(1.0)
            grad_f = torch.addcmul(grad_f, grad_width, live)
            grad_i = torch.addcmul(grad_i, grad_width, live)
    return grad_x, grad_f, grad_i
