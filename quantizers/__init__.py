"""hqrun.quantizers: fixed-point types, QKeras-compatible quantizers and spec parsing.

This package is the single source of truth for number formats (see docs/quantizers.md):
every quantizer reports ``bits`` and, where one exists, the exact ``FixedPointType`` of its
outputs; ``get(spec)`` parses QKeras-style specs safely.
"""

from .fixedpoint import OVERFLOW_MODES, ROUNDING_MODES, FixedPointType
from .base import Quantizer, registry
from .bits import quantized_bits
from .relu import quantized_relu
from .linear import linear
from .po2 import quantized_po2, quantized_relu_po2
from .binary import bernoulli, binary, stochastic_binary
from .ternary import stochastic_ternary, ternary
from .tanh_sigmoid import quantized_sigmoid, quantized_tanh
from .ulaw_hswish import quantized_hswish, quantized_ulaw
from .grid import FixedPointGrid
from .learned import learned_bits, learned_relu
from .spec import get, parse_spec, valid_names

__all__ = [
    "FixedPointType",
    "ROUNDING_MODES",
    "OVERFLOW_MODES",
    "Quantizer",
    "registry",
    "get",
    "parse_spec",
    "valid_names",
    "quantized_bits",
    "quantized_relu",
    "linear",
    "quantized_po2",
    "quantized_relu_po2",
    "binary",
    "stochastic_binary",
    "bernoulli",
    "ternary",
    "stochastic_ternary",
    "quantized_tanh",
    "quantized_sigmoid",
    "quantized_ulaw",
    "quantized_hswish",
    "FixedPointGrid",
    "learned_bits",
    "learned_relu",
]

# --- quantized layers / type inference (owned by other modules) are exported below ----------
# e.g. ``from .layers import *`` and ``__all__ += layers.__all__`` go here.
