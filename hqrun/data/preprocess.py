"""Non-finite rows, the stratified split, and the scaler fitted on the train split only.

The scaler is part of the model as deployed: the firmware receives raw features and must apply
the same affine map the network was trained behind. So it is a small object with an exact JSON
form (``scaler.json``: per-feature ``mean`` and ``scale``, ``x' = (x - mean) / scale``), fitted on
the train split alone so that no validation or test statistics leak into training.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from hqrun.errors import ConfigError, DataError


def handle_non_finite(
    X: np.ndarray, y: np.ndarray, feature_names: Sequence[str], source: str, policy: str = "reject"
) -> tuple[np.ndarray, np.ndarray, int]:
    """Count rows with NaN/inf; refuse them (``reject``) or drop them (``drop``).

    Returns the kept arrays and the number of dropped rows.
    """
    if policy not in ("reject", "drop"):
        raise ConfigError(f"data.nan_policy={policy!r} is not valid; use reject or drop.")
    flat = X.reshape(len(X), -1)
    finite = np.isfinite(flat)
    bad_rows = ~finite.all(axis=1)
    n_bad = int(bad_rows.sum())
    if n_bad == 0:
        return X, y, 0
    if policy == "reject":
        per_column = (~finite).sum(axis=0)
        worst = np.argsort(-per_column)[:5]
        named = {str(feature_names[i]) if i < len(feature_names) else str(i): int(per_column[i])
                 for i in worst if per_column[i] > 0}
        raise DataError(
            f"{source}: {n_bad} of {len(X)} rows contain NaN or inf values (non-finite values per "
            f"feature: {named}). Clean the file, or drop those rows with data.nan_policy=drop."
        )
    return X[~bad_rows], y[~bad_rows], n_bad


class DataWarning(UserWarning):
    """The data can be trained on, but something about them will make the results weak."""


#: A class with fewer training rows than this gets a warning (its metrics will be noise).
FEW_ROWS_PER_CLASS = 10


def check_classes(y: np.ndarray, class_names: Sequence[str], source: str,
                  fractions: Sequence[float]) -> None:
    """Refuse labels a classifier cannot be trained and evaluated on, before the split.

    Why: a file holding one class trained without a word and reported a ROC AUC of nan, and a
    5-row file was split 3/1/1 and reported a test accuracy of 0.0. Every class the data set
    names must have rows, at least two classes must be present, and each class needs enough
    rows that the stratified split (``fractions``: the fraction each later cut takes, e.g.
    test then validation) leaves it at least one row in every part.
    """
    names = [str(c) for c in class_names]
    if len(y) == 0:
        raise DataError(f"{source}: no rows are left to train on (every row was dropped or the "
                        "file holds none). Check the file and data.nan_policy.")
    if len(names) < 2:
        raise ConfigError(f"{source}: the data set has {len(names)} class(es) {names}; a "
                          "classifier needs at least two (check data.classes).")
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=len(names))
    present = [i for i, n in enumerate(counts) if n > 0]
    if len(present) < 2:
        only = f"class {names[present[0]]!r}" if present else "no class"
        raise DataError(
            f"{source}: all {len(y)} rows belong to {only}; a classifier needs rows of at least "
            "two classes (with one class there is nothing to learn and the ROC AUC is undefined). "
            "Check the label column, or that the file is the whole data set.")
    absent = [names[i] for i, n in enumerate(counts) if n == 0]
    if absent:
        raise DataError(
            f"{source}: the class(es) {absent} have no rows, so the model would have outputs "
            "that are never trained and their metrics would be undefined. List only the classes "
            f"the data hold with data.classes=[{','.join(names[i] for i in present)}] (or use the "
            "whole data set).")
    need = rows_needed_per_class(fractions)
    short = {names[i]: int(counts[i]) for i in present if counts[i] < need}
    if short:
        raise DataError(
            f"{source}: {len(y)} rows are too few to split: the class(es) {short} (rows per class) "
            f"have fewer than {need} rows, the least that leaves each class at least one row in "
            "the train, validation and test splits. Use more data (or a larger data.max_samples).")


def rows_needed_per_class(fractions: Sequence[float]) -> int:
    """The fewest rows of a class that stratified cuts taking ``fractions`` in turn leave at
    least one row in each part (and in what remains)."""
    need, kept = 2, 1.0
    for fraction in fractions:
        need = max(need, math.ceil(1.0 / (kept * fraction) - 1e-9),
                   math.ceil(1.0 / (kept * (1.0 - fraction)) - 1e-9))
        kept *= 1.0 - fraction
    return need


def warn_few_rows(y_train: np.ndarray, class_names: Sequence[str], source: str) -> None:
    """A warning (training goes on) for classes with very few training rows."""
    counts = np.bincount(np.asarray(y_train, dtype=np.int64), minlength=len(class_names))
    few = {str(class_names[i]): int(n) for i, n in enumerate(counts) if n < FEW_ROWS_PER_CLASS}
    if few:
        warnings.warn(f"{source}: the class(es) {few} have fewer than {FEW_ROWS_PER_CLASS} "
                      "training rows each; their accuracy and ROC AUC will be noisy. Use more "
                      "data if you can.", DataWarning, stacklevel=2)


def stratified_subsample(X: np.ndarray, y: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep ``n`` rows with the class proportions of the whole (used for quick runs)."""
    if n >= len(X):
        return X, y
    from sklearn.model_selection import train_test_split

    X_keep, _, y_keep, _ = train_test_split(X, y, train_size=n, stratify=_stratify(y), random_state=seed)
    return X_keep, y_keep


def _stratify(y: np.ndarray):
    """Stratify only where every class has at least two members (sklearn's requirement)."""
    counts = np.bincount(y)
    counts = counts[counts > 0]
    return y if counts.size and counts.min() >= 2 else None


def split(
    X: np.ndarray, y: np.ndarray, test_fraction: float, val_fraction: float, seed: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Stratified train/val/test split: ``test_fraction`` of all rows, then ``val_fraction`` of the rest.

    Uses scikit-learn's ``train_test_split`` with ``random_state=seed`` for both cuts, so the
    test split is exactly the one a scikit-learn reference with the same seed evaluates on.
    """
    from sklearn.model_selection import train_test_split

    for name, value in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not 0.0 < value < 1.0:
            raise ConfigError(f"data.{name}={value} must lie strictly between 0 and 1.")
    try:
        X_rest, X_test, y_rest, y_test = train_test_split(
            X, y, test_size=test_fraction, stratify=_stratify(y), random_state=seed
        )
        X_train, X_val, y_train, y_val = train_test_split(
            X_rest, y_rest, test_size=val_fraction, stratify=_stratify(y_rest), random_state=seed
        )
    except ValueError as err:
        raise DataError(
            f"cannot split {len(X)} rows into train/val/test ({err}); use more data or larger "
            "data.test_fraction / data.val_fraction."
        ) from None
    return {"train": (X_train, y_train), "val": (X_val, y_val), "test": (X_test, y_test)}


def split_train_val(X: np.ndarray, y: np.ndarray, val_fraction: float, seed: int):
    """Validation split only (when the source brings its own test split)."""
    from sklearn.model_selection import train_test_split

    return train_test_split(X, y, test_size=val_fraction, stratify=_stratify(y), random_state=seed)


@dataclass
class Scaler:
    """Per-feature affine input map ``(x - mean) / scale``, saved with the run."""

    mean: np.ndarray
    scale: np.ndarray
    feature_names: list[str]
    kind: str = "standard"  # standard (fitted on train) | image (x / 255) | identity

    @classmethod
    def fit(cls, X: np.ndarray, feature_names: Sequence[str]) -> "Scaler":
        """Mean and population standard deviation of the train split (constant columns: scale 1)."""
        X64 = X.astype(np.float64)
        mean = X64.mean(axis=0)
        std = X64.std(axis=0)
        std[~(std > 0)] = 1.0
        return cls(mean, std, list(feature_names), "standard")

    @classmethod
    def identity(cls, n_features: int, feature_names: Sequence[str], kind: str = "identity", scale: float = 1.0) -> "Scaler":
        return cls(np.zeros(n_features), np.full(n_features, float(scale)), list(feature_names), kind)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Apply the map in float64 and return float32 (the model's input dtype)."""
        if self.kind == "image":
            return (X.astype(np.float32) / np.float32(self.scale[0])).astype(np.float32)
        shape = X.shape
        flat = X.reshape(len(X), -1).astype(np.float64)
        return ((flat - self.mean) / self.scale).astype(np.float32).reshape(shape)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "formula": "(x - mean) / scale",
            "feature_names": list(self.feature_names),
            "mean": [float(v) for v in self.mean],
            "scale": [float(v) for v in self.scale],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Scaler":
        return cls(np.asarray(data["mean"], dtype=np.float64), np.asarray(data["scale"], dtype=np.float64),
                   list(data.get("feature_names", [])), data.get("kind", "standard"))

    def save(self, path: str | os.PathLike) -> None:
        from hqrun import atomic

        atomic.write_json(path, self.to_dict(), indent=1)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Scaler":
        """Read ``scaler.json``; a damaged file is a :class:`DataError`, not a traceback."""
        try:
            with open(path, encoding="utf-8") as handle:
                scaler = cls.from_dict(json.load(handle))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise DataError(
                f"{path} is not a readable scaler ({type(err).__name__}: {err}); it should be the "
                "scaler.json `hqrun train` wrote (mean and scale per feature). Restore it from "
                "the run, or retrain."
            ) from None
        if scaler.mean.ndim != 1 or scaler.mean.shape != scaler.scale.shape or \
                not (np.all(np.isfinite(scaler.mean)) and np.all(np.isfinite(scaler.scale))):
            raise DataError(f"{path} is not a usable scaler: mean and scale must be finite lists "
                            "of the same length. Restore it from the run, or retrain.")
        return scaler
