"""What alkaid can build exactly, checked before tracing so a refusal names the layer.

Why: alkaid's constant-matrix solver reads the kernel as float32 (24 significant bits) and
stores a constant addend as a 32-bit two's-complement mantissa with a shift. A wider weight or
bias would be rounded silently inside the generator, breaking the bit-exact contract, so such a
layer is refused with one paragraph. (Accumulators are bounded by the IR at 53 bits, which
alkaid's float64 intervals hold exactly.)
"""

from __future__ import annotations

import numpy as np

from hqrun.errors import FirmwareError

from ...ir import IRLayer

__all__ = ["MAX_KERNEL_BITS", "MAX_BIAS_BITS", "check_layer_widths", "significant_bits"]

#: Significant bits of the kernel (common trailing zeros stripped) alkaid's float32 solver holds.
MAX_KERNEL_BITS = 24
#: Significant bits of one bias value that alkaid's constant adder holds (sign included).
MAX_BIAS_BITS = 32


def _strip_common_zeros(codes: np.ndarray) -> np.ndarray:
    nz = codes[codes != 0]
    if nz.size == 0:
        return codes
    tz = int(np.min([(int(abs(v)) & -int(abs(v))).bit_length() - 1 for v in nz]))
    return codes >> tz


def significant_bits(codes: np.ndarray) -> int:
    """Bits of the largest magnitude once the trailing zeros all codes share are dropped."""
    c = _strip_common_zeros(np.asarray(codes, dtype=np.int64))
    return int(np.max(np.abs(c))).bit_length() if c.size else 0


def _bias_bits(codes: np.ndarray) -> int:
    """Per value, signed bits of its own mantissa (its own trailing zeros dropped); the widest."""
    widest = 0
    for v in np.asarray(codes, dtype=np.int64).ravel():
        n = int(v)
        if n == 0:
            continue
        while n % 2 == 0:
            n //= 2
        widest = max(widest, abs(n).bit_length() + 1)
    return widest


def check_layer_widths(layer: IRLayer) -> None:
    """Refuse a dense/conv layer whose constants alkaid could not hold exactly."""
    if layer.weight is not None:
        bits = significant_bits(layer.weight)
        if bits > MAX_KERNEL_BITS:
            raise FirmwareError(
                f"layer {layer.name!r} has weights spanning {bits} significant bits "
                f"(type {layer.weight_type.hls_name}); the RTL backend's constant-matrix solver "
                f"(alkaid) holds at most {MAX_KERNEL_BITS}, so it would round them. Use a "
                f"narrower kernel quantizer for {layer.name!r} (e.g. quantized_bits(16,...)) or "
                "the hls4ml backend."
            )
    if layer.bias is not None:
        bits = _bias_bits(layer.bias)
        if bits > MAX_BIAS_BITS:
            raise FirmwareError(
                f"layer {layer.name!r} has a bias value needing {bits} significant bits "
                f"(type {layer.bias_type.hls_name}); the RTL backend's constant adder (alkaid) "
                f"holds at most {MAX_BIAS_BITS}. Use a narrower bias quantizer for "
                f"{layer.name!r} or the hls4ml backend."
            )
