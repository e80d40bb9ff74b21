"""``quantized_tanh`` and ``quantized_sigmoid`` (QKeras 0.9.0).

Both quantize a saturating function on a uniform grid and, unlike the other quantizers, let the
gradient flow through that function (no outer straight-through replacement): by default QKeras
uses its *hard* sigmoid ``clip(0.5 x + 0.5, 0, 1)`` (gradient 0.5 inside, 0 outside) and
``2 * hard_sigmoid(x) - 1`` for tanh; ``use_real_tanh``/``use_real_sigmoid`` switch to the real
functions. Values: tanh in ``ap_fixed<bits, 1>`` (``k / 2**(bits-1)``, k in
``[-2**(bits-1) + symmetric, 2**(bits-1) - 1]``), sigmoid in ``ap_ufixed<bits, 0>``.
"""

from __future__ import annotations

from typing import Any

import torch

from .base import Quantizer, check_int
from .fixedpoint import FixedPointType
from .ste import hard_sigmoid, round_through

__all__ = ["quantized_tanh", "quantized_sigmoid"]


class quantized_tanh(Quantizer):  # noqa: N801 - QKeras name
    """Quantized (hard) tanh on ``bits`` bits, range [-1, 1 - 2**(1-bits)]."""

    name = "quantized_tanh"
    float_function = "tanh"
    positional = 1
    elementwise = True

    def __init__(self, bits: int = 8, use_stochastic_rounding: Any = False,
                 symmetric: Any = False, use_real_tanh: Any = False) -> None:
        super().__init__()
        self.bits = check_int(self.name, "bits", bits, 1)
        self.use_stochastic_rounding = use_stochastic_rounding
        self.symmetric = symmetric
        self.use_real_tanh = use_real_tanh
        self._m = float(2.0 ** (self.bits - 1))
        self._lo = -1.0 + (1.0 * bool(self.symmetric)) / self._m
        self._hi = max(1.0 - 1.0 / self._m, self._lo)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.tanh(x) if self.use_real_tanh else 2.0 * hard_sigmoid(x) - 1.0
        r = round_through(p * self._m, bool(self.use_stochastic_rounding), training=self.training)
        return torch.clamp(r / self._m, self._lo, self._hi)

    def fixed_point_type(self) -> FixedPointType | None:
        overflow = "SAT_SYM" if self.symmetric else "SAT"
        return FixedPointType(self.bits, 1, True, "RND_CONV", overflow)

    def max_value(self) -> float | None:
        return 1.0 - 1.0 / 2.0 ** (self.bits - 1)

    def min_value(self) -> float | None:
        return -1.0 + (1.0 * bool(self.symmetric)) / 2.0 ** (self.bits - 1)

    @property
    def is_stochastic(self) -> bool:
        return bool(self.use_stochastic_rounding)


class quantized_sigmoid(Quantizer):  # noqa: N801 - QKeras name
    """Quantized (hard) sigmoid on ``bits`` bits, range [0, 1 - 2**-bits]."""

    name = "quantized_sigmoid"
    float_function = "sigmoid"
    positional = 1
    elementwise = True

    def __init__(self, bits: int = 8, symmetric: Any = False, use_real_sigmoid: Any = False,
                 use_stochastic_rounding: Any = False) -> None:
        super().__init__()
        self.bits = check_int(self.name, "bits", bits, 1)
        self.symmetric = symmetric
        self.use_real_sigmoid = use_real_sigmoid
        self.use_stochastic_rounding = use_stochastic_rounding
        self._m = float(2.0**self.bits)
        self._lo = (1.0 * bool(self.symmetric)) / self._m
        self._hi = max(1.0 - 1.0 / self._m, self._lo)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(x) if self.use_real_sigmoid else hard_sigmoid(x)
        r = round_through(p * self._m, bool(self.use_stochastic_rounding), training=self.training)
        return torch.clamp(r / self._m, self._lo, self._hi)

    def fixed_point_type(self) -> FixedPointType | None:
        return FixedPointType(self.bits, 0, False, "RND_CONV", "SAT")

    def max_value(self) -> float | None:
        return 1.0 - 1.0 / 2.0**self.bits

    def min_value(self) -> float | None:
        return (1.0 * bool(self.symmetric)) / 2.0**self.bits

    @property
    def is_stochastic(self) -> bool:
        return bool(self.use_stochastic_rounding)
