"""Power-of-two quantizers: ``quantized_po2`` (signed) and ``quantized_relu_po2`` (ReLU).

Outputs are ``±2**e`` with an integer exponent ``e`` in ``[min_exp, max_exp]`` (derived from
``bits`` and ``max_value`` exactly as QKeras 0.9.0 does). Hardware stores the exponent, not the
value, so the ``fixed_point_type()`` reported here is the *value* type that holds every output
(``ap_fixed`` covering ``2**min_exp .. 2**max_exp``); :meth:`exponent_range` gives the exponent
range for cost models and firmware that multiply by shifting.

QKeras quirks kept: inputs with ``|x| < 1e-7`` (including 0) map to ``2**min_exp`` (never 0);
``quantized_relu_po2`` maps all negative inputs to ``+2**min_exp`` when ``negative_slope == 0``;
a non-power-of-two ``max_value`` can be rounded *up* (``max_value=3`` allows 4).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from hqrun.errors import QuantizerSpecError

from .base import Quantizer, check_int, check_negative_slope, check_number
from .fixedpoint import FixedPointType
from .operand import Operand
from .native import kernels_for
from .ste import EPSILON, flush_denormal, qkeras_output, tf_log2_floor, tf_log2_round

__all__ = ["quantized_po2", "quantized_relu_po2"]


def _need_exponent_sign_bit(qname: str, max_value: Any) -> int:
    if max_value is None:
        return 1
    if max_value < 0:
        raise QuantizerSpecError(
            f"{qname}: argument max_value={max_value!r} must be non-negative (or None)."
        )
    return 1 if max_value > 1 else 0


def _stochastic_round_po2(x: torch.Tensor) -> torch.Tensor:
    """QKeras's ``stochastic_round_po2``: exponent sampled so that E[2**e] tracks |x|."""
    y = torch.abs(x)
    x_log2 = tf_log2_round(y + EPSILON)
    po2 = torch.exp2(x_log2)
    above = po2 > y
    left = torch.where(above, x_log2 - 1, x_log2)
    right = torch.where(above, x_log2, x_log2 + 1)
    lo, hi = torch.exp2(left), torch.exp2(right)
    val = lo + torch.rand_like(y) * (hi - lo)
    return torch.where(y < val, left, right)


def _clip_power_of_two(x_abs: torch.Tensor, min_exp: int, max_exp: int, max_value: Any,
                       quadratic: bool, stochastic: bool, log2_rounding: str,
                       training: bool) -> torch.Tensor:
    """QKeras's ``_clip_power_of_two``: the clipped exponent of ``x_abs`` (float tensor)."""
    eps = torch.tensor(EPSILON, dtype=x_abs.dtype, device=x_abs.device)
    # where(x < eps, eps, x) and where(x >= mv, mv, x) are clamps (nan stays nan in both).
    x_filter = torch.clamp_min(x_abs, eps)
    if max_value is not None:
        mv = torch.tensor(float(max_value), dtype=x_abs.dtype, device=x_abs.device)
        x_filter = torch.clamp_max_(x_filter, mv)
    if quadratic:
        q_factor, x_input = 2.0, torch.sqrt(x_filter)
    else:
        q_factor, x_input = 1.0, x_filter
    if log2_rounding == "floor":
        x_log2 = tf_log2_floor(x_input)
    elif stochastic and training:
        x_log2 = _stochastic_round_po2(x_input)
    else:
        x_log2 = tf_log2_round(x_input)
    x_clipped = torch.clamp_(x_log2, float(min_exp), float(max_exp))
    if quadratic:
        x_clipped = q_factor * x_clipped
    return torch.where(x_abs < eps, float(min_exp), x_clipped)


class _Po2Common(Quantizer):
    """Shared validation and reporting of the two power-of-two quantizers."""

    elementwise = True
    _min_exp: int
    _max_exp: int

    def _check_common(self, bits: Any, max_value: Any, log2_rounding: Any,
                      qnoise_factor: Any) -> None:
        self.bits = check_int(self.name, "bits", bits, 1)
        self.max_value_arg = check_number(self.name, "max_value", max_value)
        if log2_rounding not in ("rnd", "floor"):
            raise QuantizerSpecError(
                f"{self.name}: argument log2_rounding={log2_rounding!r} must be 'rnd' or 'floor'."
            )
        self.log2_rounding = log2_rounding
        self.qnoise_factor = check_number(self.name, "qnoise_factor", qnoise_factor, False)

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg["max_value"] = self.max_value_arg
        return cfg

    def exponent_range(self) -> tuple[float, float]:
        """(smallest, largest) exponent an output magnitude ``2**e`` can have.

        Follows QKeras's clipping: exponents are clipped to ``[min_exp, max_exp]`` (then doubled
        with ``quadratic_approximation``), zero inputs give ``min_exp``, and ``max_value`` caps
        the input before the log2 rounding (so a non-power-of-two cap may round up).
        """
        q = 2 if self.quadratic_approximation else 1
        lo = min(self._min_exp, q * self._min_exp)
        top = self._max_exp
        mv = self.max_value_arg
        if mv is not None and mv > 0:
            arg = math.sqrt(mv) if self.quadratic_approximation else float(mv)
            log2 = math.log2(arg)
            e = math.floor(log2) if self.log2_rounding == "floor" else round(log2)
            if self.is_stochastic:
                e = math.ceil(log2)
            top = min(top, e)
        hi = q * min(max(top, self._min_exp), self._max_exp)
        # TensorFlow flushes float32 subnormals: 2**e with e < -126 is output as 0.
        return max(lo, -126), max(hi, self._min_exp, -126)

    def _value_type(self, signed: bool) -> FixedPointType | None:
        lo, hi = self.exponent_range()
        if not (float(lo).is_integer() and float(hi).is_integer()):
            return None
        lo, hi = int(lo), int(hi)
        integer = hi + 1 + (1 if signed else 0)
        width = integer - lo
        return FixedPointType(width, integer, signed, "RND_CONV", "SAT")

    @property
    def is_stochastic(self) -> bool:
        return bool(self.use_stochastic_rounding) and self.log2_rounding != "floor"

    #: Whether the operand is signed for the cost model (QTools: quantized_po2 yes,
    #: quantized_relu_po2 no, whatever its negative slope).
    _operand_signed: bool = True

    def operand(self) -> Operand:
        """A power-of-two operand (QTools's shifter/adder rules apply to it)."""
        mv = self.max_value_arg
        return Operand("po2", self.bits, self.bits, self._operand_signed, self.fixed_point_type(),
                       None if not mv else float(mv))

    def _may_be_subnormal(self) -> bool:
        """Whether an output 2**e can be a float32 subnormal (e >= -126 otherwise: no flush)."""
        q = 2 if self.quadratic_approximation else 1
        return min(self._min_exp, q * self._min_exp) < -126


class quantized_po2(_Po2Common):  # noqa: N801 - QKeras name
    """Signed power-of-two quantizer (QKeras 0.9.0): ``sign(x) * 2**round(log2|x|)``.

    ``bits`` covers the sign of x, the exponent's sign (when ``max_value`` is None or > 1) and the
    exponent magnitude. Gradient 1 everywhere.
    """

    name = "quantized_po2"
    positional = 1

    def __init__(self, bits: int = 8, max_value: float | None = None,
                 use_stochastic_rounding: Any = False, quadratic_approximation: Any = False,
                 log2_rounding: str = "rnd", qnoise_factor: float = 1.0,
                 var_name: str | None = None, use_ste: Any = True,
                 use_variables: Any = False) -> None:
        super().__init__()
        self._check_common(bits, max_value, log2_rounding, qnoise_factor)
        self.use_stochastic_rounding = use_stochastic_rounding
        self.quadratic_approximation = quadratic_approximation
        self.var_name = var_name
        self.use_ste = use_ste
        self.use_variables = use_variables
        need = _need_exponent_sign_bit(self.name, self.max_value_arg)
        effect = self.bits - 1 - need
        # As QKeras: with bits=1 (effect < 0) the exponent bounds become fractional.
        self._min_exp = -(2**effect)
        self._max_exp = 2**effect - 1
        if quadratic_approximation:
            self._max_exp = 2 * (self._max_exp // 2)

    def _native_value(self, x: torch.Tensor) -> torch.Tensor | None:
        """Without autograd, the deterministic value from one C loop (``hq_po2_value``: the same
        float32 operations), or None where it does not apply."""
        if (x.requires_grad and torch.is_grad_enabled()) or self.use_stochastic_rounding \
                or self.qnoise_factor != 1.0 or not bool(self.use_ste) \
                or not (float(self._min_exp).is_integer() and float(self._max_exp).is_integer()):
            return None
        lib = kernels_for(x)
        if lib is None:
            return None
        x = x.contiguous()
        out = torch.empty_like(x, requires_grad=False)
        mv = self.max_value_arg
        lib.hq_po2_value(x.data_ptr(), out.data_ptr(), int(mv is not None),
                         0.0 if mv is None else float(mv), int(bool(self.quadratic_approximation)),
                         int(self.log2_rounding == "floor"), float(self._min_exp),
                         float(self._max_exp), int(self._may_be_subnormal()),
                         int(self.emulate_residue), x.numel())
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._native_value(x)
        if out is not None:
            return out
        with torch.no_grad():
            xd = x.detach()
            s = torch.sign(xd)
            x_sign = s + (1.0 - torch.abs(s))
            e = _clip_power_of_two(torch.abs(xd), self._min_exp, self._max_exp,
                                   self.max_value_arg, bool(self.quadratic_approximation),
                                   bool(self.use_stochastic_rounding), self.log2_rounding,
                                   self.training)
            xq = x_sign.mul_(torch.exp2(e))
            if self._may_be_subnormal():
                xq = flush_denormal(xq)
        return qkeras_output(x, xq, self.emulate_residue, self.qnoise_factor, bool(self.use_ste))

    @property
    def straight_through(self) -> bool:
        return bool(self.use_ste) and self.qnoise_factor == 1.0 and not self.is_stochastic

    def fixed_point_type(self) -> FixedPointType | None:
        return self._value_type(signed=True)

    def max_value(self) -> float | None:  # type: ignore[override]
        """QKeras's ``max()``: ``max(1, max_value)`` or ``max(1, 2**max_exp)``."""
        if self.max_value_arg:
            return max(1.0, float(self.max_value_arg))
        return max(1.0, 2.0**self._max_exp)

    def min_value(self) -> float | None:
        return -self.max_value()  # type: ignore[operator]


class quantized_relu_po2(_Po2Common):  # noqa: N801 - QKeras name
    """Power-of-two ReLU (QKeras 0.9.0): ``2**round(log2 x)`` for x > 0.

    ``bits`` covers the exponent and its sign (no sign of x). Gradient: that of
    ``relu(x, negative_slope)`` clipped at ``max_value``.
    """

    name = "quantized_relu_po2"
    float_function = "relu"
    _operand_signed = False
    positional = 1

    def __init__(self, bits: int = 8, max_value: float | None = None, negative_slope: float = 0,
                 use_stochastic_rounding: Any = False, quadratic_approximation: Any = False,
                 log2_rounding: str = "rnd", qnoise_factor: float = 1.0,
                 var_name: str | None = None, use_ste: Any = True,
                 use_variables: Any = False) -> None:
        super().__init__()
        self._check_common(bits, max_value, log2_rounding, qnoise_factor)
        self.negative_slope = check_negative_slope(self.name, negative_slope)
        self.use_stochastic_rounding = use_stochastic_rounding
        self.quadratic_approximation = quadratic_approximation
        self.var_name = var_name
        self.use_ste = use_ste
        self.use_variables = use_variables
        need = _need_exponent_sign_bit(self.name, self.max_value_arg)
        self._min_exp = -(2 ** (self.bits - need))
        self._max_exp = 2 ** (self.bits - need) - 1
        if quadratic_approximation:
            self._max_exp = 2 * (self._max_exp // 2)

    def _relu(self, x: torch.Tensor) -> torch.Tensor:
        if self.negative_slope == 0:
            return torch.relu(x)
        return F.leaky_relu(x, float(self.negative_slope))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.max_value_arg is None:
            xr = self._relu(x)
        else:
            mv = float(self.max_value_arg)
            xr = torch.where(x <= mv, self._relu(x), torch.full_like(x, mv))
        with torch.no_grad():
            xd = x.detach()
            args = (self._min_exp, self._max_exp, self.max_value_arg,
                    bool(self.quadratic_approximation), bool(self.use_stochastic_rounding),
                    self.log2_rounding, self.training)
            pos = _clip_power_of_two(torch.relu(xd), *args)
            slope = float(self.negative_slope)
            if slope == 0.0:
                xq = torch.exp2(pos)
            else:
                neg = _clip_power_of_two(torch.relu(-xd) * slope, *args)
                xq = torch.where(xd >= 0.0, torch.exp2(pos), -torch.exp2(neg))
            if self._may_be_subnormal():
                xq = flush_denormal(xq)
        return qkeras_output(xr, xq, self.emulate_residue, self.qnoise_factor, bool(self.use_ste))

    def fixed_point_type(self) -> FixedPointType | None:
        return self._value_type(signed=self.negative_slope != 0)

    def max_value(self) -> float | None:  # type: ignore[override]
        """QKeras's ``max()``."""
        if self.max_value_arg:
            return max(1.0, float(self.max_value_arg))
        return max(1.0, 2.0**self._max_exp)

    def min_value(self) -> float | None:
        """QKeras's ``min()`` (note: ``2**min_exp`` > 0 when negative_slope == 0)."""
        if self.negative_slope == 0:
            return 2.0**self._min_exp
        if self.bits - 1 > 0:
            return min(2.0**self._min_exp, -float(self.negative_slope) * 2.0 ** (self.bits - 1))
        return 2.0**self._min_exp
