"""1-bit quantizers: ``binary``, ``stochastic_binary`` and ``bernoulli`` (QKeras 0.9.0).

``binary`` outputs ``±alpha`` (``{0, alpha}`` with ``use_01``); 0 maps to ``+alpha``. With
``alpha=None`` QKeras uses ``tanh(x)`` as the straight-through surrogate, so the gradient is
``1 - tanh(x)**2``; with any other alpha it is 1. ``stochastic_binary`` samples the sign with
probability ``sigmoid(temperature * x)`` in training and is ``binary`` in eval mode, as QKeras at
inference. ``bernoulli`` samples ``{0, alpha}`` in *both* modes (QKeras has no inference branch).
"""

from __future__ import annotations

from typing import Any

import torch

from .base import Quantizer, alpha_max_value, check_alpha, check_number, po2_exponent, with_auto_po2_alpha
from .fixedpoint import FixedPointType
from .operand import Operand
from .ste import (EPSILON, channel_axes, get_scale, hard_sigmoid, native_scaled_kernel, qkeras_output,
                  round_through, sign_nonzero)

__all__ = ["binary", "stochastic_binary", "bernoulli"]


def _all_axes_keep(x: torch.Tensor, axes: list[int] | None) -> list[int]:
    return list(range(x.dim())) if axes is None else axes


def _alpha_type(alpha: Any, signed: bool) -> FixedPointType | None:
    """Type holding ``{-a, +a}`` (signed) or ``{0, a}`` (unsigned) for a power-of-two a."""
    if isinstance(alpha, str):
        return None
    exp = 0 if alpha is None else po2_exponent(float(alpha))
    if exp is None:
        return None
    if signed:
        return FixedPointType(2, 2 + exp, True)
    return FixedPointType(1, 1 + exp, False)


def _std(x: torch.Tensor, alpha: Any) -> torch.Tensor | float:
    """Per-channel population std (+eps) for string alphas, else 1 (QKeras's bernoulli idiom)."""
    if not isinstance(alpha, str):
        return 1.0
    axes = channel_axes(x.dim()) or [0]
    return torch.std(x, dim=axes, keepdim=True, unbiased=False) + EPSILON


def _stochastic_sign(xd: torch.Tensor, alpha: Any, temperature: float, use_real_sigmoid: Any) -> torch.Tensor:
    """±1 drawn with P(+1) = sigmoid(temperature * x / std) (hard sigmoid unless use_real_sigmoid)."""
    z = temperature * xd / _std(xd, alpha)
    p = torch.sigmoid(z) if use_real_sigmoid else hard_sigmoid(z)
    return sign_nonzero(p - torch.rand_like(xd))


class binary(Quantizer):  # noqa: N801 - QKeras name
    """Sign quantizer: ``alpha * sign(x)`` (0 -> +1), or ``{0, alpha}`` with ``use_01``."""

    name = "binary"

    def __init__(self, use_01: Any = False, alpha: Any = None,
                 use_stochastic_rounding: Any = False) -> None:
        super().__init__()
        self.use_01 = use_01
        self.bits = 1
        self.alpha = check_alpha(self.name, alpha)
        self.use_stochastic_rounding = use_stochastic_rounding

    def _binary(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        """QKeras's ``binary.__call__`` (also the eval branch of ``stochastic_binary``)."""
        xg = x
        stochastic = bool(getattr(self, "use_stochastic_rounding", False))
        native = None if stochastic else self._native_value(x)
        if native is not None:
            self.scale, xq = native
            return qkeras_output(x, xq, training)
        if stochastic and training:
            with torch.no_grad():
                axes = None if x.dim() == 1 else list(range(x.dim() - 1))
                m = torch.amax(torch.abs(x), dim=_all_axes_keep(x, axes), keepdim=True)
                m = torch.where(m > 1.0, torch.ones_like(m), m)
                f = 2 * m
            xg = f * round_through(x / f, True, precision=0.125, training=True)
        with torch.no_grad():
            k_sign = torch.sign(xg)
            if stochastic:
                if training:
                    fill = 2.0 * torch.round(torch.rand_like(k_sign)) - 1.0
                    k_sign = k_sign + (1.0 - torch.abs(k_sign)) * fill
                else:
                    k_sign = k_sign + (1.0 - torch.abs(k_sign))
            k_sign = k_sign + (1.0 - torch.abs(k_sign))
            if getattr(self, "use_01", False):
                k_sign = (k_sign + 1.0) / 2.0
        if self.alpha is None:
            xg = torch.tanh(xg)
        with torch.no_grad():
            scale = get_scale(self.alpha, xg.detach(), k_sign)
            self.scale = scale
            xq = scale * k_sign
        return qkeras_output(xg, xq, training and not (stochastic and training))

    def _native_value(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(scale, xq)`` of the deterministic alpha="auto"/"auto_po2" branch from one C loop
        (``hq_binary``: the same float32 operations), or None where it does not apply."""
        if not isinstance(self.alpha, str):
            return None
        return native_scaled_kernel(x, "hq_binary", int(self.alpha == "auto_po2"),
                                    int(bool(getattr(self, "use_01", False))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._binary(x, self.training)

    def fixed_point_type(self) -> FixedPointType | None:
        return _alpha_type(self.alpha, signed=not self.use_01)

    def operand(self) -> Operand:
        """+-1 (a sign: multiplications become XOR/muxes) or 0/1 with ``use_01`` (AND gates)."""
        use01 = bool(self.use_01)
        return Operand("binary01" if use01 else "binary", 1, 1, not use01, self.fixed_point_type())

    def max_value(self) -> float | None:
        return alpha_max_value(self.alpha)

    def min_value(self) -> float | None:
        if self.use_01:
            return 0.0
        return -self.max_value()  # type: ignore[operator]

    def for_kernel(self) -> Quantizer:
        return with_auto_po2_alpha(self)

    @property
    def is_stochastic(self) -> bool:
        return bool(self.use_stochastic_rounding)

    @property
    def straight_through(self) -> bool:
        """Gradient 1 with a scale (alpha); alpha=None passes it through tanh."""
        return self.alpha is not None and not self.is_stochastic


class stochastic_binary(binary):  # noqa: N801 - QKeras name
    """Stochastic sign in training (P(+1) = sigmoid(temperature * x / std)); ``binary`` in eval."""

    name = "stochastic_binary"

    def __init__(self, alpha: Any = None, temperature: float = 6.0,
                 use_real_sigmoid: Any = True) -> None:
        super().__init__(alpha=alpha)
        self.temperature = check_number(self.name, "temperature", temperature, False)
        self.use_real_sigmoid = use_real_sigmoid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self._binary(x, False)
        with torch.no_grad():
            xd = x.detach()
            q = _stochastic_sign(xd, self.alpha, self.temperature, self.use_real_sigmoid)
            scale = get_scale(self.alpha, xd, sign_nonzero(xd))
            self.scale = scale
            xq = scale * q
        return qkeras_output(x, xq, False)  # stochastic draw: keep it exactly on the grid

    def fixed_point_type(self) -> FixedPointType | None:
        return _alpha_type(self.alpha, signed=True)

    def min_value(self) -> float | None:
        return -self.max_value()  # type: ignore[operator]

    @property
    def is_stochastic(self) -> bool:
        return True


class bernoulli(Quantizer):  # noqa: N801 - QKeras name
    """``{0, alpha}`` sampled with P(1) = sigmoid(temperature * x / std), in every mode."""

    name = "bernoulli"

    def __init__(self, alpha: Any = None, temperature: float = 6.0,
                 use_real_sigmoid: Any = True) -> None:
        super().__init__()
        self.alpha = check_alpha(self.name, alpha)
        self.bits = 1
        self.temperature = check_number(self.name, "temperature", temperature, False)
        self.use_real_sigmoid = use_real_sigmoid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            xd = x.detach()
            q = (_stochastic_sign(xd, self.alpha, self.temperature, self.use_real_sigmoid) + 1.0) / 2.0
            q_ns = (sign_nonzero(xd) + 1.0) / 2.0
            scale = get_scale(self.alpha, xd, q_ns)
            self.scale = scale
            xq = scale * q
        return qkeras_output(x, xq, False)  # stochastic draw: keep it exactly on the grid

    def fixed_point_type(self) -> FixedPointType | None:
        return _alpha_type(self.alpha, signed=False)

    def operand(self) -> Operand:
        """0/1 values (AND gates in a multiplication)."""
        return Operand("binary01", 1, 1, False, self.fixed_point_type())

    def max_value(self) -> float | None:
        return alpha_max_value(self.alpha)

    def min_value(self) -> float | None:
        return 0.0

    def for_kernel(self) -> Quantizer:
        return with_auto_po2_alpha(self, bernoulli)

    @property
    def is_stochastic(self) -> bool:
        return True
