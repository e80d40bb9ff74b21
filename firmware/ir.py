"""Fixed-point IR: a trained hqrun model as a list of integer-arithmetic layers (data only).

Why an IR: the emulator (hqrun's own exact inference), every backend writer (hls4ml, RTL) and the
report must all read *the same* numbers — integer weight codes, their types, accumulator and result
types — so they cannot drift apart. The IR is built once from the model by
:func:`hqrun.firmware.convert.build_ir` (types from the shared type inference, weights through
the layers' ``quantized_*()`` methods), rewritten by the passes of ``hqrun.firmware.passes`` in
their declared order, then handed to every later stage.

Layout follows PyTorch: activations channels-first, dense weights ``(out, in)``, conv weights
``(out, in, *kernel)``. Values of a tensor of type ``t`` are ``codes * 2**-t.fractional``. A layer
whose output elements have formats of their own (learned widths) carries them in ``out_grid``
(a :class:`~hqrun.quantizers.grid.FixedPointGrid` of the output's shape); ``out_type`` is then
the grid's union, the one type that holds every element, and codes are counted in its LSB.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from hqrun.errors import FirmwareError
from hqrun.quantizers.fixedpoint import FixedPointType
from hqrun.quantizers.grid import FixedPointGrid

__all__ = ["IRLayer", "FirmwareIR", "IR_OPS", "DEFAULT_INPUT_TYPE", "MAX_ACCUM_WIDTH", "to_codes",
           "fixed_point_str"]

#: Input type used when the model has no input quantizer (hls4ml's customary default).
DEFAULT_INPUT_TYPE = FixedPointType(16, 6, True, "RND_CONV", "SAT")

#: Widest accumulator accepted: its values must survive the float64 trace of a simulation.
MAX_ACCUM_WIDTH = 53

#: Operations of a finished IR (``batchnorm`` and ``quant`` exist only before the passes fold them).
IR_OPS = ("input", "dense", "conv1d", "conv2d", "relu", "flatten", "avgpool2d", "zeropad1d",
          "zeropad2d", "softmax")


@dataclass
class IRLayer:
    """One layer of the fixed-point IR.

    ``op`` is one of :data:`IR_OPS`. ``name`` is the hqrun layer name (backends keep it, so traces
    line up); ``sources`` lists every hqrun layer folded into this one. ``out_grid`` /
    ``in_grid`` / ``weight_grid`` hold per-element formats where elements differ (else None).
    """

    name: str
    op: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    out_type: FixedPointType | None
    in_type: FixedPointType | None = None
    weight: np.ndarray | None = None  # int64 codes
    bias: np.ndarray | None = None  # int64 codes
    weight_type: FixedPointType | None = None
    bias_type: FixedPointType | None = None
    accum_type: FixedPointType | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    out_grid: FixedPointGrid | None = None
    in_grid: FixedPointGrid | None = None
    weight_grid: FixedPointGrid | None = None

    @property
    def is_mac(self) -> bool:
        return self.op in ("dense", "conv1d", "conv2d")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (types by HLS name, no weight arrays)."""
        out: dict[str, Any] = {"name": self.name, "op": self.op, "in_shape": list(self.in_shape),
                               "out_shape": list(self.out_shape), "sources": list(self.sources)}
        for key in ("in_type", "weight_type", "bias_type", "accum_type", "out_type"):
            t = getattr(self, key)
            out[key] = None if t is None else t.hls_name
        for key in ("out_grid", "weight_grid"):
            grid = getattr(self, key)
            if grid is not None:
                bits = grid.bits()
                out[key] = {"min_bits": int(bits.min()), "max_bits": int(bits.max()),
                            "mean_bits": round(float(bits.mean()), 3),
                            "empty_elements": int((bits == 0).sum())}
        if self.weight is not None:
            out["n_weights"] = int(self.weight.size)
            out["n_zero_weights"] = int((self.weight == 0).sum())
        out.update({k: v for k, v in self.attrs.items() if isinstance(v, (int, float, str, list, tuple))})
        return out


@dataclass
class FirmwareIR:
    """The whole model: layers in order; ``layers[0]`` is the input layer."""

    layers: list[IRLayer]
    policy: str = "exact"
    #: Names of the passes that ran, in order (the report lists them).
    passes: list[str] = field(default_factory=list)

    @property
    def input_type(self) -> FixedPointType:
        return self.layers[0].out_type  # type: ignore[return-value]

    @property
    def input_grid(self) -> FixedPointGrid | None:
        return self.layers[0].out_grid

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.layers[0].out_shape

    def layer(self, name: str) -> IRLayer:
        return next(layer for layer in self.layers if layer.name == name)

    def last_quantized(self) -> IRLayer:
        """The last layer whose output lies on a fixed-point grid (the bit-exact check point)."""
        for layer in reversed(self.layers):
            if layer.out_type is not None:
                return layer
        raise FirmwareError("the model has no fixed-point layer at all; nothing to verify.")

    def has_softmax(self) -> bool:
        return any(layer.op == "softmax" for layer in self.layers)

    def to_dict(self) -> list[dict[str, Any]]:
        return [layer.to_dict() for layer in self.layers]


def to_codes(values: Any, t: FixedPointType, what: str) -> np.ndarray:
    """Integer codes of values that must already lie on ``t``'s grid (else refuse: not exact)."""
    v = values.detach().to(torch.float64).cpu().numpy() if isinstance(values, torch.Tensor) \
        else np.asarray(values, dtype=np.float64)
    scaled = np.ldexp(v, t.fractional)
    if scaled.size and np.max(np.abs(scaled)) >= 2.0**62:
        raise FirmwareError(f"{what} needs more than 62 bits in type {t.hls_name}; use a narrower "
                            "quantizer.")
    if not np.all(np.isfinite(scaled)) or not np.all(scaled == np.round(scaled)):
        raise FirmwareError(
            f"{what} has values that are not on the grid of its type {t.hls_name}, so no firmware "
            "can reproduce them exactly. Give it a quantizer whose outputs lie on one fixed-point "
            "grid (e.g. quantized_bits(bits,integer,alpha=1))."
        )
    codes = np.round(scaled).astype(np.int64)
    if codes.size and (codes.min() < t.min_code or codes.max() > t.max_code):
        raise FirmwareError(
            f"{what} has values outside the range of its type {t.hls_name}; widen the quantizer."
        )
    return codes


def fixed_point_str(t: FixedPointType | None) -> str:
    return "float" if t is None else t.hls_name
