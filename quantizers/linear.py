"""``linear``: the explicit "no quantizer" (identity), for plans that must name every slot.

QKeras 0.9.0 has no ``quantized_linear`` class; a spec of ``"linear"`` there resolves to Keras's
identity activation. hqrun keeps that meaning: ``get("linear")`` returns this identity module,
while ``get(None)`` returns ``None`` (as QKeras's ``get_quantizer``). Layers accept both.
"""

from __future__ import annotations

import torch

from .base import Quantizer

__all__ = ["linear"]


class linear(Quantizer):  # noqa: N801 - QKeras/Keras name
    """Identity: float values pass unchanged with gradient 1. Reports 32 bits (float32)."""

    name = "linear"
    elementwise = True
    bits = 32

    def __init__(self) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @property
    def is_identity(self) -> bool:
        return True
