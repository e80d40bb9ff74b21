"""QAveragePooling2D (QKeras's quantized average pooling) and a Flatten that keeps Keras order.

QKeras computes a quantized average as ``mean * pool_area * Q(1 / pool_area)``: the pooled sum
times a quantized reciprocal. With a power-of-two pool area (2x2, 4x4) and no average
quantizer the mean is exact on the fixed-point grid (a shift); other areas are not, and the
``average_quantizer`` decides the reciprocal's precision.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn import functional as F

from hqrun.errors import ConfigError
from hqrun.quantizers.layers_core import (
    QLayer,
    apply_output_activation,
    as_tuple,
    resolve_activation,
    resolve_quantizer,
)


class QAveragePooling2D(QLayer):
    """``qkeras.QAveragePooling2D`` on ``(N, C, H, W)`` inputs ("valid" padding only)."""

    type_kind = "avgpool2d"
    keras_class = "AveragePooling2D"
    plan_slots = {"average": "average_quantizer", "activation": "activation"}

    def __init__(self, pool_size: int | tuple[int, int] = (2, 2),
                 strides: int | tuple[int, int] | None = None, padding: str = "valid",
                 average_quantizer: Any = None, activation: Any = None) -> None:
        super().__init__()
        if padding.lower() != "valid":
            raise ConfigError(
                f"QAveragePooling2D padding={padding!r} is not supported: Keras's 'same' average "
                "pooling divides edge windows by fewer elements, which has no single fixed-point "
                "reciprocal. Use padding='valid' (and pad the input beforehand if needed)."
            )
        self.pool_size = as_tuple(pool_size, 2, "pool_size")
        self.strides = as_tuple(strides if strides is not None else self.pool_size, 2, "strides")
        self.padding = "valid"
        self.average_quantizer = resolve_quantizer(average_quantizer, "average")
        self.activation = resolve_activation(activation)

    @property
    def pool_area(self) -> int:
        return math.prod(self.pool_size)

    def quantized_reciprocal(self) -> torch.Tensor:
        """``Q(1 / pool_area)`` (or the exact reciprocal without an average quantizer)."""
        r = torch.tensor(1.0 / self.pool_area)
        return r if self.average_quantizer is None else self.average_quantizer(r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.avg_pool2d(x, self.pool_size, self.strides)
        if self.average_quantizer is not None:
            y = y * self.pool_area * self.quantized_reciprocal().to(y.dtype)
        return apply_output_activation(self, y)


class Flatten(QLayer):
    """Flatten ``(N, C, H, W)`` to ``(N, H*W*C)`` in **Keras (channels-last) order**.

    Keeping Keras's order means a dense layer after it has the same weight layout as in the
    QKeras model, so weights and firmware conventions carry over one to one.
    """

    plan_slots: dict[str, str] = {}
    type_kind = "flatten"
    keras_class = "Flatten"

    def __init__(self, keras_order: bool = True) -> None:
        super().__init__()
        self.keras_order = bool(keras_order)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.keras_order and x.dim() > 2:
            x = x.movedim(1, -1)
        return x.reshape(x.shape[0], -1)


__all__ = ["QAveragePooling2D", "Flatten"]
