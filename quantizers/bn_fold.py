"""Exact folding of an inference-mode batch norm into the dense/conv layer before it.

Why shared: the type inference must know the folded layer's accumulator (the layers after it
read that type) and the firmware must build exactly the same one, so both fold with these
functions. In eval mode a batch norm is a per-channel affine map ``y = s·x + t``; folding it
into ``w, b`` gives ``w·s, b·s + t``, which is exact in fixed point only when every ``s`` is a
positive power of two (a shift) and every ``t`` lies on a short fixed-point grid. Anything else
is not foldable exactly; the deployable form is QDenseBatchnorm (QKeras's folded layer, whose
folded weights are themselves quantized).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .exact_types import type_of_values
from .fixedpoint import FixedPointType

__all__ = ["batchnorm_affine", "fold_affine"]

#: Widest folded weight/bias type accepted.
MAX_FOLDED_WIDTH = 40


def batchnorm_affine(bn: nn.Module, n_channels: int, n_spatial: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(s, t)`` of an eval-mode batch norm, read off the layer by probing it.

    Probing (BN(0) = t, BN(1) - BN(0) = s) works for any parameterisation (QKeras-style quantized
    statistics included) without knowing its formula.
    """
    probe = torch.zeros((2, n_channels) + (1,) * n_spatial, dtype=torch.float32)
    probe[1] = 1.0
    was = bn.training
    bn.eval()
    try:
        with torch.no_grad():
            y = bn(probe).to(torch.float64).cpu().numpy().reshape(2, n_channels, -1)[:, :, 0]
    finally:
        bn.train(was)
    return y[1] - y[0], y[0]


def fold_affine(weight: np.ndarray, bias: np.ndarray | None, scale: np.ndarray,
                offset: np.ndarray) -> tuple[np.ndarray, np.ndarray, FixedPointType,
                                             FixedPointType] | None:
    """Folded ``(w·s, b·s + t)`` values and their exact types, or None when not exact.

    ``weight`` / ``bias`` are the quantized values (torch layout, output channel first).
    """
    s_exp = np.round(np.log2(np.abs(scale) + (scale == 0))).astype(int)
    if not (np.all(scale > 0) and np.all(np.abs(scale) == np.ldexp(1.0, s_exp))):
        return None
    if type_of_values(offset, max_width=24) is None:
        return None
    shift = s_exp.reshape((len(scale),) + (1,) * (weight.ndim - 1))
    wf = np.asarray(weight, dtype=np.float64) * np.ldexp(1.0, shift)
    bf = np.zeros(len(scale)) if bias is None else np.asarray(bias, dtype=np.float64).reshape(-1)
    bf = bf * np.ldexp(1.0, s_exp) + offset
    w_type = type_of_values(wf, max_width=MAX_FOLDED_WIDTH)
    b_type = type_of_values(bf, max_width=MAX_FOLDED_WIDTH)
    if w_type is None or b_type is None:
        return None
    return wf, bf, w_type, b_type
