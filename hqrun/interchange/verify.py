"""Bit-for-bit comparison of a QONNX graph's logits with an hqrun model's.

Why two references: hqrun's PyTorch model computes in float32 like QONNX's executor, and that is
the comparison the proof is about (the issue's "logits bit for bit"). But float32 holds only 24
significant bits, so when a layer's exact accumulator is wider both float32 computations may
round — identically or not. The model is therefore also run in float64 (exact up to 53 bits, the
value the firmware builds), and every accumulator wider than 24 bits is named in the report
(from the shared type inference, policy ``exact``), so a pass there is reported as measured on
these samples, not as guaranteed.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from hqrun.errors import CostModelError
from hqrun.quantizers.fixedpoint import FixedPointType
from hqrun.quantizers.layer_kinds import MAC_KINDS
from hqrun.quantizers.typeinfer import infer_types

from .formats import FLOAT32_CODE_BITS

__all__ = ["Comparison", "compare_logits", "model_logits", "float32_risks"]


@dataclass
class Comparison:
    """How two logit arrays (samples x classes) agree: bit for bit, and by argmax."""

    n_samples: int
    mismatches: int
    argmax_agreement: float
    max_abs_diff: float
    first_mismatch: dict[str, Any] | None = None

    @property
    def exact(self) -> bool:
        return self.mismatches == 0 and self.n_samples > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        if self.exact:
            return f"bit-exact on {self.n_samples} of {self.n_samples} samples"
        return (f"{self.mismatches} of {self.n_samples} samples differ (first: "
                f"{self.first_mismatch}); argmax agreement {self.argmax_agreement:.4f}")


def compare_logits(graph: np.ndarray, model: np.ndarray) -> Comparison:
    """Compare ``graph`` logits with ``model`` logits (same shape) bit for bit.

    Values are compared as float64 numbers (a float32 array equals a float64 one only where
    every value is the same number); -0.0 and +0.0 count as equal, as in fixed point.
    """
    g = np.asarray(graph, dtype=np.float64).reshape(len(graph), -1)
    m = np.asarray(model, dtype=np.float64).reshape(len(model), -1)
    if g.shape != m.shape:
        raise ValueError(f"logit shapes differ: graph {g.shape}, model {m.shape}")
    differs = g != m
    bad = np.flatnonzero(differs.any(axis=1))
    first = None
    if bad.size:
        i = int(bad[0])
        j = int(np.flatnonzero(differs[i])[0])
        first = {"sample": i, "logit": j, "graph": float(g[i, j]), "model": float(m[i, j])}
    agree = float(np.mean(g.argmax(axis=1) == m.argmax(axis=1))) if len(g) else 0.0
    diff = float(np.max(np.abs(g - m))) if g.size else 0.0
    return Comparison(len(g), int(bad.size), agree, diff, first)


@torch.no_grad()
def model_logits(model: nn.Module, x: np.ndarray, dtype: torch.dtype = torch.float32,
                 batch_size: int = 16384) -> np.ndarray:
    """The model's eval-mode logits (its forward skips a trailing softmax) in ``dtype``.

    float64 runs on a copy, so the caller's model keeps its float32 weights.
    """
    net = model if dtype == torch.float32 else copy.deepcopy(model).to(dtype)
    net.eval()
    parts = [net(torch.as_tensor(np.asarray(x[i:i + batch_size]), dtype=dtype)).cpu().numpy()
             for i in range(0, len(x), batch_size)]
    return np.concatenate(parts, axis=0)


def float32_risks(model: nn.Module, input_type: FixedPointType | None,
                  input_shape: tuple[int, ...]) -> list[str]:
    """Layers whose exact accumulator is wider than float32's significand (or untyped).

    Empty: every partial sum of every layer is a float32 number, so any float32 execution of
    the graph (any summation order, with or without FMA) is exact.
    """
    try:
        rows = infer_types(model, input_type, policy="exact", input_shape=input_shape)
    except CostModelError as err:
        return [f"the type inference cannot type the model ({err})"]
    risks = []
    for row in rows:
        if row.kind not in MAC_KINDS:
            continue
        acc = row.accumulator
        if acc is None:
            risks.append(f"{row.name}: no exact accumulator type ({', '.join(row.flags) or 'float input'})")
        elif acc.width > FLOAT32_CODE_BITS:
            risks.append(f"{row.name}: accumulator {acc.hls_name} is wider than float32's "
                         f"{FLOAT32_CODE_BITS}-bit significand")
    return risks
