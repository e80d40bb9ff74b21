"""Tiny jet files for end-to-end tests: the npz layout hqrun reads, with separable classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hqrun.data import JET_CLASSES, JET_FEATURES


def write_tiny_jets(path: Path, n: int, seed: int, spread: float, offset: float = 0.0) -> Path:
    """``n`` rows cycling through the 5 classes; class means drawn with std ``spread``."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 5
    X = (rng.normal(size=(n, 16)) + spread * rng.normal(size=(5, 16))[y] + offset).astype(np.float32)
    np.savez(path, X=X, y=y.astype(np.int64), feature_names=np.array(JET_FEATURES),
             class_names=np.array(JET_CLASSES))
    return path
