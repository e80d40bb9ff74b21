"""Sample-by-sample comparison of C simulation, hqrun's emulation and the PyTorch model.

The contract (docs/firmware.md): at the output of the last fixed-point layer the C simulation's
integer codes equal the emulation's for every sample, and the emulation equals the PyTorch
model's eval output on the grid. The final softmax, which hls4ml approximates with lookup tables,
is reported separately (argmax agreement, largest deviation), never counted as "exact".
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .backends import SimResult
from .emulate import Emulation
from .ir import FirmwareIR

__all__ = ["Verification", "verify", "unverified", "torch_reference"]


@dataclass
class Verification:
    """Outcome of one verification run (all counts over ``n_samples``)."""

    n_samples: int
    check_layer: str
    check_type: str
    csim_equal: bool
    n_mismatch: int
    first_mismatch_sample: int | None = None
    first_divergent_layer: str | None = None
    mismatch_detail: str | None = None
    torch_equal: bool | None = None
    torch_n_mismatch: int | None = None
    torch_dtype: str | None = None
    softmax: dict[str, Any] | None = None
    accuracy: dict[str, float] | None = None
    layers_compared: list[str] = field(default_factory=list)
    simulator: str = "simulation"
    #: Why the simulation did not run (a missing tool); the design is written but unproven.
    not_run: str | None = None

    @property
    def passed(self) -> bool:
        """Bit-exact: simulation == emulation and (when checked) emulation == PyTorch model."""
        return self.not_run is None and self.csim_equal and self.torch_equal is not False

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["passed"] = self.passed
        out["summary"] = self.summary()
        return out

    def summary(self) -> str:
        if self.not_run is not None:
            return f"NOT VERIFIED: the simulation did not run. {self.not_run}"
        if self.passed:
            torch_part = "" if self.torch_equal is None else " and to the PyTorch model"
            return (f"bit-exact: the {self.simulator} is identical to hqrun's fixed-point emulation{torch_part} "
                    f"on {self.n_samples}/{self.n_samples} samples at {self.check_layer!r} "
                    f"({self.check_type})")
        if not self.csim_equal:
            return (f"MISMATCH: the {self.simulator} differs from the emulation on {self.n_mismatch}/"
                    f"{self.n_samples} samples; first at sample {self.first_mismatch_sample}, first "
                    f"divergent layer {self.first_divergent_layer!r}. {self.mismatch_detail or ''}")
        return (f"MISMATCH: hqrun's emulation differs from the PyTorch model on "
                f"{self.torch_n_mismatch}/{self.n_samples} samples at {self.check_layer!r}")


def _is_softmax(module: nn.Module) -> bool:
    if isinstance(module, nn.Softmax):
        return True
    return getattr(module, "float_function", None) == "softmax" and isinstance(
        getattr(module, "activation", None), nn.Softmax)


def torch_reference(model: nn.Module, x: np.ndarray, dtype: torch.dtype = torch.float32) -> np.ndarray:
    """The model's eval output before a trailing softmax (the logits), as float64.

    Runs the children in order (as QSequential does), so a plain ``nn.Sequential`` whose last
    child is a softmax is compared at its logits too.
    """
    m = model if dtype == torch.float32 else copy.deepcopy(model).to(dtype)
    m.eval()
    mods = list(m.children())
    while mods and _is_softmax(mods[-1]):
        mods.pop()
    with torch.no_grad():
        y = torch.as_tensor(np.asarray(x), dtype=dtype)
        for mod in mods:
            y = mod(y)
    return y.detach().to(torch.float64).cpu().numpy()


def _first_divergence(ir: FirmwareIR, emu: Emulation, csim: SimResult, sample: int) -> tuple[str | None, str]:
    """The first layer whose traced codes differ — only when every fixed-point layer before it
    was traced too (a simulation read only at its output cannot say where it went wrong)."""
    gap = False
    for layer in ir.layers[1:]:
        if layer.name not in csim.codes or layer.name not in emu.codes:
            gap = gap or (layer.out_type is not None and layer.op != "flatten")
            continue
        a = emu.codes[layer.name][sample]
        b = csim.codes[layer.name][sample]
        if not np.array_equal(a, b):
            idx = int(np.flatnonzero((a != b).reshape(-1))[0])
            fa = np.ldexp(float(a.reshape(-1)[idx]), -layer.out_type.fractional)
            fb = np.ldexp(float(b.reshape(-1)[idx]), -layer.out_type.fractional)
            detail = (f"layer {layer.name!r} element {idx}: emulation {fa!r}, simulation {fb!r} "
                      f"(type {layer.out_type.hls_name})")
            return (None if gap else layer.name), detail
    return None, "no traced layer differs (only the final output)"


def verify(ir: FirmwareIR, emu: Emulation, csim: SimResult, model: nn.Module | None = None,
           x: np.ndarray | None = None, labels: np.ndarray | None = None) -> Verification:
    """Compare C-sim with the emulation (and the emulation with ``model(x)`` when given)."""
    check = ir.last_quantized()
    ref = emu.codes[check.name]
    got = csim.codes.get(check.name)
    n = int(ref.shape[0])
    if got is None:  # no trace for this layer: fall back to the project's own output
        got = np.round(np.ldexp(csim.output.reshape(ref.shape), check.out_type.fractional)).astype(np.int64)
    bad = np.any((ref != got).reshape(n, -1), axis=1)
    v = Verification(n, check.name, check.out_type.hls_name, not bool(bad.any()), int(bad.sum()),
                     layers_compared=[name for name in csim.codes if name in emu.codes],
                     simulator=str(csim.extra.get("simulator", "simulation")))
    if bad.any():
        s = int(np.flatnonzero(bad)[0])
        v.first_mismatch_sample = s
        v.first_divergent_layer, v.mismatch_detail = _first_divergence(ir, emu, csim, s)
    if model is not None and x is not None:
        values = emu.values(check.name).reshape(n, -1)
        y = torch_reference(model, x, torch.float32).reshape(n, -1)
        v.torch_dtype = "float32"
        if not np.array_equal(y, values):
            # float32 holds 24 significant bits; wider accumulators need the float64 model.
            y = torch_reference(model, x, torch.float64).reshape(n, -1)
            v.torch_dtype = "float64"
        tbad = np.any(y != values, axis=1)
        v.torch_equal = not bool(tbad.any())
        v.torch_n_mismatch = int(tbad.sum())
    logits = emu.values(check.name).reshape(n, -1)
    if ir.has_softmax():
        sm_name = next(layer.name for layer in ir.layers if layer.op == "softmax")
        fw = csim.output.reshape(n, -1)
        ref_sm = emu.floats[sm_name].reshape(n, -1)
        v.softmax = {
            "argmax_agreement": float(np.mean(np.argmax(fw, 1) == np.argmax(ref_sm, 1))),
            "max_abs_deviation": float(np.max(np.abs(fw - ref_sm))) if n else 0.0,
            "note": "hls4ml's softmax uses lookup tables; it is compared, not required to be exact",
        }
    if labels is not None:
        lab = np.asarray(labels).reshape(-1)
        fw_scores = csim.output.reshape(n, -1) if ir.has_softmax() else np.ldexp(
            got.reshape(n, -1).astype(np.float64), -check.out_type.fractional)
        v.accuracy = {
            "model": float(np.mean(np.argmax(logits, 1) == lab)),
            "firmware": float(np.mean(np.argmax(fw_scores, 1) == lab)),
            "firmware_logits": float(np.mean(np.argmax(np.ldexp(
                got.reshape(n, -1).astype(np.float64), -check.out_type.fractional), 1) == lab)),
        }
    return v


def unverified(ir: FirmwareIR, reason: str, n_samples: int) -> Verification:
    """The record of a design whose simulation could not run (``reason`` says what to install)."""
    check = ir.last_quantized()
    return Verification(n_samples, check.name, check.out_type.hls_name, False, 0, not_run=reason)
