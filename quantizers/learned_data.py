"""The data role of the learned-width quantizers: activations and the model input.

Split from ``learned_base`` (which holds the spec, the roles, materialisation and reporting) so
each file has one job. In training, integer bits come from a range tracked per group (``range``
buffer: running maximum of ``|x|``, or of ``relu(x)``) or, with ``int_bits="learned"``, from a
trainable ``i`` that saturates; in eval, values are rounded and saturated (or wrapped) into each
group's width — the exact deployed function, ``fixed_point_grid().quantize(x)``.
"""

from __future__ import annotations

import torch

from .learned_ops import F_MAX, F_MIN, DataRound, SaturatingRound, effective_frac, range_width

__all__ = ["DataWidths"]


class DataWidths:
    """Mixin of :class:`~hqrun.quantizers.learned_base.LearnedFixedPoint`: the data role.

    Expects ``f``, ``range`` (and ``i``, ``i_ready`` with ``int_bits="learned"``), ``relu``,
    ``signed``, ``granularity``, ``range_decay``, ``int_bits`` and ``overflow`` on ``self``.
    """

    def _reduce_dims(self, x: torch.Tensor) -> tuple[int, ...]:
        if self.granularity == "layer":
            return tuple(range(x.dim()))
        if self.granularity == "element" or x.dim() <= 2:
            return (0,)
        return (0,) + tuple(range(2, x.dim()))

    def _track_range(self, x: torch.Tensor) -> None:
        """Training without gradient: raise the range to this batch (as DataRound does)."""
        with torch.no_grad():
            v = x if self.relu else x.abs()
            if self.range_decay:
                self.range.mul_(1.0 - self.range_decay)
            top = torch.amax(v, dim=self._reduce_dims(x)).view(self.range.shape)
            torch.maximum(self.range, top, out=self.range)

    def _data_width(self, frac: torch.Tensor) -> torch.Tensor:
        """Per-group width at ``frac`` fractional bits (float32): the learned integer bits plus
        ``frac``, or the width holding the tracked range (counted in float64, exact for any
        code)."""
        if self.int_bits == "learned":
            return (self._learned_integer() + frac).clamp_min_(0.0)
        top = torch.round(self.range.double() * torch.exp2(frac.double()))
        return range_width(top, self.signed).float()

    def _learned_integer(self) -> torch.Tensor:
        return torch.round(self.i.detach()).clamp_(F_MIN, F_MAX)

    def _init_integer(self, x: torch.Tensor) -> None:
        """int_bits='learned': start from the integer bits the first training batch needs."""
        if self._i_ready or bool(self.i_ready):
            self._i_ready = True
            return
        self._track_range(x)
        with torch.no_grad():
            frac = effective_frac(self.f)
            top = torch.round(self.range.double() * torch.exp2(frac.double()))
            self.i.copy_(range_width(top, self.signed).float() - frac)
            self.i_ready.fill_(1.0)
        self._i_ready = True

    def _forward_learned_integer(self, x: torch.Tensor) -> torch.Tensor:
        """Training with trainable integer bits: saturate at the learned bounds (the bounds'
        derivative in ``i`` carries the saturation error), then round (HGQ's ``f`` gradient)."""
        self._init_integer(x)
        xq, bits = SaturatingRound.apply(x, self._parameters["f"], self._parameters["i"], self.signed)
        self.__dict__["_last_bits"] = bits
        return xq

    def _forward_data(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.int_bits == "range" and torch.is_grad_enabled():
            # the hot path: the range covers the batch, so rounding only, no overflow
            xq, bits = DataRound.apply(x, self._parameters["f"], self._buffers["range"], self._reduce_dims(x),
                                       self.range_decay, not self.relu, self.relu)
            self.__dict__["_last_bits"] = bits
            return xq
        if self.training and self.int_bits == "learned":
            if self._wants_grad(x):
                return self._forward_learned_integer(x)
            self._init_integer(x)
            with torch.no_grad():
                frac = effective_frac(self.f)
                return self._saturated(x.detach(), frac, self._data_width(frac))
        if self.training:
            if self._wants_grad(x):  # the range covers the batch: rounding only, no overflow
                xq, bits = DataRound.apply(x, self.f, self.range, self._reduce_dims(x),
                                           self.range_decay, self.signed, self.relu)
                self.__dict__["_last_bits"] = bits
                return xq
            self._track_range(x)
            self.__dict__["_last_bits"] = None
            frac = effective_frac(self.f)
            xr = torch.relu(x) if self.relu else x
            return torch.mul(xr, torch.exp2(frac)).round_().mul_(torch.exp2(-frac))
        self.__dict__["_last_bits"] = None
        frac = effective_frac(self.f)
        with torch.no_grad():
            xq = self._saturated(x.detach(), frac, self._data_width(frac))
        if x.requires_grad and torch.is_grad_enabled():  # straight through, value unchanged
            return xq + (x - x.detach())
        return xq

    def _saturated(self, x: torch.Tensor, frac: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
        """The eval-mode function: round to nearest even, then saturate or wrap into the width."""
        codes = torch.mul(x, torch.exp2(frac)).round_()
        lo, hi = self._code_bounds(width)
        if self.overflow == "WRAP":
            span = torch.exp2(width)
            codes = torch.where(width > 0, torch.remainder(codes - lo, span) + lo,
                                torch.zeros_like(codes))
        else:
            codes = torch.minimum(torch.maximum(codes, lo), hi)
        return codes.mul_(torch.exp2(-frac))

    def _code_bounds(self, width: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        live = width > 0
        if self.signed:
            half = torch.exp2(width - 1)
            return torch.where(live, -half, 0.0), torch.where(live, half - 1, 0.0)
        return torch.zeros_like(width), torch.where(live, torch.exp2(width) - 1, 0.0)
