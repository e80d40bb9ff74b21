"""The whole IR traced into one alkaid combinational program (a ``CombLogic``).

Why one program for the whole model: alkaid then sees every layer at once, drops bits no later
layer needs, and balances pipeline stages across layer boundaries. The price is that layers are
no longer separate modules in the Verilog, so for diagnostics a *probe* program is traced too:
the same layers, with every layer's output exposed as an output (see :mod:`.diagnose`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hqrun.errors import FirmwareError

from ...ir import FirmwareIR, IRLayer
from .alkaid_api import alkaid
from .casts import kif_of
from .layers import lower_layer
from .limits import check_layer_widths

__all__ = ["TracedModel", "trace_ir", "layers_to_build"]


@dataclass
class TracedModel:
    """alkaid's program plus where each exposed layer's elements sit in its output vector."""

    comb: Any
    exposed: dict[str, tuple[int, int]]  # layer name → [start, stop) in the flat output vector
    check_layer: IRLayer


def layers_to_build(ir: FirmwareIR) -> list[IRLayer]:
    """Layers after the input up to the last fixed-point one (the logits); softmax stays out."""
    last = ir.last_quantized()
    idx = next(i for i, layer in enumerate(ir.layers) if layer is last)
    if idx == 0:
        raise FirmwareError("the model has no layer after its input; there is no logic to build.")
    return ir.layers[1: idx + 1]


def _input_array(ir: FirmwareIR) -> Any:
    k, i, f = kif_of(ir.input_type)
    shape = tuple(ir.input_shape)
    return alkaid().FVArray.from_kif(np.full(shape, k), np.full(shape, i), np.full(shape, f))


def trace_ir(ir: FirmwareIR, probe: bool = False) -> TracedModel:
    """Trace ``ir`` into an alkaid ``CombLogic``.

    Args:
        ir: the fixed-point IR (the one every backend consumes).
        probe: expose every layer's output (input included) instead of only the logits.
    """
    build = layers_to_build(ir)
    for layer in build:
        check_layer_widths(layer)
    x = _input_array(ir)
    inputs = x
    outputs: list[Any] = []
    exposed: dict[str, tuple[int, int]] = {}

    def expose(name: str, arr: Any) -> None:
        start = sum(int(np.asarray(o).size) for o in outputs)
        outputs.append(np.asarray(arr).ravel())
        exposed[name] = (start, start + int(np.asarray(arr).size))

    if probe:
        expose(ir.layers[0].name, x)
    for layer in build:
        x = lower_layer(layer, x)
        if probe or layer is build[-1]:
            expose(layer.name, x)
    flat = np.concatenate(outputs) if len(outputs) > 1 else outputs[0]
    comb = alkaid().trace(np.asarray(inputs).ravel(), flat)
    return TracedModel(comb, exposed, build[-1])
