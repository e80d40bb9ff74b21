"""Learned-width fixed-point quantizers (HGQ-style): ``learned_bits`` and ``learned_relu``.

Spec names follow QKeras's habit (``quantized_bits`` / ``quantized_relu``), so a plan reads::

    input: learned_bits(init_frac=4)
    default:
      kernel: learned_bits()                 # one trainable width per weight
      bias: learned_bits()
      activation: learned_relu(granularity='channel')

How they work, and every argument: :mod:`hqrun.quantizers.learned_base` and docs/learned_bits.md.
"""

from __future__ import annotations

from .learned_base import LearnedFixedPoint

__all__ = ["learned_bits", "learned_relu"]


class learned_bits(LearnedFixedPoint):  # noqa: N801 - QKeras-style spec name
    """Signed fixed point with trainable fractional bits: weights, biases, inputs, linear outputs.

    In a kernel/bias slot each element's integer bits fit its own value (a weight rounding to 0
    is pruned); in an activation/input slot they cover the range tracked in training.
    """

    name = "learned_bits"
    relu = False


class learned_relu(LearnedFixedPoint):  # noqa: N801 - QKeras-style spec name
    """ReLU, then unsigned fixed point with trainable fractional bits (activation slots only).

    The integer bits cover the running maximum of the ReLU output seen in training.
    """

    name = "learned_relu"
    relu = True
