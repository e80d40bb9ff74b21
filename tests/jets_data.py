"""Tiny jet files for end-to-end tests: the npz layout hqrun reads, with separable classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hqrun.data import JET_CLASSES, JET_FEATURES, Scaler, Splits


def write_tiny_jets(path: Path, n: int, seed: int, spread: float, offset: float = 0.0) -> Path:
    """``n`` rows cycling through the 5 classes; class means drawn with std ``spread``."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 5
    X = (rng.normal(size=(n, 16)) + spread * rng.normal(size=(5, 16))[y] + offset).astype(np.float32)
    np.savez(path, X=X, y=y.astype(np.int64), feature_names=np.array(JET_FEATURES),
             class_names=np.array(JET_CLASSES))
    return path


def synthetic_splits(n: int, seed: int = 0) -> Splits:
    """In-memory train/val/test splits (``n``, ``n//4``, ``n//4`` rows) of 5 Gaussian classes in
    16 features, identity scaler: for trainer tests that need no file."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, 16)) * 1.5

    def draw(m: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(m) % 5
        return (centres[y] + rng.normal(size=(m, 16))).astype(np.float32), y.astype(np.int64)

    (a, b), (c, d), (e, f) = draw(n), draw(n // 4), draw(n // 4)
    names = [f"f{i}" for i in range(16)]
    return Splits(a, b, c, d, e, f, names, list("gqtwz"), Scaler.identity(16, names), "synthetic")
