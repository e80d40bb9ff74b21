"""'same' padding of a convolution becomes an explicit zero-padding layer in front of it.

Backends (hls4ml's PyTorch front end, RTL) then see only 'valid' convolutions, and the emulator
and the C simulation pad with the same zeros.
"""

from __future__ import annotations

from typing import Any

from ..ir import IRLayer


def run(ir: Any, ctx: Any) -> None:
    """Insert a ``zeropad{1,2}d`` layer before every convolution with non-zero pads."""
    out: list[IRLayer] = []
    for layer in ir.layers:
        pads = [tuple(p) for p in layer.attrs.get("pads", [])] if layer.op.startswith("conv") else []
        if any(p != (0, 0) for p in pads):
            nd = len(pads)
            shape = layer.in_shape
            padded = (shape[0],) + tuple(s + a + b for s, (a, b) in zip(shape[1:], pads))
            out.append(IRLayer(f"{layer.name}_pad", f"zeropad{nd}d", shape, padded,
                               layer.in_type, layer.in_type, attrs={"pads": pads},
                               sources=[layer.name]))
            layer.in_shape = padded
        layer.attrs.pop("pads", None)
        out.append(layer)
    ir.layers[:] = out
