"""The common shape every reader returns, and the checks they share.

Readers differ in how a file stores features and labels; what they must agree on is the result:
a float feature matrix in a known column order and integer labels into a known class list. The
checks live here once so that every format names a missing column, an extra column or an unknown
label the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from hqrun.errors import DataError


@dataclass
class RawData:
    """Features and labels as read from a source, before splitting and scaling.

    ``X`` is (N, F) for tables or (N, C, H, W) for images; ``y`` holds indices into
    ``class_names``. ``test`` is an (X, y) pair when the source defines its own test split
    (MNIST's t10k files); otherwise the split is drawn later.
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    class_names: list[str]
    source: str
    test: tuple[np.ndarray, np.ndarray] | None = None
    notes: dict = field(default_factory=dict)


def select_columns(
    path: str,
    columns: Sequence[str],
    expected: Sequence[str],
    allowed_extra: Sequence[str] = (),
    extra_policy: str = "error",
) -> list[int]:
    """Return the index of each expected feature in ``columns``; name what is missing or extra."""
    columns = [str(c) for c in columns]
    position = {name: i for i, name in enumerate(columns)}
    missing = [name for name in expected if name not in position]
    extra = [c for c in columns if c not in set(expected) and c not in set(allowed_extra)]
    problems = []
    if missing:
        problems.append(f"missing feature column(s) {missing}")
    if extra and extra_policy != "ignore":
        problems.append(f"unexpected extra column(s) {extra}")
    if problems:
        raise DataError(
            f"{path}: {' and '.join(problems)}. The file's columns are {columns}; hqrun expects "
            f"the features {list(expected)}. Rename the columns, set data.features to the file's "
            "feature list, or pass data.extra_columns=ignore to skip extra columns."
        )
    return [position[name] for name in expected]


def encode_labels(path: str, labels: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """Map labels (class names, or integer codes 0..K-1) to int64 indices into ``class_names``.

    A label outside the class list means the file is mislabelled for this task; it is refused
    with the offending values rather than silently becoming a new class.
    """
    labels = np.asarray(labels)
    k = len(class_names)
    if labels.dtype.kind in "iub":
        codes = labels.astype(np.int64)
        bad = (codes < 0) | (codes >= k)
        if bad.any():
            raise DataError(
                f"{path}: {int(bad.sum())} label(s) are outside 0..{k - 1} (e.g. "
                f"{sorted(set(codes[bad].tolist()))[:5]}); the classes are {list(class_names)}. "
                "The file is mislabelled for this data set, or data.classes is wrong."
            )
        return codes
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise DataError(
                f"{path}: the label column holds non-integer or missing values; labels must be "
                f"class names {list(class_names)} or integer codes 0..{k - 1}."
            )
        return encode_labels(path, labels.astype(np.int64), class_names)
    as_text = np.array([_text(v) for v in labels.tolist()], dtype=object)
    index = {name: i for i, name in enumerate(class_names)}
    lowered = {name.lower(): i for i, name in enumerate(class_names)}
    codes = np.empty(len(as_text), dtype=np.int64)
    unknown: set[str] = set()
    for i, v in enumerate(as_text):
        code = index.get(v, lowered.get(v.lower()))
        if code is None:
            unknown.add(v)
            code = -1
        codes[i] = code
    if unknown:
        raise DataError(
            f"{path}: label(s) {sorted(unknown)[:10]} are not among the classes "
            f"{list(class_names)} ({int((codes < 0).sum())} rows). The file is mislabelled for this "
            "data set; fix the labels or set data.classes to the file's class list."
        )
    return codes


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip()
    return str(value).strip()


def as_features(path: str, values) -> np.ndarray:
    """Convert a feature block to float32, refusing text that is not a number."""
    try:
        return np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise DataError(
            f"{path}: a feature column holds values that are not numbers ({err}). Check that the "
            "file is the right one and that its feature columns are numeric."
        ) from None


def check_lengths(path: str, X: np.ndarray, y: np.ndarray) -> None:
    """Features and labels must pair up row by row, and there must be rows at all."""
    if len(X) != len(y):
        raise DataError(
            f"{path}: {len(X)} feature rows but {len(y)} labels; the file is truncated or its "
            "arrays do not belong together."
        )
    if len(X) == 0:
        raise DataError(f"{path}: the file holds no rows.")
