"""The two remaining QKeras 0.9.0 quantizers: ``quantized_ulaw`` and ``quantized_hswish``.

``quantized_ulaw`` companders a quantized hard sigmoid with the u-law curve: its outputs are
not on a fixed-point grid (``fixed_point_type()`` is None), and its gradient flows through the
hard sigmoid and the log curve (no straight-through replacement), as in QKeras.
``quantized_hswish`` is ``quantized_bits`` applied to ``x * relu6(x + 3) / 6`` (MobileNetV3's
hard swish), so it has quantized_bits's type and a gradient that goes through the hard swish.
"""

from __future__ import annotations

from typing import Any

import torch

from hqrun.errors import QuantizerSpecError

from .base import Quantizer, check_int, check_number
from .bits import quantized_bits
from .ste import hard_sigmoid, round_through, tf_log

__all__ = ["quantized_ulaw", "quantized_hswish"]


class quantized_ulaw(Quantizer):  # noqa: N801 - QKeras name
    """u-law companded quantizer on ``bits`` bits, range ``2**integer * [-1, 1 - 2**(1-bits)]``."""

    name = "quantized_ulaw"
    positional = 2

    def __init__(self, bits: int = 8, integer: int = 0, symmetric: Any = 0,
                 u: float = 255.0) -> None:
        super().__init__()
        self.bits = check_int(self.name, "bits", bits, 1)
        self.integer = check_int(self.name, "integer", integer)
        self.symmetric = symmetric
        self.u = check_number(self.name, "u", u, False)
        if self.u <= 0:
            raise QuantizerSpecError(f"{self.name}: argument u={u!r} must be positive.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = float(2.0 ** (self.bits - 1))
        m_i = float(2.0**self.integer)
        p = hard_sigmoid(x / m_i) * m
        rp = 2.0 * (round_through(p, training=self.training) / m) - 1.0
        log_u = tf_log(torch.tensor(1.0 + float(self.u), dtype=x.dtype))
        u_law = torch.sign(rp) * tf_log(1 + self.u * torch.abs(rp)) / log_u
        lo = -1.0 + (1.0 * bool(self.symmetric)) / m
        return m_i * torch.clamp(u_law, lo, max(1.0 - 1.0 / m, lo))

    def max_value(self) -> float | None:
        return max(1.0, 2.0**self.integer) if self.bits - 1 > 0 else 1.0

    def min_value(self) -> float | None:
        return -self.max_value()  # type: ignore[operator]


class quantized_hswish(quantized_bits):  # noqa: N801 - QKeras name
    """``quantized_bits`` of the hard swish ``x * min(max(x + relu_shift, 0), relu_upper_bound)
    / relu_upper_bound``."""

    name = "quantized_hswish"
    # hard swish is not a cast onto quantized_bits's grid: no exact firmware (the base refusal)
    lowering = Quantizer.lowering
    positional = 2

    def __init__(self, bits: int = 8, integer: int = 0, symmetric: Any = 0, alpha: Any = None,
                 use_stochastic_rounding: Any = False, scale_axis: int | None = None,
                 qnoise_factor: float = 1.0, var_name: str | None = None, use_ste: Any = True,
                 use_variables: Any = False, relu_shift: float = 3,
                 relu_upper_bound: float = 6) -> None:
        super().__init__(bits=bits, integer=integer, symmetric=symmetric, keep_negative=True,
                         alpha=alpha, use_stochastic_rounding=use_stochastic_rounding,
                         scale_axis=scale_axis, qnoise_factor=qnoise_factor, var_name=var_name,
                         use_ste=use_ste, use_variables=use_variables)
        for arg, value in (("relu_shift", relu_shift), ("relu_upper_bound", relu_upper_bound)):
            if check_number(self.name, arg, value, False) <= 0:
                raise QuantizerSpecError(
                    f"{self.name}: argument {arg}={value!r} must be positive (QKeras asserts it)."
                )
        self.relu_shift = relu_shift
        self.relu_upper_bound = relu_upper_bound

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shift_x = x + self.relu_shift
        ub = float(self.relu_upper_bound)
        relu_x = torch.where(shift_x <= ub, torch.relu(shift_x), torch.full_like(shift_x, ub))
        return super().forward(x * relu_x / ub)

    def min_value(self) -> float | None:
        """QKeras's ``min()``: the quantized bound or the hard swish's minimum."""
        min_quant = super().min_value()
        min_parabolic = -self.relu_shift * self.relu_shift / (4 * self.relu_upper_bound)
        if min_quant >= min_parabolic:  # type: ignore[operator]
            return min_quant
        q = quantized_bits(self.bits, self.integer, self.symmetric, alpha=self.alpha).eval()
        return float(q(torch.tensor([min_parabolic], dtype=torch.float32))[0])

    def for_kernel(self) -> "quantized_hswish":
        return self

