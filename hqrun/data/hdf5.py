"""Reader for the Zenodo HDF5 release of the hls4ml jet data (``jets`` + ``jetFeatureNames``).

The Zenodo files store every jet-level quantity in one ``jets`` matrix whose columns are named by
``jetFeatureNames``; the class is one-hot in the columns ``j_g, j_q, j_w, j_z, j_t``. Only the 16
model features are kept. The release is split over many files, so a directory of ``.h5`` files
is read as their concatenation (sorted by name, so the row order is reproducible).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from hqrun.data.raw import RawData, as_features, select_columns
from hqrun.errors import DataError


def read_hdf5(path: Path, features: Sequence[str], classes: Sequence[str]) -> RawData:
    """Read one Zenodo HDF5 file, or every ``.h5``/``.hdf5`` file of a directory."""
    files = _files(path)
    parts_X, parts_y = [], []
    for file in files:
        X, y = _read_one(file, features, classes)
        parts_X.append(X)
        parts_y.append(y)
    X = np.concatenate(parts_X)
    y = np.concatenate(parts_y)
    return RawData(X, y, list(features), list(classes), str(path), notes={"files": [str(f) for f in files]})


def _files(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".h5", ".hdf5", ".hdf"))
    if not files:
        raise DataError(f"{path}: the directory holds no .h5/.hdf5 files.")
    return files


def _read_one(file: Path, features: Sequence[str], classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    import h5py

    try:
        with h5py.File(file, "r") as handle:
            missing = [k for k in ("jets", "jetFeatureNames") if k not in handle]
            if missing:
                raise DataError(
                    f"{file}: the HDF5 file lacks the dataset(s) {missing} (it has "
                    f"{sorted(handle.keys())}); hqrun reads the Zenodo layout, a `jets` matrix "
                    "with its column names in `jetFeatureNames`."
                )
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in handle["jetFeatureNames"][()]]
            jets = np.asarray(handle["jets"][()])
    except DataError:
        raise
    except (OSError, KeyError, ValueError) as err:
        raise DataError(
            f"{file}: cannot read the HDF5 file ({type(err).__name__}: {err}). It is truncated or "
            "not an HDF5 file; re-download it."
        ) from None
    if jets.ndim != 2 or jets.shape[1] != len(names):
        raise DataError(
            f"{file}: `jets` has shape {jets.shape} but `jetFeatureNames` names {len(names)} "
            "columns; the file is inconsistent."
        )
    order = select_columns(str(file), names, features, extra_policy="ignore")
    onehot_names = [f"j_{c}" for c in classes]
    absent = [n for n in onehot_names if n not in names]
    if absent:
        raise DataError(
            f"{file}: the class columns {absent} are missing (the one-hot label columns must be "
            f"{onehot_names}); the file is not labelled for the classes {list(classes)}."
        )
    onehot = jets[:, [names.index(n) for n in onehot_names]]
    hits = (onehot > 0.5).sum(axis=1)
    bad = hits != 1
    if bad.any():
        raise DataError(
            f"{file}: {int(bad.sum())} of {len(jets)} jets do not have exactly one class set in "
            f"{onehot_names} (first bad row {int(np.flatnonzero(bad)[0])}); the file is "
            "mislabelled or truncated."
        )
    y = onehot.argmax(axis=1).astype(np.int64)
    return as_features(str(file), jets[:, order]), y
