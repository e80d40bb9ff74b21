"""IR passes: each rewrites the fixed-point IR in place, one file per effect, run in this order.

The order is declared once (:data:`PASSES`) because passes depend on each other: batch norms are
folded before a quantized_bits activation may become its layer's result type, and padding is
made explicit last, once every convolution has its final input. The names of the passes that
ran are recorded on the IR (``ir.passes``) so a report says what was done to the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from . import fold_batchnorm, insert_conv_padding, merge_quant_activation

__all__ = ["PassContext", "PASSES", "run_passes"]


@dataclass
class PassContext:
    """What passes may read besides the IR: the shared type inference's per-layer types."""

    types: dict[str, Any] = field(default_factory=dict)


#: (name, function) in the order they run.
PASSES: tuple[tuple[str, Callable[..., None]], ...] = (
    ("fold_batchnorm", fold_batchnorm.run),
    ("merge_quant_activation", merge_quant_activation.run),
    ("insert_conv_padding", insert_conv_padding.run),
)


def run_passes(ir: Any, ctx: PassContext) -> None:
    """Run every pass of :data:`PASSES` on ``ir`` in order."""
    for name, fn in PASSES:
        fn(ir, ctx)
        ir.passes.append(name)
