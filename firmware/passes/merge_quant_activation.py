"""A quantized_bits-style activation (a cast) becomes the result type of the layer before it.

In hls4ml (and in RTL) the cast of an accumulator to a narrower type is the layer's result
type, not an extra layer; merging it keeps the IR one layer per piece of hardware. A cast that
does not follow a dense/conv result directly has no such home and is refused.
"""

from __future__ import annotations

from typing import Any

from hqrun.errors import FirmwareError

from ..ir import IRLayer


def run(ir: Any, ctx: Any) -> None:
    """Fold every ``quant`` IR layer into its predecessor's result type."""
    out: list[IRLayer] = []
    for layer in ir.layers:
        if layer.op != "quant":
            out.append(layer)
            continue
        prev = out[-1]
        if not prev.is_mac or prev.out_type != prev.accum_type:
            raise FirmwareError(
                f"layer {layer.name!r}: a quantized_bits activation is only exported right after "
                "a dense/conv layer (it becomes that layer's result type); here it follows "
                f"{prev.name!r}. Move it or use quantized_relu."
            )
        prev.out_type = layer.out_type
        prev.out_grid = layer.out_grid
        prev.sources.append(layer.name)
    ir.layers[:] = out
