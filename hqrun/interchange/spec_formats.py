"""QONNX format → hqrun quantizer spec: the import side of :mod:`hqrun.interchange.formats`.

Why candidates for weights: a weight is a constant, so any quantizer that maps the stored values
to themselves reproduces the graph; the best one is the quantizer the graph was made with. An
hqrun export notes that spec on the node (a hint), which is tried first; then the spec that
states the node's format (``quantized_bits`` with its bits, scale, sign and narrow range;
``binary`` for BipolarQuant; ``alpha="auto_po2"`` for per-channel power-of-two scales); and for
per-channel scales a last resort that holds every channel on one finer grid. The importer keeps
the first candidate whose quantized weights equal the graph's, value for value.

Activations are functions, so exactly one spec computes the node: a ``Quant`` after a ``Relu``
is ``quantized_relu``, a ``Quant`` alone ``quantized_bits``, a ``BipolarQuant`` ``binary``.
"""

from __future__ import annotations

import numpy as np

from hqrun.errors import InterchangeError
from hqrun.quantizers.exact_types import type_of_values

from .formats import QuantFormat, is_power_of_two, type_of_format

__all__ = ["activation_spec", "param_candidates"]


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _check_integer(bits: int, integer: int, where: str, fmt: QuantFormat) -> None:
    if integer > bits:
        raise InterchangeError(
            f"{where} ({fmt.describe()}) has a step of 2^{integer - bits + 1} or more, coarser than "
            "hqrun's fixed-point quantizers express (QKeras's integer <= bits); rescale the model "
            "so that this tensor's step is at most 2."
        )


def _is_bipolar(fmt: QuantFormat) -> bool:
    return fmt.op == "BipolarQuant" or (fmt.bits == 1 and fmt.signed)


def _fixed_spec(fmt: QuantFormat, where: str) -> str:
    """``quantized_bits`` holding exactly the format of a scalar power-of-two ``Quant``."""
    t = type_of_format(fmt, where)
    if t.signed:
        _check_integer(fmt.bits, t.integer - 1, where, fmt)
        sym = ",symmetric=1" if fmt.narrow else ""
        return f"quantized_bits({fmt.bits},{t.integer - 1}{sym},alpha=1)"
    _check_integer(fmt.bits, t.integer, where, fmt)
    return f"quantized_bits({fmt.bits},{t.integer},keep_negative=False,alpha=1)"


def activation_spec(fmt: QuantFormat, relu: bool, where: str) -> str:
    """The hqrun quantizer computing ``[Relu then] fmt``, or a refusal naming ``where``."""
    if _is_bipolar(fmt):
        if relu or not fmt.is_scalar or not is_power_of_two(fmt.scale):
            raise InterchangeError(
                f"{where} ({'Relu then ' if relu else ''}{fmt.describe()}) has no hqrun "
                "equivalent: hqrun's binary activation is a sign with one power-of-two scale."
            )
        return f"binary(alpha={_number(float(fmt.scale))})"
    t = type_of_format(fmt, where)
    if t.rounding != "RND_CONV":
        raise InterchangeError(
            f"{where} ({fmt.describe()}) rounds with {fmt.rounding}; hqrun's activation quantizers "
            "round half to even (rounding_mode ROUND), as QKeras's do. Export the model with ROUND."
        )
    if not relu:
        return _fixed_spec(fmt, where)
    if t.signed:  # the codes of a ReLU's output are >= 0: the sign bit is never used
        if fmt.bits < 2:
            raise InterchangeError(f"{where}: a 1-bit signed Quant after a Relu outputs only 0.")
        _check_integer(fmt.bits - 1, t.integer - 1, where, fmt)
        return f"quantized_relu({fmt.bits - 1},{t.integer - 1})"
    _check_integer(fmt.bits, t.integer, where, fmt)
    return f"quantized_relu({fmt.bits},{t.integer})"


def param_candidates(fmt: QuantFormat | None, values: np.ndarray, where: str) -> list[str]:
    """Specs that may reproduce the constant ``values`` (torch layout), best first."""
    if fmt is None:
        raise InterchangeError(
            f"{where} is a float constant (no Quant node on it). Float weights make the sums "
            "depend on the order of additions, so hqrun cannot reproduce them bit for bit (nor "
            "build them as firmware). Quantize it in the source model (in Brevitas, e.g. "
            "weight_quant=Int8WeightPerTensorFixedPoint, bias_quant=Int16Bias)."
        )
    if not is_power_of_two(fmt.scale):
        raise InterchangeError(
            f"{where} ({fmt.describe()}) has scale(s) that are not powers of two, so its values "
            "lie on no fixed-point grid: hqrun's quantizers (QKeras's) and firmware need "
            "power-of-two scales. In Brevitas, use the *FixedPoint quantizers "
            "(e.g. Int8WeightPerTensorFixedPoint)."
        )
    if _is_bipolar(fmt):
        if fmt.is_scalar or np.unique(fmt.scale).size == 1:
            return [f"binary(alpha={_number(float(fmt.scale.reshape(-1)[0]))})"]
        return ["binary(alpha='auto_po2')"]
    if fmt.is_scalar or np.unique(fmt.scale).size == 1:
        one = QuantFormat("Quant", fmt.bits, np.float64(fmt.scale.reshape(-1)[0]), fmt.signed,
                          fmt.narrow and fmt.signed, "ROUND")
        return [_fixed_spec(one, where)]
    out = []
    if fmt.signed and fmt.narrow:
        out.append(f"quantized_bits({fmt.bits},0,alpha='auto_po2')")
    t = type_of_values(values)
    if t is not None and t.width <= 32:
        out.append(f"quantized_bits({t.width},{t.integer - 1},alpha=1)")
    if not out:
        raise InterchangeError(f"{where} ({fmt.describe()}): its per-channel values fit no "
                               "hqrun quantizer of at most 32 bits.")
    return out
