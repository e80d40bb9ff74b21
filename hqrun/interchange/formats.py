"""QONNX quantization formats and how they line up with hqrun's fixed-point types.

Why a module of its own: export and import both translate between the same two descriptions of a
number format — an ``ap_fixed``-style :class:`~hqrun.quantizers.FixedPointType` and the
parameters of a QONNX ``Quant``/``BipolarQuant`` node — and the translation must be one exact
table in both directions, or a round trip would drift.

QONNX's ``Quant`` computes ``q = clip(x / scale + zeropt, min_int, max_int)``, rounds ``q`` with
its ``rounding_mode`` and returns ``(q - zeropt) * scale``. Clipping to integer bounds before
rounding gives the same result as rounding first (the bounds are integers), so with
``zeropt = 0`` and ``scale = lsb`` it is exactly an ``ap_fixed`` cast with saturation:

=================  ==============================  =================================
hqrun / ap_fixed    QONNX ``Quant``                 note
=================  ==============================  =================================
``RND_CONV``        ``rounding_mode=ROUND``         half to even (QKeras, torch.round)
``TRN``             ``FLOOR``                       toward -inf
``RND``             ``HALF_UP`` (unsigned only)     QONNX's HALF_UP rounds halves away
                                                    from zero; AP_RND rounds them up, so
                                                    they agree only on x >= 0
``SAT``             ``narrow=0``                    clamp to [min, max]
``SAT_SYM``         ``narrow=1`` (signed)           clamp to [-max, max]
``WRAP``            (none)                          QONNX always saturates: refused
=================  ==============================  =================================

QONNX's executor computes in float32, which holds integer codes of up to 24 bits exactly; wider
activation formats are refused (weights are constants already held in float32, so they may be
wider).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hqrun.errors import InterchangeError
from hqrun.quantizers.fixedpoint import FixedPointType

__all__ = ["QuantFormat", "FLOAT32_CODE_BITS", "format_of_type", "type_of_format",
           "QONNX_ROUNDING", "is_power_of_two"]

#: Bits of an integer code float32 holds exactly (its significand).
FLOAT32_CODE_BITS = 24

#: ap_fixed rounding mode -> QONNX rounding_mode (``RND`` only where x >= 0, see module doc).
QONNX_ROUNDING = {"RND_CONV": "ROUND", "TRN": "FLOOR", "RND": "HALF_UP"}

#: QONNX rounding modes hqrun reads, with the ap_fixed mode each equals.
_FROM_QONNX = {"ROUND": "RND_CONV", "HALF_EVEN": "RND_CONV", "FLOOR": "TRN"}


def is_power_of_two(values: Any) -> bool:
    """True when every element is a positive power of two (exactly)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0 or not np.all(np.isfinite(v)) or np.any(v <= 0):
        return False
    mantissa, _ = np.frexp(v)
    return bool(np.all(mantissa == 0.5))


@dataclass(frozen=True, eq=False)
class QuantFormat:
    """The parameters of one QONNX quantization node (zero point always 0).

    ``op`` is ``Quant`` (integer codes ``[min_int, max_int]`` times ``scale``) or
    ``BipolarQuant`` (``+scale`` for ``x >= 0``, else ``-scale``). ``scale`` is a float64 array:
    shape ``()`` for one scale, or broadcastable against the tensor it quantizes (one scale per
    output channel of a weight).
    """

    op: str
    bits: int
    scale: np.ndarray
    signed: bool = True
    narrow: bool = False
    rounding: str = "ROUND"
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", np.asarray(self.scale, dtype=np.float64))

    @property
    def is_scalar(self) -> bool:
        return self.scale.size == 1

    @property
    def min_code(self) -> int:
        if self.op == "BipolarQuant":
            return -1
        if not self.signed:
            return 0
        return -(2 ** (self.bits - 1)) + int(self.narrow)

    @property
    def max_code(self) -> int:
        if self.op == "BipolarQuant":
            return 1
        if not self.signed:
            return 2**self.bits - 1 - int(self.narrow)
        return 2 ** (self.bits - 1) - 1

    def same_as(self, other: "QuantFormat") -> bool:
        """Equal parameters (what a node would carry), notes aside."""
        return (self.op == other.op and self.bits == other.bits and self.signed == other.signed
                and self.narrow == other.narrow and self.rounding == other.rounding
                and self.scale.shape == other.scale.shape and np.array_equal(self.scale, other.scale))

    def describe(self) -> str:
        scale = (f"2^{int(math.log2(float(self.scale)))}" if self.is_scalar and is_power_of_two(self.scale)
                 else f"{self.scale.size} scales" if not self.is_scalar else f"{float(self.scale):g}")
        if self.op == "BipolarQuant":
            return f"BipolarQuant(scale={scale})"
        return (f"Quant(bits={self.bits}, scale={scale}, signed={int(self.signed)}, "
                f"narrow={int(self.narrow)}, rounding_mode={self.rounding})")


def format_of_type(t: FixedPointType, where: str, *, max_bits: int | None = FLOAT32_CODE_BITS
                   ) -> QuantFormat:
    """The ``Quant`` that casts to ``t`` exactly, or a refusal naming ``where`` and why.

    ``max_bits`` bounds the width (float32 execution); pass None for constants, whose values
    are already float32 numbers.
    """
    if t.overflow == "WRAP":
        raise InterchangeError(
            f"{where} wraps on overflow ({t.hls_name}); QONNX's Quant always saturates, so the "
            "graph would compute something else. Use a saturating quantizer (QKeras's quantizers "
            "all saturate) for this slot."
        )
    if t.rounding == "RND" and t.signed:
        raise InterchangeError(
            f"{where} rounds halves up ({t.hls_name}, AP_RND); QONNX has no such mode for signed "
            "values (its HALF_UP rounds -2.5 to -3, AP_RND to -2). Use round-half-to-even "
            "(AP_RND_CONV, what QKeras's quantizers do) for this slot."
        )
    if max_bits is not None and t.width > max_bits:
        raise InterchangeError(
            f"{where} has {t.width}-bit codes ({t.hls_name}); QONNX's reference executor computes "
            f"in float32, which holds at most {max_bits}-bit codes exactly, so the exported graph "
            "could not be checked bit for bit. Use a narrower quantizer for this slot."
        )
    narrow = t.signed and t.overflow == "SAT_SYM"
    return QuantFormat("Quant", t.width, np.float64(t.lsb), t.signed, narrow,
                       QONNX_ROUNDING[t.rounding])


def type_of_format(fmt: QuantFormat, where: str) -> FixedPointType:
    """The ``ap_fixed`` type a scalar power-of-two ``Quant`` casts to, or a refusal."""
    if fmt.op != "Quant" or not fmt.is_scalar or not is_power_of_two(fmt.scale):
        raise InterchangeError(
            f"{where} ({fmt.describe()}) is not a cast to one fixed-point type: hqrun's "
            "quantizers need a single power-of-two scale (e.g. Brevitas's *FixedPoint quantizers)."
        )
    rounding = _FROM_QONNX.get(fmt.rounding.upper())
    if rounding is None:
        raise InterchangeError(
            f"{where} rounds with rounding_mode={fmt.rounding}; hqrun's quantizers round half to "
            "even (ROUND) as QKeras does, and their firmware types also know FLOOR. Export the "
            "model with rounding_mode ROUND."
        )
    if fmt.narrow and not fmt.signed:
        raise InterchangeError(
            f"{where} is an unsigned narrow-range Quant (largest code 2^bits - 2), which no "
            "hqrun quantizer produces. Export it with narrow=0."
        )
    fractional = -int(math.log2(float(fmt.scale)))
    overflow = "SAT_SYM" if fmt.narrow else "SAT"
    return FixedPointType(fmt.bits, fmt.bits - fractional, fmt.signed, rounding, overflow)
