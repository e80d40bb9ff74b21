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

__all__ = [
    "F_MIN",
    "F_MAX",
    "LN2",
    "bit_length",
    "code_width",
    "range_width",
    "effective_frac",
    "LearnedRound",
]

#: Bounds of the (rounded) fractional bits. Widths stay far below float32's 24-bit mantissa in
#: practice (the cost penalty pushes them down); the bounds only keep a runaway parameter finite.
F_MIN = -16
F_MAX = 24
LN2 = math.log(2.0)


def bit_length(n: torch.Tensor) -> torch.Tensor:
    """``int.bit_length`` of non-negative integer-valued floats, exactly (via ``frexp``).

    ``n = m * 2**e`` with ``0.5 <= m < 1`` gives ``2**(e-1) <= n < 2**e``, so the bit length is
    ``e``; ``frexp(0)`` has exponent 0. No ``log2`` rounding can creep in.
    """
    return torch.frexp(n).exponent.to(n.dtype)


def code_width(n: torch.Tensor) -> torch.Tensor:
    """Smallest two's-complement width holding each integer code ``n`` (0 for ``n == 0``).

    ``n > 0`` needs ``bit_length(n) + 1`` bits, ``n < 0`` needs ``bit_length(-n - 1) + 1`` (so
    ``-1`` fits one bit, ``-2`` two), and 0 needs none: a weight quantized to 0 is pruned.
    """
    magnitude = torch.where(n > 0, n, -n - 1)
    return torch.where(n == 0, torch.zeros_like(n), bit_length(magnitude) + 1)


def range_width(top_code: torch.Tensor, signed: bool) -> torch.Tensor:
    """Width holding every code in ``[-top, top]`` (signed) or ``[0, top]`` (unsigned).

    ``top_code`` is the rounded code of the tracked range; 0 gives width 0 (a silent element).
    """
    width = bit_length(top_code)
    if signed:
        width = torch.where(top_code > 0, width + 1, width)
    return width


def effective_frac(f: torch.Tensor) -> torch.Tensor:
    """The fractional bits actually used: the parameter rounded (half to even) and clipped."""
    return torch.round(f.detach()).clamp_(F_MIN, F_MAX)


class LearnedRound(torch.autograd.Function):
    """``xq = round(x * 2**f) * 2**-f`` (ReLU first if asked) with HGQ's gradient for ``f``.

    Inputs: ``x``; ``f`` the float parameter (any shape broadcasting to ``x``); ``frac`` its
    rounded value ``effective_frac(f)``; ``bits`` the per-element widths the cost penalty counts
    (a tensor computed without gradient by the caller, shape broadcasting to ``x`` for weights or
    equal to ``f``'s for activations); ``relu``.

    Outputs: ``xq`` and ``bits`` (the same numbers, now attached to the graph).

    Backward: ``dx = dxq`` (straight through; times ``x > 0`` with ``relu``), and
    ``df = -ln2 * sum(dxq * (xq - x_r)) + sum(dbits * (bits > 0))`` reduced to ``f``'s shape,
    zero where ``f`` lies outside ``[F_MIN, F_MAX]`` (the clip is flat there). ``x_r`` is the
    ReLU'd input when ``relu``: the error of the value actually rounded. A live element's width is
    ``f`` plus a constant (its integer bits), so its derivative in ``f`` is 1; an empty one has
    none.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, f: torch.Tensor, frac: torch.Tensor,
                bits: torch.Tensor, relu: bool) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        xr = torch.relu(x) if relu else x
        xq = torch.mul(xr, torch.exp2(frac)).round_().mul_(torch.exp2(-frac))  # exact: powers of 2
        ctx.relu = relu
        ctx.f_shape = f.shape
        in_range = (f >= F_MIN - 0.5) & (f <= F_MAX + 0.5)
        ctx.save_for_backward(xq - xr, bits, in_range, x > 0 if relu else None)
        return xq, bits.clone()

    @staticmethod
    def backward(ctx: Any, grad_xq: torch.Tensor, grad_bits: torch.Tensor) -> tuple:  # type: ignore[override]
        delta, bits, in_range, positive = ctx.saved_tensors
        grad_x = grad_xq * positive if ctx.relu else grad_xq
        grad_f = (grad_xq * delta).sum_to_size(ctx.f_shape).mul_(-LN2)
        if grad_bits is not None:
            grad_f = grad_f + (grad_bits * (bits > 0)).sum_to_size(ctx.f_shape)
        grad_f = grad_f * in_range
        return grad_x, grad_f, None, None, None
