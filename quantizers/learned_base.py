"""``LearnedFixedPoint``: the shared machinery of the learned-width quantizers.

Every element (or channel, or the whole tensor: the *granularity*) owns a trainable number of
fractional bits ``f``; the integer bits are not trained but read off the data:

* **weights** (a layer's ``kernel``/``bias`` slot): each element's integer bits are the fewest
  that hold its own quantized code (two's complement), so a width is exactly what the constant
  costs in hardware, and a weight whose code rounds to 0 has width 0 — it is *pruned*;
* **activations** (``activation`` slots, the input layer): a running maximum of ``|x|`` (of ``x``
  after ReLU for :class:`learned_relu`) per group is tracked in training mode and frozen in eval
  mode; the integer bits are the fewest that hold that range at the current ``f``. In training
  the range always covers the batch, so nothing saturates; in eval, inputs beyond it saturate
  (``overflow="SAT"``, default) or wrap (``"WRAP"``).

The role comes from the slot the quantizer is placed in (:meth:`for_slot`); a quantizer used on
its own quantizes data (batch axis first). Parameter shapes depend on the tensor quantized, so
they are created ("materialised") on the first call — ``hqrun.models.build_model`` does that
with a dry run on zeros, before any optimizer or state dict sees the model. The state dict then
holds ``f`` and either the tracked ``range`` (activations) or a snapshot of the last quantized
weight's per-element ``width`` and ``frac`` (weights), i.e. everything the per-element
fixed-point types are made of (:meth:`fixed_point_grid`).

Training mode: values are exactly on the grid (no float residue), the input gradient is straight
through (ReLU's for :class:`learned_relu`), and ``f`` gets HGQ's surrogate gradient (see
``learned_ops``). Eval mode: the exact deployed function, bit for bit equal to
``fixed_point_grid().quantize(x)``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from hqrun.errors import FirmwareError, QuantizerSpecError

from .base import Quantizer, check_number
from .fixedpoint import FixedPointType
from .grid import FixedPointGrid
from .learned_data import DataWidths
from .learned_ops import (F_LIMIT, F_MAX, F_MIN, LearnedLinear, WeightRound, code_width,
                          effective_frac)
from .lowering import Lowering

__all__ = ["LearnedFixedPoint", "GRANULARITIES", "OVERFLOWS", "INTEGER_MODES", "WEIGHT_SLOTS",
           "DATA_SLOTS"]

#: Granularities of the trainable fractional bits.
GRANULARITIES = ("element", "channel", "layer")
#: Overflow of activations beyond their tracked range in eval mode.
OVERFLOWS = ("SAT", "WRAP")
#: Where activations' integer bits come from: the tracked range, or trained (with saturation).
INTEGER_MODES = ("range", "learned")
#: Plan slots whose tensor is a trained weight, and slots whose tensor is data.
WEIGHT_SLOTS = ("kernel", "bias")
DATA_SLOTS = ("activation",)


class LearnedFixedPoint(DataWidths, Quantizer):
    """Base of :class:`learned_bits` and :class:`learned_relu` (see the module docstring).

    Args:
        init_frac: initial fractional bits (HGQ2's default for weights and activations is 6).
        granularity: "element" (one ``f`` per element; per sample position for activations),
            "channel" (per output channel of a kernel, per channel of a channels-first activation;
            per element for 1-D tensors) or "layer" (one ``f``).
        overflow: "SAT" (saturate) or "WRAP" (two's-complement wrap) for activations beyond the
            tracked range in eval mode. Weights never overflow (their integer bits fit each value).
        range_decay: per training step, the tracked activation range shrinks by this fraction
            before the batch's maximum is taken in (0: a plain running maximum).
        int_bits: activations only. "range" (default): integer bits cover the tracked range, so
            training never saturates. "learned": integer bits are a trainable parameter too
            (initialised from the first training batch's range), values beyond them saturate in
            training as in eval, and their gradient comes from the saturation (the clip bound's
            derivative) against the cost penalty — so rare outliers stop costing bits on every
            sample (HGQ2's trainable-integer ``SAT`` quantizers). Needs ``overflow="SAT"``.
    """

    positional = 0
    elementwise = True
    #: Whether values pass a ReLU before unsigned quantization (subclasses set it).
    relu: ClassVar[bool] = False
    #: The training loops' weight-constraint hook (models/constraints.py) clips ``f`` to
    #: ``[-F_LIMIT, F_LIMIT]`` after every optimizer step (see :meth:`constraints`).
    constrained_params: ClassVar[dict[str, str]] = {"f": "f"}

    def __init__(self, init_frac: float = 6.0, granularity: str = "element", overflow: str = "SAT",
                 range_decay: float = 0.0, int_bits: str = "range") -> None:
        super().__init__()
        self.init_frac = check_number(self.name, "init_frac", init_frac, allow_none=False)
        if not F_MIN <= self.init_frac <= F_MAX:
            raise QuantizerSpecError(
                f"{self.name}: init_frac={init_frac!r} is outside [{F_MIN}, {F_MAX}]; give the "
                "initial number of fractional bits, e.g. init_frac=6."
            )
        if granularity not in GRANULARITIES:
            raise QuantizerSpecError(
                f"{self.name}: granularity={granularity!r} is unknown; use one of "
                f"{', '.join(GRANULARITIES)} (one trainable width per element, per channel, or per layer)."
            )
        self.granularity = granularity
        ovf = str(overflow).upper()
        if ovf not in OVERFLOWS:
            raise QuantizerSpecError(
                f"{self.name}: overflow={overflow!r} is unknown; use 'SAT' (saturate, default) or "
                "'WRAP' (two's-complement wrap-around)."
            )
        self.overflow = ovf
        self.range_decay = check_number(self.name, "range_decay", range_decay, allow_none=False)
        if not 0.0 <= self.range_decay < 1.0:
            raise QuantizerSpecError(
                f"{self.name}: range_decay={range_decay!r} must lie in [0, 1): the fraction by which "
                "the tracked activation range shrinks per training step (0: running maximum)."
            )
        if int_bits not in INTEGER_MODES:
            raise QuantizerSpecError(
                f"{self.name}: int_bits={int_bits!r} is unknown; use 'range' (integer bits cover the "
                "range tracked in training) or 'learned' (trainable integer bits, saturating)."
            )
        if int_bits == "learned" and self.overflow != "SAT":
            raise QuantizerSpecError(
                f"{self.name}: int_bits='learned' trains with saturation, so the deployed model must "
                "saturate too; use overflow='SAT' (or int_bits='range' with WRAP)."
            )
        # not ``integer``: QKeras quantizers use that name for a number of bits
        self.int_bits = int_bits
        self._role: str | None = None
        self._shape: tuple[int, ...] | None = None  # the tensor's shape (per sample for data)
        self._last_bits: torch.Tensor | None = None
        self._i_ready = False  # cached flag of the i_ready buffer (no tensor read per step)
        self.register_parameter("f", None)

    # ------------------------------------------------------------------ role and shapes
    def for_slot(self, slot: str) -> "LearnedFixedPoint":
        """Take the role of ``slot``: kernel/bias → weight, activation → data; refuse others."""
        if slot in WEIGHT_SLOTS and not self.relu and self.int_bits == "learned":
            raise QuantizerSpecError(
                f"{self} cannot serve the {slot!r} slot: a weight's integer bits follow its own "
                "value, so int_bits='learned' is for activation and input slots only."
            )
        if slot in WEIGHT_SLOTS and not self.relu:
            role = "weight"
        elif slot in DATA_SLOTS:
            role = "data"
        else:
            allowed = ("activation and input slots" if self.relu
                       else "kernel and bias slots of dense/conv layers, activation and input slots")
            raise QuantizerSpecError(
                f"{self} cannot serve the {slot!r} slot: learned bit widths are for {allowed}. "
                "Use a fixed quantizer there (e.g. quantized_bits(8,0,alpha=1)) or leave it float."
            )
        if self._role is None or (self._role == role and self.f is None):
            self._role = role
            return self
        twin = type(self)(**self.get_config())  # already serving a slot: a fresh copy
        twin._role = role
        return twin

    @property
    def role(self) -> str:
        """"weight" or "data" (the latter also for a quantizer used outside a layer)."""
        return self._role or "data"

    @property
    def materialized(self) -> bool:
        """True once the parameter shapes exist (after the first call)."""
        return self.f is not None

    @property
    def applies_relu(self) -> bool:
        """True when the quantizer applies ReLU before its (unsigned) quantization."""
        return self.relu

    @property
    def signed(self) -> bool:
        return not self.relu

    def _param_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of ``f`` for a tensor of ``shape`` (per sample for data, channels first)."""
        if self.granularity == "layer" or not shape:
            return ()
        if self.granularity == "element" or len(shape) == 1:
            return tuple(shape)
        return (shape[0],) + (1,) * (len(shape) - 1)

    def _materialize(self, x: torch.Tensor) -> None:
        if self.role == "data" and x.dim() < 1:
            raise QuantizerSpecError(f"{self}: activations need a batch axis; got a scalar.")
        shape = tuple(x.shape) if self.role == "weight" else tuple(x.shape[1:])
        pshape = self._param_shape(shape)
        kw = {"device": x.device}
        self._shape = shape
        self.f = nn.Parameter(torch.full(pshape, float(self.init_frac), dtype=torch.float32, **kw))
        if self.role == "weight":
            self.register_buffer("width", torch.zeros(shape, dtype=torch.int8, **kw))
            self.register_buffer("frac", torch.zeros(pshape, dtype=torch.int8, **kw))
        else:
            self.register_buffer("range", torch.zeros(pshape, dtype=torch.float32, **kw))
            if self.int_bits == "learned":
                self.i = nn.Parameter(torch.zeros(pshape, dtype=torch.float32, **kw))
                self.register_buffer("i_ready", torch.zeros((), dtype=torch.float32, **kw))

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self._parameters["f"]  # direct: nn.Module's attribute lookup costs per step
        if f is None:
            self._materialize(x)
            f = self._parameters["f"]
        if self._role == "weight":
            if torch.is_grad_enabled() and (x.requires_grad or f.requires_grad):
                # training: one autograd node; the snapshot of the widths waits for eval
                wq, bits = WeightRound.apply(x, f)
                self.__dict__["_last_bits"] = bits
                return wq
            return self._forward_weight(x)
        return self._forward_data(x)

    def quantized_linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         bias_quantizer: nn.Module | None) -> torch.Tensor | None:
        """``x @ Q(weight).T + Q_b(bias)`` as one autograd node (:class:`LearnedLinear`) when this
        quantizer holds a dense kernel in training and the bias is learned too (or float); None
        otherwise, and the layer takes its ordinary path (same values). Dense layers ask their
        kernel quantizer for this; only training with gradient is fused — eval must refresh the
        widths' snapshot, which the ordinary path does."""
        f = self._parameters["f"]
        if f is None or self._role != "weight" or not torch.is_grad_enabled() \
                or not (weight.requires_grad or f.requires_grad):
            return None
        fb = None
        if bias is not None and bias_quantizer is not None:
            if not isinstance(bias_quantizer, LearnedFixedPoint) or bias_quantizer._role != "weight":
                return None
            fb = bias_quantizer._parameters["f"]
            if fb is None:
                return None
        y, width_w, width_b = LearnedLinear.apply(x, weight, f, bias, fb)
        self.__dict__["_last_bits"] = width_w
        if fb is not None:
            bias_quantizer.__dict__["_last_bits"] = width_b
        return y

    def _wants_grad(self, x: torch.Tensor) -> bool:
        return torch.is_grad_enabled() and (x.requires_grad or self.f.requires_grad)

    def _forward_weight(self, w: torch.Tensor) -> torch.Tensor:
        """Without gradient (eval, validation): exact values, and the widths' snapshot."""
        self.__dict__["_last_bits"] = None
        with torch.no_grad():
            frac = effective_frac(self.f)
            codes = torch.mul(w, torch.exp2(frac)).round_()
            self.width.copy_(code_width(codes.double()))  # exact for any code
            self.frac.copy_(frac)
            return codes.mul_(torch.exp2(-frac))

    def constraints(self) -> list[tuple[torch.Tensor, float]]:
        """``(f, F_LIMIT)``: keep the fractional bits within the range the forward clips them
        to, so the parameter never drifts where its gradient no longer acts."""
        if self.f is None:
            return []
        i = getattr(self, "i", None)
        return [(self.f, float(F_LIMIT))] + ([] if i is None else [(i, float(F_LIMIT))])

    # ------------------------------------------------------------------ reporting
    def _require_materialized(self) -> None:
        if self.f is None:
            raise QuantizerSpecError(
                f"{self} has no widths yet: its parameters are created on the first call. Build "
                "the model with hqrun.models.build_model (which runs one dry pass) or call the "
                "layer once before asking for its types."
            )

    def _widths_and_frac(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode widths (float, full shape) and fractional bits (float, ``f``'s shape)."""
        self._require_materialized()
        with torch.no_grad():
            if self.role == "weight":
                return self.width.float(), self.frac.float()
            frac = effective_frac(self.f)
            return self._data_width(frac).expand(self._shape), frac

    def bit_widths(self) -> torch.Tensor:
        """Per-element widths as the cost counts them (sign bit included, 0 = pruned/silent).

        Full shape of the tensor quantized (per sample for activations). After a forward with
        gradient in training mode these carry the gradient to ``f`` (what the EBOPs penalty
        uses); otherwise they are the exact eval-mode widths of :meth:`fixed_point_grid`.
        """
        last = self._last_bits
        if last is not None and self.training and torch.is_grad_enabled():
            return last if self.role == "weight" else last.expand(self._shape)
        return self._widths_and_frac()[0]

    def fixed_point_grid(self) -> FixedPointGrid:
        """Per-element ``(signed, integer incl. sign, fractional)`` of the eval-mode outputs.

        Arrays have the shape of the tensor quantized (activations: one sample, no batch axis;
        they broadcast against a batch). Weights: the snapshot taken by the last call without
        gradient (every validation/eval pass; saved in the state dict), so after changing
        weights by hand, call the layer once under ``torch.no_grad()``. ``quantize(x)`` equals the
        eval-mode forward bit for bit.
        """
        width, frac = self._widths_and_frac()
        frac_full = np.broadcast_to(frac.cpu().numpy().astype(np.int64), self._shape)
        integer = width.cpu().numpy().astype(np.int64) - frac_full
        return FixedPointGrid(np.asarray(self.signed), integer, frac_full, "RND_CONV",
                              "SAT" if self.role == "weight" else self.overflow)

    def lowering(self) -> Lowering:
        """Data role: ``relu`` (learned_relu) or ``quant`` onto the per-element grid — in eval mode
        the quantizer *is* that cast (round half to even, then saturate or wrap per element), so
        the firmware reproduces it bit for bit. A weight's quantizer is not an activation: its
        values are constants folded into the layer, so it has no lowering of its own."""
        if self.role == "weight":
            raise FirmwareError(
                f"{self} quantizes a layer's weights, which the firmware stores as constants of "
                "their own per-element types; it is not an operation on data and cannot be placed "
                "in an activation or input slot. Use learned_bits()/learned_relu() there (a fresh "
                "quantizer, not the kernel's)."
            )
        if self.f is None:
            raise FirmwareError(
                f"{self} has no widths yet (its parameters are created on the first call), so "
                "there is nothing to build. Build the model with hqrun.models.build_model or load "
                "a trained run's model.pt before exporting."
            )
        return Lowering("relu" if self.relu else "quant", self.fixed_point_grid())

    def fixed_point_type(self) -> FixedPointType | None:
        """The narrowest single type holding every element (the grid's union); None before the
        first call."""
        return None if self.f is None else self.fixed_point_grid().union()

    @property
    def bits(self) -> int:  # type: ignore[override]
        """The widest element's width (0 before the first call)."""
        if self.f is None:
            return 0
        widths = self._widths_and_frac()[0]
        return int(widths.max()) if widths.numel() else 0

    def pruned(self) -> int:
        """Number of elements with width 0 (for weights: pruned, exactly 0 in every mode)."""
        return int((self._widths_and_frac()[0] == 0).sum())

    def size(self) -> int:
        """Number of elements the quantizer covers (per sample for activations)."""
        self._require_materialized()
        return math.prod(self._shape)

    def max_value(self) -> float | None:
        """Weights: unbounded (their integer bits follow their values, so QKeras's weight clip
        must not apply); activations: the largest eval-mode value, None before the first call."""
        if self.role == "weight":
            return math.inf
        if self.f is None:
            return None
        return float(np.max(self.fixed_point_grid().max_values()))

    def min_value(self) -> float | None:
        if self.role == "weight":
            return -math.inf
        if self.f is None:
            return None
        return float(np.min(self.fixed_point_grid().min_values()))
