"""Straight-through helpers: QKeras's ``stop_gradient`` idioms written once, in torch.

QKeras expresses every quantizer as ``x + tf.stop_gradient(-x + xq)``: the value is ``xq`` (up
to float32 rounding of the residue) and the gradient is that of ``x``. These helpers reproduce
that value *including* the float32 rounding in training mode, so hqrun matches QKeras bit for
bit, and return the exact grid value in eval mode, which the firmware reproduces.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .native import kernels_for

__all__ = [
    "EPSILON",
    "LOG2",
    "qkeras_output",
    "round_through",
    "stochastic_round",
    "hard_sigmoid",
    "sign_nonzero",
    "channel_axes",
    "get_scale",
    "po2_round",
    "tf_log",
    "tf_log2_round",
    "tf_log2_floor",
    "flush_denormal",
    "tf_channel_mean",
]

# tf.keras.backend.epsilon(); every QKeras "+ K.epsilon()" uses it (as float32 in the graph).
EPSILON = 1e-7
# np.log(2.0): QKeras divides float32 logs by it, so it is rounded to float32 first.
LOG2 = math.log(2.0)


def qkeras_output(
    x: torch.Tensor,
    xq: torch.Tensor,
    training: bool,
    qnoise_factor: float = 1.0,
    use_ste: bool = True,
) -> torch.Tensor:
    """QKeras's last line: ``x + stop_gradient(qnoise * (-x + xq))`` (gradient of ``x``).

    ``use_ste=False`` gives ``(1 - qnoise) * x + stop_gradient(qnoise * xq)``. In eval mode with
    the default arguments the exact ``xq`` is returned (gradient still that of ``x``).
    """
    xq = xq.detach()
    if qnoise_factor == 1.0 and use_ste:
        if training:
            return x + (xq - x.detach())
        if x.requires_grad:
            return xq + (x - x.detach())
        return xq
    if use_ste:
        return x + (qnoise_factor * (xq - x.detach()))
    return (1.0 - qnoise_factor) * x + qnoise_factor * xq


def stochastic_round(x: torch.Tensor, precision: float = 0.5) -> torch.Tensor:
    """QKeras's ``stochastic_round``: floor or ceil on a ``precision`` grid, P(ceil)=fraction."""
    scale = 1.0 / precision
    scaled = x * scale
    low = torch.floor(scaled)
    fraction = scaled - low
    u = torch.rand_like(x)
    return torch.where(fraction < u, low, torch.ceil(scaled)) / scale


def round_through(
    p: torch.Tensor, stochastic: bool = False, precision: float = 0.5, training: bool = True
) -> torch.Tensor:
    """QKeras's ``_round_through``: round (half to even) with gradient 1.

    Stochastic rounding happens only in training (QKeras's learning phase 1). The value is the
    rounded ``r`` exactly: for deterministic rounding QKeras's ``p + (r - p)`` is provably ``r``
    in float32; for stochastic rounding (not reproducible draw for draw anyway) hqrun keeps the
    value on the grid rather than imitating QKeras's float32 residue.
    """
    pd = p.detach()
    r = stochastic_round(pd, precision) if stochastic and training else torch.round(pd)
    if p.requires_grad:
        return r + (p - pd)
    return r


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """QKeras's default internal sigmoid: ``clip(0.5 * x + 0.5, 0, 1)``."""
    return torch.clamp(0.5 * x + 0.5, 0.0, 1.0)


def same_bits(a: Any, b: Any) -> bool:
    """Bitwise equality of two float32 tensors of one shape on one device (False for anything
    else): how the iterative scale searches (auto_po2, ternary) recognise a fixed point and the
    inference cache an unchanged parameter."""
    if not (torch.is_tensor(a) and torch.is_tensor(b)) or a.dtype != torch.float32 \
            or b.dtype != torch.float32 or a.shape != b.shape or a.device != b.device:
        return False
    return torch.equal(a.view(torch.int32), b.view(torch.int32))


def sign_nonzero(x: torch.Tensor) -> torch.Tensor:
    """``sign(x)`` with 0 mapped to +1 (QKeras: ``s = sign(x); s += 1 - abs(s)``)."""
    s = torch.sign(x)
    return s + (1.0 - torch.abs(s))


def channel_axes(ndim: int, scale_axis: int | None = None) -> list[int] | None:
    """Axes QKeras reduces over for per-channel scales (channels_last): all but the channel."""
    if ndim <= 1:
        return None
    if scale_axis is not None:
        # QKeras's _get_scaling_axis, literally (a negative scale_axis reduces over all axes).
        return list(range(scale_axis)) + list(range(scale_axis + 1, ndim))
    return list(range(ndim - 1))


# Eigen's float32 log (what TensorFlow's CPU kernel evaluates): frexp, shift the mantissa to
# [sqrt(1/2), sqrt(2)) - 1, a (3,3) rational approximation of log1p, then e * ln2 added with a
# separate multiply and add. Reproduced operation by operation so that power-of-two rounding
# decisions (round(log(x) / ln2) near k + 0.5) come out exactly as in QKeras; torch.log differs
# from it in the last bit for ~10% of inputs. Checked bit-exact against TF 2.21 on 200k inputs.
_LOG_P = (0.18256296349849254, 1.0000000190281063, 1.0000000190281136)
_LOG_Q = (0.049616247954120038, 0.59923249590823520, 1.4999999999999927, 1.0)
_SQRTHF = 0.707106781186547524


def tf_log(x: torch.Tensor) -> torch.Tensor:
    """Natural log of a float32 tensor, bit-identical to TensorFlow's CPU ``tf.math.log``."""
    if x.dtype != torch.float32:
        return torch.log(x)
    out = _tf_log_finite(x)
    out = torch.where(x == 0, torch.full_like(out, float("-inf")), out)
    out = torch.where(x == float("inf"), x, out)
    return torch.where((x < 0) | torch.isnan(x), torch.full_like(out, float("nan")), out)


def _tf_log_finite(x: torch.Tensor) -> torch.Tensor:
    """``tf_log`` minus its special cases (0, inf, negatives, nan): equal to it for finite x > 0."""
    m, e = torch.frexp(x)
    e = e.to(torch.float32)
    small = m < _SQRTHF
    tmp = torch.where(small, m, torch.zeros_like(m))
    m = m - 1.0
    e = e - small.to(torch.float32)
    m = m + tmp
    p = torch.full_like(m, _LOG_P[0])
    for c in _LOG_P[1:]:
        p = p * m + c
    p = m * p
    q = torch.full_like(m, _LOG_Q[0])
    for c in _LOG_Q[1:]:
        q = q * m + c
    r = p / q
    return e * LOG2 + r


# round(log2 x) and floor(log2 x) as QKeras computes them (float32 ``tf_log(x) / ln2``). Both
# tf_log(x) / ln2 and torch.log2 are within 1e-4 of the true log2 for every float32 (|log2 x| <=
# 150), so they round alike unless log2 x lies within _BAND of a rounding point (k + 1/2 for
# round, the integers, i.e. exact powers of two, for floor). Those few elements, and 0, negatives,
# inf and nan (whose torch.log2 leaves l - round(l) nan), take the exact TF emulation. Checked
# against the emulation on every float32 bit pattern; tests/test_quantizers_fastpath.py keeps
# checking it on random and adversarial inputs.
_BAND = 2.0**-9


def _tf_log2_round_ref(x: torch.Tensor) -> torch.Tensor:
    return torch.round(tf_log(x) / LOG2)


def _tf_log2_floor_ref(x: torch.Tensor) -> torch.Tensor:
    return torch.floor(tf_log(x) / LOG2)


def _patch_band(x: torch.Tensor, out: torch.Tensor, safe: torch.Tensor, rounding: Any) -> None:
    """Overwrite ``out`` (contiguous, like ``x``) where not ``safe`` with the exact emulation."""
    idx = torch.logical_not(safe).view(-1).nonzero().squeeze(1)
    xb = x.view(-1).index_select(0, idx)
    # The few elements are nearly always finite and > 0, where tf_log's special cases are no-ops.
    finite = bool(((xb > 0) & (xb < float("inf"))).all())
    log = _tf_log_finite(xb) if finite else tf_log(xb)
    out.view(-1).index_copy_(0, idx, rounding(log / LOG2))


def _native_log2(x: torch.Tensor, use_floor: int) -> torch.Tensor | None:
    """The C loop's ``round``/``floor(tf_log(x) / LOG2)`` (same bits), or None without it."""
    lib = kernels_for(x)
    if lib is None:
        return None
    x = x.contiguous()
    out = torch.empty_like(x)
    lib.hq_tf_log2_round(x.data_ptr(), out.data_ptr(), use_floor, x.numel())
    return out


def tf_log2_round(x: torch.Tensor) -> torch.Tensor:
    """``torch.round(tf_log(x) / LOG2)`` bit for bit (signed zeros included), much faster."""
    if x.dtype != torch.float32:
        return _tf_log2_round_ref(x)
    out = _native_log2(x, 0)
    if out is not None:
        return out
    x = x.contiguous()
    lg = torch.log2(x)
    out = torch.round(lg)
    safe = torch.abs(lg.sub_(out)) < 0.5 - _BAND  # false for nan
    if not bool(safe.all()):
        _patch_band(x, out, safe, torch.round)
    return out


def tf_log2_floor(x: torch.Tensor) -> torch.Tensor:
    """``torch.floor(tf_log(x) / LOG2)`` bit for bit, much faster."""
    if x.dtype != torch.float32:
        return _tf_log2_floor_ref(x)
    out = _native_log2(x, 1)
    if out is not None:
        return out
    x = x.contiguous()
    lg = torch.log2(x)
    out = torch.floor(lg)
    safe = torch.abs(lg.sub_(out).sub_(0.5)) < 0.5 - _BAND  # false for nan
    if not bool(safe.all()):
        _patch_band(x, out, safe, torch.floor)
    return out


_TINY = 2.0**-126  # smallest normal float32


def flush_denormal(x: torch.Tensor) -> torch.Tensor:
    """Zero float32 subnormals, as TensorFlow's CPU kernels do (they run flush-to-zero)."""
    if x.dtype != torch.float32:
        return x
    return torch.where(torch.abs(x) < _TINY, 0.0, x)


def _tf_column_sum(a: np.ndarray) -> np.ndarray:
    """Column sums of a float32 (N, C) array in the order TensorFlow's CPU kernel adds them.

    Eigen (AVX, 8-float packets) sums full packets of columns with four interleaved row
    accumulators when N >= 16, combined as ((a0 + a1) + a2) + a3 plus the leftover rows; the
    remaining columns are summed row by row. numpy's axis-0 sum is sequential, so it reproduces
    each piece. Checked bit-exact against TF 2.21 for several kernel shapes.
    """
    n, c = a.shape
    full = (c // 8) * 8
    out = np.empty(c, dtype=np.float32)
    if full:
        packets = a[:, :full]
        if n >= 16:
            u = (n // 4) * 4
            acc = [packets[k:u:4].sum(axis=0, dtype=np.float32) for k in range(4)]
            total = ((acc[0] + acc[1]) + acc[2]) + acc[3]
            for j in range(u, n):
                total = total + packets[j]
        else:
            total = packets.sum(axis=0, dtype=np.float32)
        out[:full] = total
    out[full:] = a[:, full:].sum(axis=0, dtype=np.float32)
    return out


def tf_channel_mean(x: torch.Tensor, axes: list[int]) -> torch.Tensor:
    """``K.mean(x, axis=axes, keepdims=True)`` with TensorFlow's float32 summation order.

    Exact emulation for the channels-last case (all axes but the last, i.e. per output channel,
    what QKeras uses for kernels); other layouts fall back to ``torch.mean``.
    """
    if x.dtype != torch.float32 or x.dim() < 2 or list(axes) != list(range(x.dim() - 1)):
        return torch.mean(x, dim=axes, keepdim=True)
    a = x.detach().reshape(-1, x.shape[-1]).cpu().numpy()
    mean = _tf_column_sum(a) / np.float32(a.shape[0])
    keep = [1] * (x.dim() - 1) + [x.shape[-1]]
    return torch.from_numpy(mean.astype(np.float32)).reshape(keep).to(x.device)


def po2_round(scale: torch.Tensor) -> torch.Tensor:
    """``2 ** round(log(scale + eps) / log(2))`` as QKeras computes power-of-two scales."""
    return torch.exp2(tf_log2_round(scale + EPSILON))


def _native_channel_scale(alpha: str, x: torch.Tensor, q: torch.Tensor,
                          axes: list[int] | None) -> torch.Tensor | None:
    """:func:`get_scale`'s per-channel scale from one C call (``hq_channel_scale``: the same
    products, TensorFlow-order means, division and power-of-two rounding, bit for bit), or None
    where that loop does not apply (not channels-last, not float32 on the CPU, no C compiler, or
    the one column numpy sums pairwise)."""
    if axes is None or x.dim() < 2 or list(axes) != list(range(x.dim() - 1)) \
            or x.shape != q.shape or q.dtype != torch.float32:
        return None
    lib = kernels_for(x)
    if lib is None or kernels_for(q) is None:
        return None
    cols = x.shape[-1]
    xc, qc = x.detach().contiguous(), q.detach().contiguous()
    out = torch.empty([1] * (x.dim() - 1) + [cols], dtype=torch.float32)
    if lib.hq_channel_scale(xc.data_ptr(), qc.data_ptr(), xc.numel() // max(cols, 1), cols,
                            int(alpha == "auto_po2"), out.data_ptr()):
        return None
    return out


def native_scaled_kernel(x: torch.Tensor, entry: str, *flags: int
                         ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(scale, xq)`` of a kernel quantizer with a per-channel scale from one of its C loops
    (``entry``: ``hq_ternary`` or ``hq_binary``, called as ``(x, xq, rows, cols, *flags,
    scale)`` on ``x`` viewed channels-last as ``(rows, cols)``), or None where that does not
    apply (a 1-D tensor, not float32 on the CPU, no compiler, a shape the loop declines)."""
    if x.dim() < 2:
        return None
    lib = kernels_for(x)
    if lib is None:
        return None
    xd = x.detach().contiguous()
    cols = xd.shape[-1]
    xq = torch.empty_like(xd)
    scale = torch.empty([1] * (xd.dim() - 1) + [cols])
    if getattr(lib, entry)(xd.data_ptr(), xq.data_ptr(), xd.numel() // max(cols, 1), cols, *flags,
                           scale.data_ptr()):
        return None
    return scale, xq


def get_scale(
    alpha: object, x: torch.Tensor, q: torch.Tensor, scale_axis: int | None = None
) -> torch.Tensor | float:
    """QKeras's ``_get_scale`` (per-channel least squares ``mean(x*q) / mean(q*q)``).

    Quirk kept: for a 1-D tensor QKeras does not average at all, so the "scale" is computed per
    element.
    """
    if isinstance(alpha, str):
        axes = channel_axes(x.dim(), scale_axis)
        scale = _native_channel_scale(alpha, x, q, axes)
        if scale is not None:
            return scale
        if axes is None:
            qx = x * q
            qq = q * q
        else:
            qx = tf_channel_mean(x * q, axes)
            qq = tf_channel_mean(q * q, axes)
        scale = qx / (qq + EPSILON)
        if alpha == "auto_po2":
            scale = po2_round(scale)
        return scale
    if alpha is None:
        return 1.0
    return float(alpha)
