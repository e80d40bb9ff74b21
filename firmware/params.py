"""Weight, bias and input formats the firmware can build exactly, or a refusal saying why.

The type of a weight slot is the shared type inference's (:mod:`hqrun.quantizers.exact_types`):
these checks only add the firmware's own conditions — a quantizer must exist, must be
deterministic and must put its values on a fixed-point grid — and name the fix when it does not.
"""

from __future__ import annotations

from typing import Any

import torch

from hqrun.errors import FirmwareError
from hqrun.quantizers.exact_types import exact_param_type
from hqrun.quantizers.fixedpoint import FixedPointType
from hqrun.quantizers.grid import FixedPointGrid

__all__ = ["stochastic_guard", "param_type", "input_format"]


def stochastic_guard(layer_name: str, q: Any, slot: str = "activation") -> None:
    """Refuse a quantizer whose inference output is random (it cannot be frozen into logic)."""
    if q is not None and getattr(q, "is_stochastic", False):
        raise FirmwareError(
            f"layer {layer_name!r} ({slot} quantizer {q}) is stochastic; its inference output is "
            "random and cannot be frozen into firmware. Use its deterministic counterpart "
            "(binary, ternary, quantized_bits, quantized_relu)."
        )


def param_type(layer_name: str, slot: str, q: Any, values: torch.Tensor) -> FixedPointType:
    """The exact type of a weight/bias slot (as the type inference computes it), or a refusal."""
    if q is None:
        raise FirmwareError(
            f"layer {layer_name!r} has a float {slot} (no {slot} quantizer), which firmware cannot "
            f"reproduce bit for bit. Give '{slot}' a quantizer in the plan, e.g. "
            f"{layer_name}: {{{slot}: \"quantized_bits(8,3,alpha=1)\"}}."
        )
    stochastic_guard(layer_name, q, slot)
    t = exact_param_type(q.fixed_point_type(), values.detach().to(torch.float64).cpu().numpy(),
                         bool(getattr(q, "grid_from_values", False)))
    if t is None:
        alpha = getattr(q, "alpha", None)
        raise FirmwareError(
            f"layer {layer_name!r} ({slot} quantizer {q}) has no fixed-point grid (alpha={alpha!r} "
            "gives per-channel scales that are not powers of two), so the firmware cannot "
            "reproduce it exactly. Use alpha=1 or alpha=\"auto_po2\" in the plan for this layer "
            "and retrain."
        )
    return t


def input_format(layer_name: str, q: Any) -> tuple[FixedPointType, FixedPointGrid | None]:
    """Type (and per-element grid, when elements differ) of the values an input quantizer makes."""
    stochastic_guard(layer_name, q, "input")
    grid = q.fixed_point_grid() if callable(getattr(q, "fixed_point_grid", None)) else None
    if grid is None:
        raise FirmwareError(
            f"input quantizer {q} of layer {layer_name!r} has no fixed-point type; use "
            "quantized_bits(bits,integer) for the input."
        )
    return grid.union(), None if grid.is_uniform else grid
