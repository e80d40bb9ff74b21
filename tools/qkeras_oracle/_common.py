"""Shared helpers of the QKeras oracle generators.

These scripts run in a separate virtualenv with QKeras 0.9.0 + TensorFlow (see docs/oracle.md).
They are never imported by hqrun or by its tests; the tests only read the JSON they write.

Why a custom float encoding: golden values must round-trip *exactly* to float32, yet the file
must stay small and readable.  Each float32 is written as the shortest decimal that numpy says
identifies it (``str(np.float32(v))``); if reading that decimal back through a float64 and then
rounding to float32 would not give the same bits (double rounding, rare), the exact float64 value
of the float32 is written instead.  Either way ``np.float32(json_value)`` is bit-identical.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from typing import Any, Iterable

import numpy as np


def setup_env() -> None:
    """Force the legacy (tf_keras) Keras that QKeras 0.9.0 needs, one thread, quiet TF."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def f32_to_json(v: np.float32) -> float:
    """Return a Python float that converts back to exactly this float32 (sign of zero kept)."""
    v = np.float32(v)
    if not np.isfinite(v):
        raise ValueError(f"non-finite value {v!r} cannot be stored in the golden JSON")
    d = float(str(v))
    back = np.float32(d)
    if back.tobytes() != v.tobytes():
        d = float(v)
    return d


def f32_list(a: Iterable[Any]) -> list[float]:
    """Flatten an array to a list of exactly-round-tripping float32 values."""
    arr = np.asarray(a, dtype=np.float32).ravel()
    return [f32_to_json(v) for v in arr]


def versions() -> dict[str, str]:
    """Versions of everything that influenced the numbers, for the file header."""
    import importlib.metadata as md

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("qkeras", "tensorflow", "tf_keras", "numpy", "networkx", "scipy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def write_json(path: str, obj: Any) -> None:
    """Write compact JSON (one entry per line at the top level of lists) deterministically."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(obj, fh, separators=(",", ":"), sort_keys=False)
        fh.write("\n")
