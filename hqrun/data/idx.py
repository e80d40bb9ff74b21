"""MNIST-format (IDX) image files, plain or gzipped, e.g. Debian's ``dataset-fashion-mnist``.

The image source exists so that convolutional layers are trained and checked on real images
offline. IDX is tiny to parse: a magic word (two zero bytes, a type code, the rank), the
big-endian dimension sizes, then the big-endian data. The declared size is checked against the
bytes present, so a truncated download is reported as such instead of as a reshape error.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from hqrun.data.raw import RawData
from hqrun.errors import DataError

#: IDX type code -> numpy big-endian dtype.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

#: Fashion-MNIST's class names, in label order.
FASHION_MNIST_CLASSES = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzipped if its name ends in .gz) into a numpy array."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read the IDX file ({type(err).__name__}: {err}); it is truncated or corrupt.") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {data[:4].hex() if data else 'empty'}).")
    dtype = IDX_DTYPES[data[2]]
    rank = data[3]
    header = 4 + 4 * rank
    if len(data) < header:
        raise DataError(f"{path}: the IDX header is truncated.")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(
            f"{path}: the header declares shape {shape} ({expected} data bytes) but the file holds "
            f"{len(data) - header}; the file is truncated or corrupt."
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory: Path, prefix: str, kind: str) -> Path:
    rank = "3" if kind == "images" else "1"
    for name in (f"{prefix}-{kind}-idx{rank}-ubyte", f"{prefix}-{kind}.idx{rank}-ubyte"):
        for suffix in (".gz", ""):
            candidate = directory / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
    raise DataError(
        f"{directory}: no {prefix}-{kind}-idx{rank}-ubyte[.gz] file. Point data.path at a directory "
        "of MNIST-format files (Debian: `apt-get install dataset-fashion-mnist` puts them in "
        "/usr/share/datasets/fashion-mnist)."
    )


def _pair(directory: Path, prefix: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    images_path = _find(directory, prefix, "images")
    labels_path = _find(directory, prefix, "labels")
    images = read_idx(images_path)
    labels = read_idx(labels_path).astype(np.int64)
    if images.ndim != 3 or labels.ndim != 1:
        raise DataError(
            f"{images_path}: expected (N, H, W) images and (N,) labels, got {images.shape} and {labels.shape}."
        )
    if len(images) != len(labels):
        raise DataError(
            f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path.name}; "
            "the files do not belong together or one is truncated."
        )
    bad = (labels < 0) | (labels >= n_classes)
    if bad.any():
        raise DataError(
            f"{labels_path}: {int(bad.sum())} label(s) outside 0..{n_classes - 1}; the file is "
            "mislabelled for this data set, or data.classes lists too few classes."
        )
    return images[:, None, :, :], labels


def read_idx_dir(
    directory: str | os.PathLike,
    classes: list[str] | None = None,
    train_prefix: str = "train",
    test_prefix: str = "t10k",
    use_test_files: bool = True,
) -> RawData:
    """Read ``train-*`` (and, if wanted and present, ``t10k-*``) IDX pairs from a directory.

    Images come back as (N, 1, H, W) in their stored integer range; scaling to [0, 1] happens
    in preprocessing so that it is recorded with the run like the jet standardisation.
    """
    directory = Path(os.path.expanduser(str(directory)))
    if not directory.is_dir():
        raise DataError(
            f"{directory}: no such directory. data.path must name a directory of MNIST-format IDX "
            "files (Debian's dataset-fashion-mnist: /usr/share/datasets/fashion-mnist)."
        )
    class_names = list(classes) if classes else list(FASHION_MNIST_CLASSES)
    X, y = _pair(directory, train_prefix, len(class_names))
    test = None
    if use_test_files:
        try:
            test = _pair(directory, test_prefix, len(class_names))
        except DataError as err:
            if "no " + test_prefix not in str(err):
                raise
    h, w = X.shape[2:]
    names = [f"pixel_{r}_{c}" for r in range(h) for c in range(w)]
    return RawData(X, y, names, class_names, str(directory), test=test)
