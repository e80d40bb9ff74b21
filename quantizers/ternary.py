"""2-bit quantizers: ``ternary`` and ``stochastic_ternary`` (QKeras 0.9.0): ``{-a, 0, +a}``.

``ternary`` with a fixed alpha zeroes ``|x| < threshold`` (default 0.33) and outputs
``alpha * sign(x)`` elsewhere; with ``alpha="auto"/"auto_po2"`` the scale and threshold are
iterated per channel (``number_of_unrolls`` rounds). With ``alpha=None`` the straight-through
surrogate is ``tanh(x)`` (gradient ``1 - tanh**2``), otherwise the gradient is 1.
``stochastic_ternary`` samples in training (QKeras only supports string alphas there) and is
``ternary`` in eval mode.
"""

from __future__ import annotations

from typing import Any

import torch

from hqrun.errors import QuantizerSpecError

from .base import (Quantizer, alpha_max_value, check_alpha, check_int, check_number, po2_exponent,
                   with_auto_po2_alpha)
from .fixedpoint import FixedPointType
from .operand import Operand
from .ste import (EPSILON, channel_axes, get_scale, hard_sigmoid, native_scaled_kernel, po2_round,
                  qkeras_output, round_through, same_bits, sign_nonzero)

__all__ = ["ternary", "stochastic_ternary"]


def _amax_keep(x: torch.Tensor, axes: list[int] | None) -> torch.Tensor:
    dims = list(range(x.dim())) if axes is None else axes
    return torch.amax(torch.abs(x), dim=dims, keepdim=True)


class ternary(Quantizer):  # noqa: N801 - QKeras name
    """Ternary quantizer ``{-alpha, 0, +alpha}``."""

    name = "ternary"

    def __init__(self, alpha: Any = None, threshold: float | None = None,
                 use_stochastic_rounding: Any = False, number_of_unrolls: int = 5) -> None:
        super().__init__()
        self.bits = 2
        self.alpha = check_alpha(self.name, alpha)
        self.threshold = check_number(self.name, "threshold", threshold)
        self.use_stochastic_rounding = use_stochastic_rounding
        self.number_of_unrolls = check_int(self.name, "number_of_unrolls", number_of_unrolls, 0)
        self._check_combination()

    def _check_combination(self) -> None:
        # QKeras asserts these at call time; hqrun rejects them when the spec is built.
        if isinstance(self.alpha, str) and self.threshold is not None:
            raise QuantizerSpecError(
                f"{self.name}: argument threshold={self.threshold!r} cannot be combined with "
                f"alpha={self.alpha!r} (the threshold is derived from the scale); drop threshold."
            )
        if not isinstance(self.alpha, str) and self.use_stochastic_rounding:
            raise QuantizerSpecError(
                f"{self.name}: argument use_stochastic_rounding needs alpha='auto' or "
                "'auto_po2' (QKeras supports stochastic rounding only for weight scales)."
            )

    def _ternary(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        """QKeras's ``ternary.__call__``."""
        alpha = self.alpha
        stochastic = bool(getattr(self, "use_stochastic_rounding", False))
        native = None if stochastic and training else self._native_scale_search(x)
        if native is not None:
            self.scale, xq = native
            return qkeras_output(x, xq, training)
        with torch.no_grad():
            xd = x.detach()
            scale: Any = 1.0 if alpha is None or isinstance(alpha, str) else float(alpha)
            if isinstance(alpha, str):
                axes = None if xd.dim() == 1 else list(range(xd.dim() - 1))
                m = _amax_keep(xd, axes)
                scale = 2 * m / 3.0
                if alpha == "auto_po2":
                    scale = po2_round(scale)
                draws = stochastic and training
                for _ in range(self.number_of_unrolls):
                    thres = scale / 2.0
                    v = scale * round_through(xd / scale, stochastic, precision=1.0 / 3.0,
                                              training=training)
                    q = (torch.abs(v) >= thres).to(xd.dtype) * torch.sign(xd)
                    new = get_scale(alpha, xd, q)
                    # A fixed point (the same scale, bit for bit) repeats in every later round
                    # when the rounding is deterministic: those rounds are no-ops.
                    done = not draws and same_bits(new, scale)
                    scale = new
                    if done:
                        break
                if self.number_of_unrolls == 0:  # QKeras would fail (q undefined)
                    raise QuantizerSpecError(
                        f"{self.name}: number_of_unrolls=0 is not usable with alpha={alpha!r}."
                    )
            else:
                thres = 0.33 if self.threshold is None else float(self.threshold)
                q = (torch.abs(xd) >= thres).to(xd.dtype) * torch.sign(xd)
            self.scale = scale
            xq = scale * q
        xg = torch.tanh(x) if alpha is None else x
        return qkeras_output(xg, xq, training and not (stochastic and training))

    def _native_scale_search(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(scale, xq)`` of the deterministic alpha="auto"/"auto_po2" branch from one C loop
        (``hq_ternary``: the same float32 operations, TensorFlow-order means), or None where it
        does not apply (other alphas, a 1-D tensor, not float32 on the CPU, no compiler)."""
        if not isinstance(self.alpha, str) or self.number_of_unrolls < 1:
            return None
        return native_scaled_kernel(x, "hq_ternary", int(self.alpha == "auto_po2"),
                                    int(self.number_of_unrolls))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._ternary(x, self.training)

    def fixed_point_type(self) -> FixedPointType | None:
        if isinstance(self.alpha, str):
            return None
        exp = 0 if self.alpha is None else po2_exponent(float(self.alpha))
        return None if exp is None else FixedPointType(2, 2 + exp, True)

    def operand(self) -> Operand:
        """-1/0/+1 (multiplications become muxes)."""
        return Operand("ternary", 2, 2, True, self.fixed_point_type())

    def max_value(self) -> float | None:
        return alpha_max_value(self.alpha)

    def min_value(self) -> float | None:
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


class stochastic_ternary(ternary):  # noqa: N801 - QKeras name
    """Stochastic ternary in training (needs alpha='auto'/'auto_po2'); ``ternary`` in eval."""

    name = "stochastic_ternary"

    def __init__(self, alpha: Any = None, threshold: float | None = None,
                 temperature: float = 8.0, use_real_sigmoid: Any = True,
                 number_of_unrolls: int = 5) -> None:
        if threshold == 1.0:
            raise QuantizerSpecError(
                "stochastic_ternary: argument threshold=1.0 is not allowed (QKeras asserts it)."
            )
        Quantizer.__init__(self)  # not ternary.__init__: its stochastic-rounding check differs
        self.bits = 2
        self.alpha = check_alpha(self.name, alpha)
        self.threshold = check_number(self.name, "threshold", threshold)
        self.use_stochastic_rounding = False
        self.number_of_unrolls = check_int(self.name, "number_of_unrolls", number_of_unrolls, 0)
        self.temperature = check_number(self.name, "temperature", temperature, False)
        self.use_real_sigmoid = use_real_sigmoid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self._ternary(x, False)
        if not isinstance(self.alpha, str):
            raise QuantizerSpecError(
                f"{self}: QKeras 0.9.0 defines training-mode stochastic_ternary only for "
                "alpha='auto' or 'auto_po2' (QKeras's QDense sets 'auto_po2' for kernels; use "
                "for_kernel() or give alpha explicitly), or call .eval() for the ternary path."
            )
        with torch.no_grad():
            xd = x.detach()
            axes = channel_axes(xd.dim()) or [0]
            x_std = torch.std(xd, dim=axes, keepdim=True, unbiased=False)
            m = torch.amax(torch.abs(xd), dim=axes, keepdim=True)
            scale: Any = 2.0 * m / 3.0
            if self.alpha == "auto_po2":
                scale = po2_round(scale)
            for _ in range(self.number_of_unrolls):
                t = scale / 2.0
                q_ns = (torch.abs(xd) >= t).to(xd.dtype) * torch.sign(xd)
                scale = get_scale(self.alpha, xd, q_ns)
            x_norm = xd / (x_std + EPSILON)
            t = scale / (2.0 * (x_std + EPSILON))
            if self.use_real_sigmoid:
                p0 = torch.sigmoid(self.temperature * (x_norm - t))
                p1 = torch.sigmoid(self.temperature * (x_norm + t))
            else:
                p0 = hard_sigmoid(self.temperature * (x_norm - t))
                p1 = hard_sigmoid(self.temperature * (x_norm + t))
            r0 = torch.rand_like(p0)
            r1 = torch.rand_like(p1)
            q = (sign_nonzero(p0 - r0) + sign_nonzero(p1 - r1)) / 2.0
            self.scale = scale
            xq = scale * q
        return qkeras_output(x, xq, False)  # stochastic draw: keep it exactly on the grid

    @property
    def is_stochastic(self) -> bool:
        return True
