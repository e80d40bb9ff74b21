"""Write and read generated jet sets in the ``.npz`` layout of ../shared/data.

The layout (``X`` float32 (n, 16), ``y`` int64, ``feature_names``, ``class_names``,
``jet_pt_eta_phi_m`` float32 (n, 4)) is what hqrun's jet loaders read, so a generated file can be
passed to ``data=jets_file`` unchanged. A JSON record next to it (same stem, ``.json``) says how it
was made: the exact command, seed, versions, counts, timings and the file's sha256, so a sample
can be regenerated and checked.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hqrun import atomic
from hqrun.errors import DataError


def metadata_path(npz_path: str | Path) -> Path:
    """The JSON record that belongs to ``npz_path``."""
    return Path(npz_path).with_suffix(".json")


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_jets(
    path: str | Path,
    X: np.ndarray,
    y: np.ndarray,
    kin: np.ndarray,
    feature_names: Sequence[str],
    class_names: Sequence[str],
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write the npz (compressed) and its JSON record; returns the npz path.

    Shapes and label range are checked first so a malformed set never reaches disk.
    """
    path = Path(path)
    if path.suffix != ".npz":
        raise DataError(f"output file {path} must end in .npz (the layout hqrun's loaders read).")
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    kin = np.asarray(kin, dtype=np.float32)
    n = len(X)
    if X.ndim != 2 or X.shape[1] != len(feature_names):
        raise DataError(f"X has shape {X.shape} but there are {len(feature_names)} feature names.")
    if y.shape != (n,) or kin.shape != (n, 4):
        raise DataError(f"y {y.shape} / jet_pt_eta_phi_m {kin.shape} do not match X's {n} rows.")
    if n and (y.min() < 0 or y.max() >= len(class_names)):
        raise DataError(f"labels span {y.min()}..{y.max()} but there are {len(class_names)} classes.")
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        X=X,
        y=y,
        feature_names=np.asarray(list(feature_names), dtype=str),
        class_names=np.asarray(list(class_names), dtype=str),
        jet_pt_eta_phi_m=kin,
    )
    atomic.write_bytes(path, buffer.getvalue())
    record = dict(metadata or {})
    record.update(
        file=path.name,
        sha256=sha256_of(path),
        n_jets=int(n),
        counts={str(c): int((y == i).sum()) for i, c in enumerate(class_names)},
        feature_names=list(feature_names),
        class_names=list(class_names),
    )
    atomic.write_json(metadata_path(path), record, sort_keys=True)
    return path


def read_metadata(npz_path: str | Path) -> dict[str, Any]:
    """The JSON record written next to ``npz_path``."""
    meta = metadata_path(npz_path)
    if not meta.is_file():
        raise DataError(f"no metadata record {meta} next to {npz_path}; regenerate the file.")
    return json.loads(meta.read_text())
