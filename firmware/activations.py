"""An activation (a quantizer or a float function) as IR layers, asked of the quantizer itself.

A quantizer in an activation slot says what exact operation it is through
:meth:`hqrun.quantizers.Quantizer.lowering` (``relu`` or ``quant`` onto a grid) or refuses;
float functions are exact only as ReLU (a sign test) and as a final softmax, which backends
implement approximately and the verification checks apart.
"""

from __future__ import annotations

from typing import Any

from hqrun.errors import FirmwareError
from hqrun.quantizers.grid import FixedPointGrid
from hqrun.quantizers.layers_core import float_function_of
from hqrun.quantizers.lowering import Lowering

from .ir import IRLayer
from .params import stochastic_guard

__all__ = ["activation_nodes", "lowering_of"]


def activation_nodes(name: str, act: Any, shape: tuple[int, ...], prev: IRLayer,
                     is_last: bool) -> list[IRLayer]:
    """IR layers for ``act`` applied to ``prev``'s output (empty when it is a no-op)."""
    if act is None:
        return []
    function = float_function_of(act)
    if function == "relu":
        return [IRLayer(name, "relu", shape, shape, prev.out_type, prev.out_type, sources=[name],
                        out_grid=prev.out_grid, in_grid=prev.out_grid)]
    if function == "softmax":
        if not is_last:
            raise FirmwareError(
                f"layer {name!r} is a softmax in the middle of the model; backends approximate "
                "softmax with tables, so only a final softmax is accepted (it is checked separately)."
            )
        return [IRLayer(name, "softmax", shape, shape, None, prev.out_type, sources=[name])]
    low = lowering_of(name, act)
    grid = None if low.grid.is_uniform else _grid_for(name, low.grid, tuple(shape))
    node = IRLayer(name, low.op, shape, shape, low.grid.union(), prev.out_type, sources=[name],
                   out_grid=grid, in_grid=prev.out_grid)
    return [node]


def lowering_of(name: str, act: Any) -> Lowering:
    """The exact operation of quantizer ``act`` in layer ``name``'s activation slot, or a refusal
    naming the layer (also what the precheck asks, before any shape is known)."""
    if not callable(getattr(act, "lowering", None)):
        raise FirmwareError(
            f"layer {name!r} applies the float activation {type(act).__name__}, which firmware "
            "cannot reproduce exactly. Quantize it (quantized_relu for ReLU) or remove it."
        )
    stochastic_guard(name, act)
    try:
        return act.lowering()
    except FirmwareError as err:
        raise FirmwareError(f"layer {name!r}: {err}") from None


def _grid_for(name: str, grid: FixedPointGrid, shape: tuple[int, ...]) -> FixedPointGrid:
    """The per-element grid over the tensor it applies to (one sample), or a refusal when the
    quantizer was materialised for a different shape (e.g. a model rebuilt with other sizes)."""
    try:
        return grid.broadcast_to(shape)
    except ValueError:
        raise FirmwareError(
            f"layer {name!r}: its activation quantizer has per-element formats of shape "
            f"{grid.shape}, but the tensor it quantizes has shape {shape}; the quantizer was "
            "materialised for another model. Rebuild the model from its plan and retrain (or "
            "load the run's model.pt into a model built with the same layer sizes)."
        ) from None
