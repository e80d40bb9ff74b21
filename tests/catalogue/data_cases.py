"""Data files: unreadable, inconsistent, mislabelled, too small, or holding too few classes."""

from __future__ import annotations

import numpy as np

from catalogue import QUICK_TRAIN, Case, Env


def train_on(path_of) -> callable:
    """argv of `hqrun train` on the file ``path_of(env)`` writes."""
    return lambda e: ["train", "data=jets_file", f"data.path={path_of(e)}", *QUICK_TRAIN]


def with_labels(make_y) -> callable:
    """A jet file whose labels are ``make_y(n)`` (features as the good file's)."""
    def write(e: Env):
        X, y = e.jets(300)
        return e.npz("labels.npz", X, make_y(len(y)))
    return write


def csv_text(e: Env, rows: int = 300, label=lambda i: "gqtwz"[i % 5], drop: str | None = None,
             extra: str | None = None, cell: str | None = None) -> str:
    from hqrun.data import JET_FEATURES

    X, _ = e.jets(rows)
    names = [f for f in JET_FEATURES if f != drop] + ["class"] + ([extra] if extra else [])
    lines = [",".join(names)]
    for i, row in enumerate(X):
        values = [f"{v:.4f}" for f, v in zip(JET_FEATURES, row) if f != drop]
        if cell is not None and i == 7:
            values[3] = cell
        lines.append(",".join(values + [label(i)] + (["1"] if extra else [])))
    return "\n".join(lines) + "\n"


def idx_dir(e: Env, n: int = 200, truncate: bool = False):
    """A tiny MNIST-format directory (28x28 images, ten classes)."""
    import struct

    d = e.tmp / "idx"
    d.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    img = struct.pack(">IIII", 0x00000803, n, 28, 28) + images.tobytes()
    (d / "train-images-idx3-ubyte").write_bytes(img[: len(img) // 2] if truncate else img)
    (d / "train-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x00000801, n) + labels.tobytes())
    return d


CASES = [
    # ------------------------------------------------------------ unreadable files
    Case("data-missing-file", train_on(lambda e: e.tmp / "nope.npz"), "nope.npz: no such file"),
    Case("data-empty-file", train_on(lambda e: e.write("empty.npz", b"")),
         "empty.npz: cannot read the npz archive"),
    Case("data-random-bytes-npz", train_on(lambda e: e.write("rand.npz", np.random.default_rng(0)
                                                              .bytes(4000))),
         "cannot read the npz archive", subprocess=True),
    Case("data-truncated-npz", train_on(lambda e: e.write(
        "cut.npz", e.data.read_bytes()[: len(e.data.read_bytes()) // 2])),
         "cannot read the npz archive"),
    Case("data-single-npy", train_on(lambda e: (np.save(e.tmp / "one.npy", np.zeros((4, 16))),
                                                e.write("one.npz", (e.tmp / "one.npy").read_bytes()))[1]),
         "this is a single .npy array, not an npz archive"),
    Case("data-npz-without-y", train_on(lambda e: e.npz("noy.npz", e.jets()[0], None)),
         "the npz archive lacks the array(s) ['y']"),
    Case("data-x-one-dimensional", train_on(lambda e: e.npz("flat.npz", np.zeros(300, np.float32),
                                                            np.arange(300) % 5, feature_names=None)),
         "a jet file needs a 2-D (rows, features) X"),
    Case("data-15-features", train_on(lambda e: e.npz("f15.npz", e.jets()[0][:, :15], e.jets()[1],
                                                      feature_names=None)),
         "X has 15 columns and no feature_names"),
    Case("data-feature-names-mismatch", train_on(lambda e: e.npz(
        "names.npz", *e.jets(), feature_names=np.array([f"f{i}" for i in range(16)]))),
         "missing feature column(s)"),
    Case("data-length-mismatch", train_on(lambda e: e.npz("len.npz", e.jets()[0], e.jets()[1][:250])),
         "300 feature rows but 250 labels"),
    Case("data-no-rows", train_on(lambda e: e.npz("none.npz", np.zeros((0, 16), np.float32),
                                                  np.zeros(0, np.int64))),
         "the file holds no rows"),
    Case("data-object-array", train_on(lambda e: e.npz("obj.npz", np.array([[object()]] * 3, dtype=object),
                                                       np.zeros(3, np.int64))),
         "cannot read the npz archive"),
    # ------------------------------------------------------------ labels
    Case("data-label-out-of-range", train_on(with_labels(lambda n: np.arange(n) % 8)),
         "label(s) are outside 0..4"),
    Case("data-label-negative", train_on(with_labels(lambda n: np.arange(n) % 5 - 1)),
         "label(s) are outside 0..4"),
    Case("data-label-fractional", train_on(with_labels(lambda n: (np.arange(n) % 5) + 0.5)),
         "the label column holds non-integer or missing values"),
    Case("data-label-nan", train_on(with_labels(lambda n: np.where(np.arange(n) == 3, np.nan,
                                                                   np.arange(n) % 5))),
         "the label column holds non-integer or missing values"),
    Case("data-class-names-foreign", train_on(lambda e: e.npz(
        "cls.npz", *e.jets(), class_names=np.array(["a", "b", "c", "d", "e"]))),
         "include ['a', 'b', 'c', 'd', 'e'], which are not among the expected classes"),
    Case("data-single-class", train_on(with_labels(lambda n: np.zeros(n, np.int64))),
         "belong to class 'g'; a classifier needs rows of at least two classes", subprocess=True),
    Case("data-class-absent", train_on(with_labels(lambda n: np.arange(n) % 4)),
         "the class(es) ['z'] have no rows"),
    Case("data-five-rows", train_on(lambda e: e.npz("five.npz", e.jets(5)[0], np.arange(5))),
         "5 rows are too few to split"),
    Case("data-rare-class", train_on(lambda e: e.npz("rare.npz", e.jets(300)[0],
                                                     np.r_[np.arange(297) % 4, [4, 4, 4]])),
         "the class(es) {'z': 3} (rows per class) have fewer than 7 rows"),
    Case("data-max-samples-too-few-per-class", lambda e: ["train", "data=jets_file",
                                                          f"data.path={e.data}", *QUICK_TRAIN,
                                                          "data.max_samples=20"],
         "20 rows are too few to split"),
    Case("data-test-fraction-leaves-too-few", lambda e: ["train", "data=jets_file",
                                                         f"data.path={e.data}", *QUICK_TRAIN,
                                                         "data.test_fraction=0.95"],
         "have fewer than"),
    Case("data-few-rows-warns", train_on(lambda e: e.npz("few.npz", e.jets(400)[0],
                                                         np.r_[np.arange(388) % 4, [4] * 12])),
         "DataWarning: ", code=0, leaves_run_dir=True),
    Case("data-classes-fewer-than-file", lambda e: ["train", "data=jets_file", f"data.path={e.data}",
                                                    *QUICK_TRAIN, "data.classes=[g]"],
         "which are not among the expected classes ['g']"),
    Case("data-one-class-configured", lambda e: [
        "train", "data=jets_file", *QUICK_TRAIN, "data.classes=[g]",
        f"data.path={e.write('g.csv', csv_text(e, label=lambda i: 'g'))}"],
         "the data set has 1 class(es) ['g']; a classifier needs at least two"),
    # ------------------------------------------------------------ non-finite values
    Case("data-nan-rows", train_on(lambda e: e.npz("nan.npz", np.where(np.arange(300)[:, None] == 5,
                                                                       np.nan, e.jets()[0]),
                                                   e.jets()[1])),
         "rows contain NaN or inf values"),
    Case("data-inf-rows", train_on(lambda e: e.npz("inf.npz", np.where(np.arange(300)[:, None] < 3,
                                                                       np.inf, e.jets()[0]),
                                                   e.jets()[1])),
         "3 of 300 rows contain NaN or inf values"),
    Case("data-all-nan-dropped", lambda e: ["train", "data=jets_file", *QUICK_TRAIN,
                                            "data.nan_policy=drop", "data.path=" + str(e.npz(
                                                "allnan.npz", np.full((300, 16), np.nan, np.float32),
                                                e.jets()[1]))],
         "no rows are left to train on"),
    # ------------------------------------------------------------ tables
    Case("data-csv-missing-column", train_on(lambda e: e.write(
        "drop.csv", csv_text(e, drop="j_zlogz"))), "missing feature column(s) ['j_zlogz']"),
    Case("data-csv-extra-column", train_on(lambda e: e.write("extra.csv", csv_text(e, extra="run"))),
         "unexpected extra column(s) ['run']"),
    Case("data-csv-text-in-feature", train_on(lambda e: e.write("text.csv", csv_text(e, cell="abc"))),
         "a feature column holds values that are not numbers"),
    Case("data-csv-unknown-label", train_on(lambda e: e.write(
        "lab.csv", csv_text(e, label=lambda i: "x" if i == 4 else "gqtwz"[i % 5]))),
         "label(s) ['x'] are not among the classes"),
    Case("data-csv-header-only", train_on(lambda e: e.write("head.csv", csv_text(e, rows=0))),
         "holds no rows"),
    Case("data-csv-no-label-column", lambda e: ["train", "data=jets_file", *QUICK_TRAIN,
                                                f"data.path={e.write('l.csv', csv_text(e))}",
                                                "data.label_column=klass"],
         "no label column 'klass'"),
    Case("data-csv-not-utf8", train_on(lambda e: e.write(
        "latin.csv", csv_text(e, label=lambda i: "gqtwz"[i % 5]).encode("utf-8")
        .replace(b"class", b"cl\xe4ss"))),
         "latin.csv"),
    Case("data-arff-garbage", train_on(lambda e: e.write("bad.arff", "@relation x\n@data\n1,2\n")),
         "bad.arff"),
    Case("data-parquet-garbage", train_on(lambda e: e.write("bad.parquet", b"PAR1 not really")),
         "bad.parquet"),
    Case("data-hdf5-garbage", train_on(lambda e: e.write("bad.h5", b"\x89HDF\r\n garbage")),
         "bad.h5"),
    Case("data-unknown-suffix", train_on(lambda e: e.write("jets.txt", "1,2,3\n")),
         "cannot tell the file format from its name"),
    Case("data-empty-directory", train_on(lambda e: (e.tmp / "emptydir").mkdir() or e.tmp / "emptydir"),
         "emptydir"),
    # ------------------------------------------------------------ images
    Case("data-idx-missing-files", lambda e: ["train", "data=idx", "model=cnn", *QUICK_TRAIN,
                                              f"data.path={(e.tmp / 'noidx').mkdir() or e.tmp / 'noidx'}"],
         "no train-images-idx3-ubyte"),
    Case("data-idx-truncated", lambda e: ["train", "data=idx", "model=cnn", *QUICK_TRAIN,
                                          f"data.path={idx_dir(e, truncate=True)}"],
         "train-images-idx3-ubyte"),
    Case("data-images-for-jet-model", lambda e: ["train", "data=idx", *QUICK_TRAIN,
                                                 f"data.path={idx_dir(e)}"],
         "use model=cnn for image data"),
    Case("data-table-for-cnn", lambda e: ["train", "data=jets_file", f"data.path={e.data}",
                                          "model=cnn", *QUICK_TRAIN],
         "model 'cnn' takes images but the data are 16 features per row"),
]
