"""Readers for local jet files: ``.npz``, CSV, ARFF, parquet, and (via :mod:`.hdf5`) HDF5.

Each reader returns a :class:`~hqrun.data.raw.RawData` with the features in the expected order,
so a file whose columns are shuffled still trains the same model. Everything that can go wrong
with a user's file (absent, truncated, wrong columns, unknown labels) becomes a
:class:`~hqrun.errors.DataError` naming the file and the problem.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from hqrun.data.raw import RawData, as_features, check_lengths, encode_labels, select_columns
from hqrun.errors import DataError

#: File suffix -> format name understood by :func:`read_file`.
SUFFIX_FORMATS = {
    ".npz": "npz",
    ".csv": "csv",
    ".gz": "csv",  # .csv.gz; refined in detect_format
    ".arff": "arff",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
}

FORMATS = ("npz", "csv", "arff", "parquet", "hdf5")


def detect_format(path: Path, fmt: str = "auto") -> str:
    """The reader for ``path``: the configured format, else the one its suffix implies."""
    if fmt != "auto":
        if fmt not in FORMATS:
            raise DataError(
                f"data.format={fmt!r} is not a format hqrun reads; use one of auto, "
                f"{', '.join(FORMATS)}."
            )
        return fmt
    if path.is_dir():
        return "hdf5"
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes[-2:] == [".arff", ".gz"]:
        return "arff"
    for suffix in reversed(suffixes):
        if suffix in SUFFIX_FORMATS:
            return SUFFIX_FORMATS[suffix]
    raise DataError(
        f"{path}: cannot tell the file format from its name; hqrun reads {', '.join(FORMATS)} "
        "(.npz, .csv, .arff, .parquet/.pq, .h5/.hdf5). Rename the file or set data.format."
    )


def read_file(
    path: str | os.PathLike,
    features: Sequence[str],
    classes: Sequence[str],
    fmt: str = "auto",
    label_column: str = "class",
    extra_columns: str = "error",
) -> RawData:
    """Read a local jet file of any supported format."""
    path = Path(os.path.expanduser(str(path)))
    if not path.exists():
        raise DataError(
            f"data.path={path}: no such file. Pass an existing jet file with data.path=... "
            f"(formats: {', '.join(FORMATS)}; or a directory of Zenodo .h5 files), or drop "
            "data.path to train on the embedded sample."
        )
    fmt = detect_format(path, fmt)
    if fmt == "npz":
        return read_npz(path, features, classes)
    if fmt == "hdf5":
        from hqrun.data.hdf5 import read_hdf5

        return read_hdf5(path, features, classes)
    if fmt == "csv":
        frame = _read_csv(path)
    elif fmt == "arff":
        frame = read_arff_frame(path)
    else:
        frame = _read_parquet(path)
    return frame_to_raw(str(path), frame, features, classes, label_column, extra_columns)


def read_npz(path: Path, features: Sequence[str], classes: Sequence[str]) -> RawData:
    """The shared ``.npz`` layout: ``X``, ``y``, ``feature_names``, ``class_names``."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DataError(
                f"{path}: this is a single .npy array, not an npz archive; hqrun's npz layout is "
                "X (N, F) float, y (N,) int, feature_names, class_names (np.savez)."
            )
        with loaded as archive:
            missing = [k for k in ("X", "y") if k not in archive.files]
            if missing:
                raise DataError(
                    f"{path}: the npz archive lacks the array(s) {missing} (it has "
                    f"{archive.files}); hqrun's npz layout is X (N, F) float, y (N,) int, "
                    "feature_names, class_names."
                )
            X = archive["X"]
            y = archive["y"]
            names = [str(n) for n in archive["feature_names"]] if "feature_names" in archive.files else None
            file_classes = [str(n) for n in archive["class_names"]] if "class_names" in archive.files else None
    except DataError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as err:
        raise DataError(
            f"{path}: cannot read the npz archive ({type(err).__name__}: {err}). The file is "
            "truncated or not an npz file; regenerate or re-download it."
        ) from None
    if X.ndim != 2:
        raise DataError(f"{path}: X has shape {X.shape}; a jet file needs a 2-D (rows, features) X.")
    if names is None:
        if X.shape[1] != len(features):
            raise DataError(
                f"{path}: X has {X.shape[1]} columns and no feature_names; expected the "
                f"{len(features)} features {list(features)}."
            )
        names = list(features)
    if len(names) != X.shape[1]:
        raise DataError(
            f"{path}: feature_names lists {len(names)} names but X has {X.shape[1]} columns; "
            "the file is inconsistent."
        )
    order = select_columns(str(path), names, features)
    X = as_features(str(path), X[:, order])
    if file_classes is not None:
        if list(file_classes) != list(classes) and y.dtype.kind in "iu":
            # integer labels index the file's own class list: re-map them onto ours by name
            unknown = [c for c in file_classes if c not in classes]
            if unknown:
                raise DataError(
                    f"{path}: class_names {file_classes} include {unknown}, which are not among "
                    f"the expected classes {list(classes)}; the file is mislabelled for this data "
                    "set, or set data.classes."
                )
            lut = np.array([list(classes).index(c) for c in file_classes], dtype=np.int64)
            codes = encode_labels(str(path), y, file_classes)
            y = lut[codes]
    y = encode_labels(str(path), y, classes)
    check_lengths(str(path), X, y)
    return RawData(X, y, list(features), list(classes), str(path))


def _read_csv(path: Path):
    import pandas as pd

    try:
        return pd.read_csv(path, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, EOFError, OSError) as err:
        raise DataError(
            f"{path}: cannot parse the CSV file ({type(err).__name__}: {err}). It is truncated, "
            "not a CSV, or lacks a header row naming the columns."
        ) from None


def _read_parquet(path: Path):
    import pandas as pd

    try:
        return pd.read_parquet(path)
    except Exception as err:  # noqa: BLE001 - pyarrow raises many types for a bad file
        raise DataError(
            f"{path}: cannot read the parquet file ({type(err).__name__}: {err}). It is truncated "
            "or not a parquet file; re-download or re-export it."
        ) from None


_ATTRIBUTE = re.compile(r"@attribute\s+('(?:[^']*)'|\"(?:[^\"]*)\"|\S+)\s+(.+)$", re.IGNORECASE)


def read_arff_frame(path: Path):
    """Parse a dense ARFF file (OpenML's export) into a pandas frame.

    The header is parsed here; the data block is plain CSV, which pandas reads far faster than
    a pure-Python ARFF parser would for OpenML's 830k rows.
    """
    import gzip

    import pandas as pd

    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except (EOFError, OSError) as err:
        raise DataError(f"{path}: cannot read the ARFF file ({err}); it is truncated or corrupt.") from None
    names: list[str] = []
    data_at = None
    position = 0
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        position += len(line)
        if not stripped or stripped.startswith("%"):
            continue
        low = stripped.lower()
        if low.startswith("@attribute"):
            match = _ATTRIBUTE.match(stripped)
            if not match:
                raise DataError(f"{path}: malformed ARFF attribute line {stripped[:80]!r}.")
            names.append(match.group(1).strip("'\""))
        elif low.startswith("@data"):
            data_at = position
            break
    if data_at is None or not names:
        raise DataError(
            f"{path}: no ARFF header (@attribute lines followed by @data) found; the file is "
            "not an ARFF file or is truncated."
        )
    body = text[data_at:]
    if body.lstrip().startswith("{"):
        raise DataError(f"{path}: sparse ARFF is not supported; export the data set densely or as CSV/parquet.")
    try:
        frame = pd.read_csv(
            io.StringIO(body),
            header=None,
            names=names,
            comment="%",
            na_values=["?"],
            quotechar="'",
            skipinitialspace=True,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DataError(f"{path}: cannot parse the ARFF data block ({err}); the file is truncated or corrupt.") from None
    return frame


def frame_to_raw(
    path: str,
    frame,
    features: Sequence[str],
    classes: Sequence[str],
    label_column: str,
    extra_columns: str,
) -> RawData:
    """Pick the feature and label columns of a table and encode the labels."""
    columns = [str(c) for c in frame.columns]
    if label_column not in columns:
        raise DataError(
            f"{path}: no label column {label_column!r}; the columns are {columns}. Name the "
            "class column with data.label_column=..."
        )
    frame.columns = columns
    order = select_columns(path, columns, features, allowed_extra=[label_column], extra_policy=extra_columns)
    X = as_features(path, frame.iloc[:, order].to_numpy())
    labels = frame[label_column]
    if labels.isna().any():
        raise DataError(
            f"{path}: {int(labels.isna().sum())} row(s) have no label (e.g. row "
            f"{int(np.flatnonzero(labels.isna().to_numpy())[0])}); the file is truncated or "
            "mislabelled."
        )
    values = labels.to_numpy()
    if labels.dtype.name == "category":
        values = labels.astype(str).to_numpy()
    y = encode_labels(path, values, classes)
    check_lengths(path, X, y)
    return RawData(X, y, list(features), list(classes), path)
