"""``quantized_relu``: QKeras's unsigned fixed-point ReLU (the usual hidden activation).

Values are ``m_i * clip(round(x * m / m_i) / m, 0, 1 - 1/m)`` with ``m = 2**bits`` and
``m_i = 2**integer``: the output type is ``ap_ufixed<bits, integer>`` with half-to-even rounding
and saturation. Unlike ``quantized_bits``, the straight-through gradient is clipped: it is the
gradient of ``where(x <= max, relu(x), max)``, i.e. 1 on ``0 < x <= 2**integer - lsb`` and 0
elsewhere (0 at x == 0, as TensorFlow's ReLU gradient).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hqrun.errors import FirmwareError

from .base import Quantizer, check_bits_integer, check_negative_slope, check_number
from .fixedpoint import FixedPointType
from .lowering import Lowering
from .native import kernels_for
from .operand import Operand
from .ste import hard_sigmoid, qkeras_output, round_through

__all__ = ["quantized_relu"]


def _next_up(value: float, dtype: torch.dtype) -> float:
    """Smallest number of ``dtype`` above ``value`` (as a Python float)."""
    if dtype == torch.float64:
        return float(np.nextafter(np.float64(value), np.inf))
    if dtype == torch.float16:
        return float(np.nextafter(np.float16(value), np.float16(np.inf)))
    if dtype == torch.bfloat16:  # no numpy type: step by one bfloat16 ulp
        t = torch.tensor(value, dtype=torch.bfloat16)
        return float(torch.nextafter(t, torch.tensor(float("inf"), dtype=torch.bfloat16)))
    return float(np.nextafter(np.float32(value), np.float32(np.inf)))


class quantized_relu(Quantizer):  # noqa: N801 - QKeras name
    """Quantized ReLU with QKeras 0.9.0's arguments and semantics.

    Args:
        bits: total bits (no sign bit unless ``negative_slope`` is non-zero).
        integer: bits left of the binary point.
        use_sigmoid: quantize ``2 * hard_sigmoid(x / 2**integer) - 1`` instead (QKeras quirk).
        negative_slope: 0 or a power of two; then one bit is the sign and negative inputs map to
            ``slope * x`` quantized on the same grid.
        use_stochastic_rounding: stochastic rounding in training (QKeras rounds to *half* an LSB
            there, a quirk kept).
        relu_upper_bound: clip of the float ReLU; only used when ``is_quantized_clip=False``.
        is_quantized_clip: clip the straight-through ReLU at the largest code (default).
        qnoise_factor, use_ste: QKeras's partial-quantization knobs.
        var_name, use_variables: accepted for QKeras compatibility; no effect.
    """

    name = "quantized_relu"
    float_function = "relu"
    positional = 2
    elementwise = True

    def __init__(self, bits: int = 8, integer: int = 0, use_sigmoid: Any = 0,
                 negative_slope: float = 0.0, use_stochastic_rounding: Any = False,
                 relu_upper_bound: float | None = None, is_quantized_clip: Any = True,
                 qnoise_factor: float = 1.0, var_name: str | None = None, use_ste: Any = True,
                 use_variables: Any = False) -> None:
        super().__init__()
        self.bits, self.integer = check_bits_integer(
            self.name, bits, integer, "integer counts the bits left of the binary point and must be <= bits."
        )
        self.use_sigmoid = use_sigmoid
        self.negative_slope = check_negative_slope(self.name, negative_slope)
        self.use_stochastic_rounding = use_stochastic_rounding
        self.relu_upper_bound = check_number(self.name, "relu_upper_bound", relu_upper_bound)
        self.is_quantized_clip = is_quantized_clip
        self.qnoise_factor = check_number(self.name, "qnoise_factor", qnoise_factor, False)
        self.var_name = var_name
        self.use_ste = use_ste
        self.use_variables = use_variables
        self._prepare()

    def _prepare(self) -> None:
        nsb = self.bits - (1 if self.negative_slope != 0 else 0)
        self._m = float(2.0**nsb)
        self._m_i = float(2.0**self.integer)
        self._m_f = float(2.0 ** (self.integer - nsb))
        self._bound = self._m_i - self._m_f
        self._c = self._m / self._m_i
        self._inv = self._m_i / self._m
        # hardtanh's gradient is 1 on the open interval (0, upper); with upper the next float32
        # above the bound that is exactly QKeras's 0 < x <= bound (TF's ReLU gives 0 at x == 0).
        self._upper = {torch.float32: _next_up(self._bound, torch.float32)}
        self._fast = (
            self.negative_slope == 0
            and not self.use_sigmoid
            and not self.use_stochastic_rounding
            and bool(self.is_quantized_clip)
            and self.qnoise_factor == 1.0
            and bool(self.use_ste)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._fast:
            if x.requires_grad and torch.is_grad_enabled():
                upper = self._upper.get(x.dtype)
                if upper is None:
                    upper = self._upper[x.dtype] = _next_up(self._bound, x.dtype)
                # h = clip(x, 0, upper) carries the clipped straight-through gradient; h*c never
                # exceeds the top code after rounding, so no clamp is needed; h + (xq - h) == xq
                # exactly (both lie within a factor 2 of each other or xq == 0).
                h = F.hardtanh(x, 0.0, upper)
                lib = kernels_for(x) if x.is_contiguous() else None
                if lib is not None:  # r := h - xq in one C loop from x (quantizer_kernels.c)
                    r = torch.empty_like(h)
                    lib.hq_relu_residue(x.data_ptr(), r.data_ptr(), self._c, self._inv, upper,
                                        self._m - 1.0, int(self.bits > 20), x.numel())
                    return h.sub_(r)
                hd = h.detach()
                r = torch.mul(hd, self._c).round_()
                if self.bits > 20:  # upper * c may round past the top code
                    r.clamp_(0.0, self._m - 1.0)
                torch.sub(hd, r, alpha=self._inv, out=r)  # r := h - xq (xq = r * inv, exact)
                # In place (hardtanh's backward needs its input, not h): one allocation fewer
                # per call, which matters for the large activation tensors.
                return h.sub_(r)
            lib = kernels_for(x) if x.is_contiguous() else None
            if lib is not None:  # the same value in one C loop (hq_relu_value's comment)
                return self.c_value(lib, x)
            with torch.no_grad():
                return torch.mul(x, self._c).round_().clamp_(0.0, self._m - 1.0).mul_(self._inv)
        return self._forward_general(x)

    def clipped_ste_constants(self) -> tuple[float, float, float, float, int] | None:
        """``(c, inv, upper, top, clip_top)`` of the float32 fast path (what the C loops
        ``hq_relu_value``/``hq_relu_grad_`` take), or None when this ReLU has no fast path."""
        if not self._fast:
            return None
        return (self._c, self._inv, self._upper[torch.float32], self._m - 1.0,
                int(self.bits > 20))

    def c_value(self, lib: Any, x: torch.Tensor) -> torch.Tensor:
        """The fast path's value of contiguous float32 ``x`` from the C loop ``hq_relu_value``
        (training and inference give the same value; the fused chains call it too)."""
        out = torch.empty_like(x, requires_grad=False)
        lib.hq_relu_value(x.data_ptr(), out.data_ptr(), *self.clipped_ste_constants(), x.numel())
        return out

    def _relu(self, x: torch.Tensor) -> torch.Tensor:
        if self.negative_slope == 0:
            return torch.relu(x)
        return F.leaky_relu(x, float(self.negative_slope))

    def _forward_general(self, x: torch.Tensor) -> torch.Tensor:
        training = self.training
        slope = float(self.negative_slope)
        stochastic = bool(self.use_stochastic_rounding)
        m, m_i = self._m, self._m_i
        if self.is_quantized_clip:
            x_u = torch.where(x <= self._bound, self._relu(x), torch.full_like(x, self._bound))
        elif self.relu_upper_bound is not None:
            ub = float(self.relu_upper_bound)
            x_u = torch.where(x <= ub, self._relu(x), torch.full_like(x, ub))
        else:
            x_u = self._relu(x)
        with torch.no_grad():
            xd = x.detach()
            if self.use_sigmoid:
                p = hard_sigmoid(xd / m_i) * m
                r = round_through(p, stochastic, training=training)
                xq = m_i * torch.clamp(2.0 * (r / m) - 1.0, 0.0, 1.0 - 1.0 / m)
                if slope > 0:
                    neg_factor = 1 / (slope * m)
                    rn = round_through(p * slope, stochastic, training=training)
                    xq = xq + (m_i * slope) * torch.clamp(2.0 * (rn * neg_factor) - 1.0, -1.0, 0.0)
            else:
                p = xd * m / m_i
                r = round_through(p, stochastic, training=training)
                xq = m_i * torch.clamp(r / m, 0.0, 1.0 - 1.0 / m)
                if slope > 0:
                    neg_factor = 1 / (slope * m)
                    rn = round_through(p * slope, stochastic, training=training)
                    xq = xq + (m_i * slope) * torch.clamp(rn * neg_factor, -1.0, 0.0)
            if self.relu_upper_bound and not self.is_quantized_clip:
                ub = float(self.relu_upper_bound)
                xq = torch.where(xq <= ub, xq, torch.full_like(xq, ub))
        return qkeras_output(x_u, xq, self.emulate_residue, self.qnoise_factor, bool(self.use_ste))

    # ------------------------------------------------------------- reporting
    def fixed_point_type(self) -> FixedPointType | None:
        signed = self.negative_slope != 0
        fpt = FixedPointType(self.bits, self.integer + (1 if signed else 0), signed, "RND_CONV", "SAT")
        ub = self.relu_upper_bound
        if ub and not self.is_quantized_clip and not fpt.contains(float(ub)) and ub < fpt.max_value:
            return None  # outputs clipped to an off-grid upper bound
        return fpt

    def operand(self) -> Operand:
        """Unsigned fixed point (signed with a negative slope); QTools treats a 1-bit ReLU with
        one integer bit as 0/1."""
        kind = "binary01" if self.bits == 1 and self.integer == 1 else "fixed"
        return Operand(kind, self.bits, self.integer, self.negative_slope != 0,
                       self.fixed_point_type())

    def lowering(self) -> Lowering:
        """``max(x, 0)`` then the cast to ``ap_ufixed<bits, integer>`` (round half to even,
        saturate) — what hls4ml's ReLU plus a result type computes."""
        if self.negative_slope != 0 or self.use_sigmoid:
            raise FirmwareError(
                f"{self} is a leaky or sigmoid-shaped quantized_relu, which hls4ml does not "
                "reproduce exactly. Use quantized_relu(bits,integer) without "
                "negative_slope/use_sigmoid."
            )
        grid = self.fixed_point_grid()
        if grid is None:
            raise FirmwareError(f"{self} has no fixed-point grid (relu_upper_bound off the grid); "
                                "use quantized_relu(bits,integer) without relu_upper_bound.")
        return Lowering("relu", grid)

    def max_value(self) -> float | None:
        """QKeras's ``max()``: ``max(1, 2**integer)``."""
        unsigned = self.bits - (1 if self.negative_slope != 0 else 0)
        return max(1.0, 2.0**self.integer) if unsigned > 0 else 1.0

    def min_value(self) -> float | None:
        """QKeras's ``min()``: 0, or ``-slope * 2**integer`` with a negative slope."""
        if self.negative_slope == 0:
            return 0.0
        if self.bits - 1 > 0:
            return min(-0.0, -self.negative_slope * 2.0**self.integer)
        return -1.0

    @property
    def is_stochastic(self) -> bool:
        return bool(self.use_stochastic_rounding)
