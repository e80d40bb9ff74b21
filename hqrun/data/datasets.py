"""``load_dataset(cfg.data, seed) -> Splits``: the one entry point from config to arrays.

Training, the search and the firmware testbench all start here, so they see the same split and
the same scaling for the same seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from hqrun.data.config import JET_CLASSES, JET_FEATURES, DataConfig
from hqrun.data.preprocess import (Scaler, check_classes, handle_non_finite, split, split_train_val,
                                   stratified_subsample, warn_few_rows)
from hqrun.data.raw import RawData
from hqrun.errors import ConfigError, DataError

SOURCES = ("sample", "file", "openml", "idx")


@dataclass
class Splits:
    """Scaled float32 train/val/test arrays plus what is needed to reproduce the scaling."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    feature_names: list[str]
    class_names: list[str]
    scaler: Scaler
    source: str
    info: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample (``(16,)`` for jets, ``(1, 28, 28)`` for MNIST images)."""
        return tuple(self.X_train.shape[1:])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def summary(self) -> dict:
        return {
            "source": self.source,
            "n_train": int(len(self.y_train)),
            "n_val": int(len(self.y_val)),
            "n_test": int(len(self.y_test)),
            "input_shape": list(self.input_shape),
            "class_names": list(self.class_names),
            **self.info,
        }


def sample_path() -> Path:
    """Location of the jet sample shipped inside the package."""
    return Path(str(resources.files("hqrun"))) / "data_files" / "jets_sample.npz"


def _get(cfg: Any, key: str, default=None):
    if isinstance(cfg, dict):
        return cfg.get(key, default)
    return getattr(cfg, key, default) if not hasattr(cfg, "get") else cfg.get(key, default)


def read_raw(cfg: Any) -> RawData:
    """Dispatch on ``cfg.source`` to the reader and return unsplit, unscaled data."""
    source = _get(cfg, "source", "sample")
    features = list(_get(cfg, "features") or JET_FEATURES)
    classes = list(_get(cfg, "classes") or JET_CLASSES)
    if source == "sample" and _get(cfg, "path"):
        # data.path without data=jets_file: the user means that file. It is read exactly as
        # data=jets_file would read it (the two configs differ only in their source), and a
        # wrong path gets the file reader's "no such file", not "the sample is missing".
        source = "file"
    if source == "sample":
        path = sample_path()
        if not path.is_file():
            raise DataError(
                f"{path}: the embedded jet sample is missing from this installation. Regenerate it "
                "with `hqrun datagen jets` (needs `pip install hqrun[physics]`), or train on another "
                "source, e.g. data=jets_file data.path=FILE."
            )
        from hqrun.data.readers import read_npz

        return read_npz(path, features, classes)
    if source == "file":
        path = _get(cfg, "path")
        if not path:
            raise ConfigError(
                "data=jets_file needs the file: add data.path=FILE (npz, csv, arff, parquet, or a "
                "Zenodo .h5 file or directory)."
            )
        from hqrun.data.readers import read_file

        return read_file(path, features, classes, fmt=_get(cfg, "format", "auto"),
                         label_column=_get(cfg, "label_column", "class"),
                         extra_columns=_get(cfg, "extra_columns", "error"))
    if source == "openml":
        from hqrun.data.openml import read_openml

        return read_openml(int(_get(cfg, "openml_id", 42468)), str(_get(cfg, "cache_dir", "~/.cache/hqrun/openml")),
                           features, classes, url=_get(cfg, "url"),
                           label_column=_get(cfg, "label_column", "class"),
                           timeout_s=float(_get(cfg, "download_timeout_s", 60.0)))
    if source == "idx":
        from hqrun.data.idx import read_idx_dir

        path = _get(cfg, "path")
        if not path:
            raise ConfigError("data.source=idx needs data.path=DIRECTORY of MNIST-format files.")
        return read_idx_dir(path, classes=_get(cfg, "classes"),
                            train_prefix=_get(cfg, "image_prefix_train", "train"),
                            test_prefix=_get(cfg, "image_prefix_test", "t10k"),
                            use_test_files=bool(_get(cfg, "use_file_test_split", True)))
    raise ConfigError(f"data.source={source!r} is not a data source; use one of {', '.join(SOURCES)}.")


def check_data_config(cfg: Any) -> None:
    """Refuse invalid choices before any file is read (types are checked by the schema)."""
    from hqrun.data.readers import FORMATS

    choices = {"source": SOURCES, "nan_policy": ("reject", "drop"), "extra_columns": ("error", "ignore"),
               "format": ("auto", *FORMATS)}
    for key, allowed in choices.items():
        value = _get(cfg, key, allowed[0])
        if value not in allowed:
            raise ConfigError(f"data.{key}={value!r} is not valid; use one of {', '.join(allowed)}.")
    for key in ("test_fraction", "val_fraction"):
        value = float(_get(cfg, key, 0.2))
        if not 0.0 < value < 1.0:
            raise ConfigError(f"data.{key}={value} must lie strictly between 0 and 1.")
    max_samples = _get(cfg, "max_samples")
    if max_samples is not None and int(max_samples) < 10:
        raise ConfigError(f"data.max_samples={max_samples} is too small to split; use at least 10 (or null for all).")


def load_dataset(cfg: DataConfig | Any, seed: int = 0) -> Splits:
    """Read, clean, split (stratified, seeded) and scale (fitted on train only) a data set."""
    check_data_config(cfg)
    raw = read_raw(cfg)
    policy = _get(cfg, "nan_policy", "reject")
    X, y, dropped = handle_non_finite(raw.X, raw.y, raw.feature_names, raw.source, policy)
    info: dict = {"dropped_non_finite": dropped, **raw.notes}
    max_samples = _get(cfg, "max_samples")
    test_fraction = float(_get(cfg, "test_fraction", 0.2))
    val_fraction = float(_get(cfg, "val_fraction", 0.2))
    if raw.test is not None:
        X_test, y_test, dropped_test = handle_non_finite(*raw.test, raw.feature_names, raw.source, policy)
        info["dropped_non_finite"] += dropped_test
        if max_samples:
            X, y = stratified_subsample(X, y, int(max_samples), seed)
            n_test = max(1, int(round(int(max_samples) * test_fraction)))
            X_test, y_test = stratified_subsample(X_test, y_test, n_test, seed)
        check_classes(y, raw.class_names, raw.source, [val_fraction])
        X_train, X_val, y_train, y_val = split_train_val(X, y, val_fraction, seed)
    else:
        if max_samples:
            X, y = stratified_subsample(X, y, int(max_samples), seed)
        check_classes(y, raw.class_names, raw.source, [test_fraction, val_fraction])
        parts = split(X, y, test_fraction, val_fraction, seed)
        (X_train, y_train), (X_val, y_val), (X_test, y_test) = parts["train"], parts["val"], parts["test"]
    warn_few_rows(y_train, raw.class_names, raw.source)
    if X_train.ndim > 2:
        scaler = Scaler.identity(1, ["pixel"], kind="image", scale=float(np.iinfo(np.uint8).max)
                                 if np.issubdtype(raw.X.dtype, np.integer) else 1.0)
    elif _get(cfg, "standardize", True):
        scaler = Scaler.fit(X_train, raw.feature_names)
    else:
        scaler = Scaler.identity(X_train.shape[1], raw.feature_names)
    return Splits(
        scaler.transform(X_train), np.ascontiguousarray(y_train, dtype=np.int64),
        scaler.transform(X_val), np.ascontiguousarray(y_val, dtype=np.int64),
        scaler.transform(X_test), np.ascontiguousarray(y_test, dtype=np.int64),
        list(raw.feature_names), list(raw.class_names), scaler, raw.source, info,
    )


def resolve_path(path: str | os.PathLike) -> Path:
    """Expand ``~`` in a configured path."""
    return Path(os.path.expanduser(str(path)))
