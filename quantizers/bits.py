"""``quantized_bits``: QKeras's uniform fixed-point quantizer (weights, biases, linear outputs).

Values are ``alpha * m_i * clip(round(x * m / m_i), -m + symmetric, m - 1) / m`` with
``m = 2**(bits - keep_negative)`` and ``m_i = 2**integer``: QKeras's ``integer`` excludes the sign
bit, so the output type is ``ap_fixed<bits, integer + 1>`` (``ap_ufixed<bits, integer>`` with
``keep_negative=False``). The gradient is 1 everywhere (no clipping), unlike ``quantized_relu``.
"""

from __future__ import annotations

from typing import Any

import torch

from hqrun.errors import FirmwareError

from .base import Quantizer, check_alpha, check_bits_integer, check_int, check_number, po2_exponent
from .fixedpoint import FixedPointType
from .lowering import Lowering
from .native import kernels_for
from .ste import (channel_axes, get_scale, po2_round, qkeras_output, round_through, same_bits,
                  sign_nonzero)

__all__ = ["quantized_bits"]


class _FastBits(torch.autograd.Function):
    """Deterministic quantized_bits with gradient 1, as few tensor passes as possible."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, c: float, lo: float, hi: float, inv: float,
                residue: bool) -> torch.Tensor:  # type: ignore[override]
        y = torch.mul(x, c)
        y.round_().clamp_(lo, hi).mul_(inv)
        if residue:  # QKeras's float32 value x + (xq - x)
            y.sub_(x).add_(x)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:  # type: ignore[override]
        return grad, None, None, None, None, None


class quantized_bits(Quantizer):  # noqa: N801 - QKeras name
    """Fixed-point quantizer with QKeras 0.9.0's arguments and semantics.

    Args:
        bits: total bits, sign included.
        integer: bits left of the binary point, sign excluded (QKeras convention).
        symmetric: drop the most negative code so the range is symmetric.
        keep_negative: signed (True) or clip negatives to 0.
        alpha: None or 1 (scale 1), another positive number (constant scale), "auto"
            (per-channel scale ``max|x| / (2**(bits-1) - 1)``) or "auto_po2" (per-channel
            power-of-two scale refined by 5 least-squares rounds). A string alpha forces
            ``symmetric=True`` as in QKeras.
        use_stochastic_rounding: stochastic rounding in training mode.
        scale_axis: channel axis for "auto"/"auto_po2" (default: last axis).
        qnoise_factor, use_ste: QKeras's partial-quantization knobs.
        var_name, use_variables: accepted for QKeras compatibility; no effect.
    """

    name = "quantized_bits"
    positional = 2
    elementwise = True  # unless alpha is "auto"/"auto_po2" (layers_core.is_elementwise checks)

    def __init__(self, bits: int = 8, integer: int = 0, symmetric: Any = 0,
                 keep_negative: Any = True, alpha: Any = None,
                 use_stochastic_rounding: Any = False, scale_axis: int | None = None,
                 qnoise_factor: float = 1.0, var_name: str | None = None, use_ste: Any = True,
                 use_variables: Any = False) -> None:
        super().__init__()
        self.bits, self.integer = check_bits_integer(
            self.name, bits, integer,
            "QKeras's integer counts the bits left of the binary point (sign excluded) and must be <= bits.",
        )
        self.alpha = check_alpha(self.name, alpha)
        self.symmetric = True if isinstance(self.alpha, str) else symmetric
        self.keep_negative = keep_negative
        self.use_stochastic_rounding = use_stochastic_rounding
        if scale_axis is not None:
            scale_axis = check_int(self.name, "scale_axis", scale_axis)
        self.scale_axis = scale_axis
        self.qnoise_factor = check_number(self.name, "qnoise_factor", qnoise_factor, False)
        self.var_name = var_name
        self.use_ste = use_ste
        self.use_variables = use_variables
        self._prepare()

    def _prepare(self) -> None:
        """Cache Python-float constants so forward does no Python arithmetic."""
        unsigned = self.bits - int(bool(self.keep_negative))
        self._unsigned = unsigned
        self._m = float(2.0**unsigned)
        self._m_i = float(2.0**self.integer)
        self._c = self._m / self._m_i
        self._inv = self._m_i / self._m
        self._lo = -0.0 if not self.keep_negative else (-self._m + int(bool(self.symmetric)))
        self._hi = self._m - 1.0
        self._scale = None if self.alpha is None or isinstance(self.alpha, str) else float(self.alpha)
        self._fast = (
            unsigned > 0
            and not isinstance(self.alpha, str)
            and (self._scale is None or self._scale == 1.0)
            and not self.use_stochastic_rounding
            and self.qnoise_factor == 1.0
            and bool(self.use_ste)
        )

    # ---------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._fast:
            if not (x.requires_grad and torch.is_grad_enabled()):
                lib = kernels_for(x) if x.is_contiguous() else None
                if lib is not None:  # the same value in one C loop (quantizer_kernels.c)
                    return self._c_value(lib, x, self.training)
                with torch.no_grad():
                    return _FastBits.forward(None, x, self._c, self._lo, self._hi, self._inv,
                                             self.training)
            if self.training:
                # x - (x - xq) == x + (xq - x) bit for bit (round-to-nearest is symmetric):
                # QKeras's value with its float32 residue, gradient exactly 1, one autograd node.
                # sub(..., alpha=inv) multiplies by a power of two (exact) and subtracts in one op.
                xd = x.detach()  # cheaper than a no_grad() block for these tiny weight tensors
                lib = kernels_for(xd) if xd.is_contiguous() else None
                if lib is not None:  # the same r in one C loop (quantizer_kernels.c)
                    r = torch.empty_like(xd)
                    lib.hq_bits_residue(xd.data_ptr(), r.data_ptr(), self._c, self._lo, self._hi,
                                        self._inv, xd.numel())
                    return x - r
                r = torch.mul(xd, self._c).round_().clamp_(self._lo, self._hi)
                torch.sub(xd, r, alpha=self._inv, out=r)  # r := x - xq
                return x - r
            return _FastBits.apply(x, self._c, self._lo, self._hi, self._inv, False)
        if isinstance(self.alpha, str):
            return self._forward_auto(x)
        return self._forward_general(x)

    def _forward_general(self, x: torch.Tensor) -> torch.Tensor:
        training = self.training
        with torch.no_grad():
            if self._unsigned > 0:
                p = x * self._c
                r = round_through(p, bool(self.use_stochastic_rounding), precision=1.0,
                                  training=training)
                xq = self._m_i * torch.clamp(r, self._lo, self._hi) / self._m
            else:  # 1 bit with keep_negative: a sign quantizer (0 -> +1)
                xq = sign_nonzero(x)
            scale = 1.0 if self._scale is None else self._scale
            self.scale = scale
            xq = scale * xq
        return qkeras_output(x, xq, self.emulate_residue, self.qnoise_factor, bool(self.use_ste))

    def _forward_auto(self, x: torch.Tensor) -> torch.Tensor:
        """alpha="auto"/"auto_po2", following QKeras 0.9.0's graph operation by operation."""
        training = self.training
        m_i = self._m_i
        with torch.no_grad():
            xs = x.detach() / m_i
            axes = channel_axes(xs.dim(), self.scale_axis)
            if axes is None:
                axes = [0]
            levels = float((2 ** (self.bits - 1) - 1) * 2)  # symmetric is forced for "auto*"
            half = levels / 2
            scale = torch.amax(torch.abs(xs), dim=axes, keepdim=True) * 2 / levels
            if self.alpha == "auto_po2":
                scale = po2_round(scale)
                abs_xs, sign_xs = torch.abs(xs), torch.sign(xs)
                for _ in range(5):
                    v = torch.floor(abs_xs / scale + 0.5)
                    z = sign_xs * torch.where(v < half, v, half)
                    new = get_scale("auto_po2", xs, z, self.scale_axis)
                    # A fixed point (same bits) repeats forever: the remaining rounds are no-ops.
                    done = same_bits(new, scale)
                    scale = new
                    if done:
                        break
            else:
                v = torch.floor(torch.abs(xs) / scale + 0.5)
                z = torch.sign(xs) * torch.where(v < half, v, torch.full_like(v, half))
            scale = scale * self._m
            xq = m_i * z / self._m
            self.scale = scale
            xq = scale * xq
        # QKeras rebuilds x as m_i * (x / m_i) before the straight-through sum.
        xr = m_i * (x / m_i)
        return qkeras_output(xr, xq, training, self.qnoise_factor, bool(self.use_ste))

    # ------------------------------------------------------------- reporting
    def channel_lsb(self) -> torch.Tensor | None:
        """Per-channel output step of the last forward with alpha="auto"/"auto_po2".

        Outputs are ``z * channel_lsb()`` with integer ``|z| <= 2**(bits-1) - 1``. (``self.scale``
        keeps QKeras's meaning, ``step * 2**(bits - keep_negative) / 2**integer``, for code that
        ports QKeras's ``get_weight_scale``.) None before the first forward or for fixed alphas.
        """
        if not isinstance(self.alpha, str) or not torch.is_tensor(self.scale):
            return None
        return self.scale * (self._m_i / self._m)

    def channel_fixed_point_types(self) -> list[FixedPointType] | None:
        """One exact type per channel for alpha="auto_po2" (power-of-two steps), else None.

        Channel c holds ``ap_fixed<bits, log2(step_c) + bits, RND_CONV, SAT_SYM>`` values; the
        firmware can store codes with a per-channel shift. Needs one forward first.
        """
        step = self.channel_lsb()
        if step is None or self.alpha != "auto_po2":
            return None
        types = []
        for s in step.reshape(-1).tolist():
            e = po2_exponent(s)
            if e is None:  # a zero channel: 2**round(log2(eps)) is still a power of two
                return None
            types.append(FixedPointType(self.bits, e + self.bits, True, "RND_CONV", "SAT_SYM"))
        return types

    def fixed_point_type(self) -> FixedPointType | None:
        if isinstance(self.alpha, str):
            return None
        alpha_exp = 0 if self._scale is None else po2_exponent(self._scale)
        if alpha_exp is None:
            return None
        overflow = "SAT_SYM" if self.symmetric and self.keep_negative else "SAT"
        if self._unsigned <= 0:  # {-1, +1} * alpha: held by a 2-bit signed integer type
            return FixedPointType(2, 2 + alpha_exp, True)
        if self.keep_negative:
            return FixedPointType(self.bits, self.integer + 1 + alpha_exp, True, "RND_CONV", overflow)
        return FixedPointType(self.bits, self.integer + alpha_exp, False, "RND_CONV", "SAT")

    def lowering(self) -> Lowering:
        """A cast to the output type: in firmware, the result type of the layer it follows.

        Only with scale 1: ``alpha`` scales the *rounded* value (0.5 -> 1.0 under alpha=2), which
        is no cast onto the scaled grid, and a 1-bit quantizer is a sign (0 -> +1), not a cast.
        """
        if self._scale not in (None, 1.0) or self._unsigned <= 0:
            raise FirmwareError(
                f"activation {self} is not a plain cast (alpha scales the rounded value, or one "
                "bit makes it a sign function), so no result type reproduces it. Use "
                "quantized_bits(bits,integer,alpha=1) with at least 2 bits for activations."
            )
        grid = self.fixed_point_grid()
        if grid is None:
            raise FirmwareError(
                f"activation {self} has no fixed-point grid (alpha scale); use alpha=1 for "
                "activation quantizers."
            )
        return Lowering("quant", grid)

    def max_value(self) -> float | None:
        """QKeras's ``max()``: ``max(1, 2**integer)`` (an upper bound, not the largest code)."""
        if self._unsigned > 0:
            return max(1.0, 2.0**self.integer)
        return 1.0

    def min_value(self) -> float | None:
        """QKeras's ``min()``: 0 unsigned, else ``-max(1, 2**integer)``."""
        if not self.keep_negative:
            return 0.0
        return -self.max_value()  # type: ignore[operator]

    def for_kernel(self) -> "quantized_bits":
        if self.alpha is not None:
            return self
        cfg = self.get_config()
        cfg.update(alpha="auto_po2", symmetric=True)
        return quantized_bits(**cfg)

    @property
    def is_stochastic(self) -> bool:
        return bool(self.use_stochastic_rounding) and not isinstance(self.alpha, str)

    def fast_constants(self) -> tuple[float, float, float, float] | None:
        """``(c, lo, hi, inv)`` of the fast path (what ``hq_bits_value`` takes), or None."""
        return (self._c, self._lo, self._hi, self._inv) if self._fast else None

    @property
    def inference_cacheable(self) -> bool:
        """The fast path's one C loop costs less than the cache's check: not cached."""
        return not self._fast and not self.is_stochastic

    @property
    def straight_through(self) -> bool:
        """Gradient 1 (every alpha: "auto*" rebuilds x as ``2**k * (x / 2**k)``, exact)."""
        return bool(self.use_ste) and self.qnoise_factor == 1.0 and not self.is_stochastic

    def training_value(self, x: torch.Tensor) -> torch.Tensor:
        """The fast path's ``x - (x - xq)`` in one C loop where it applies."""
        lib = kernels_for(x) if self._fast and self.training and x.is_contiguous() else None
        if lib is None:
            return super().training_value(x)
        return self._c_value(lib, x, True)

    def _c_value(self, lib: Any, x: torch.Tensor, residue: bool) -> torch.Tensor:
        """The fast path's value of contiguous float32 ``x`` from ``hq_bits_value``: with
        QKeras's training residue ``x - (x - xq)``, or ``xq`` itself."""
        out = torch.empty_like(x, requires_grad=False)
        lib.hq_bits_value(x.data_ptr(), out.data_ptr(), self._c, self._lo, self._hi, self._inv,
                          int(residue), x.numel())
        return out

