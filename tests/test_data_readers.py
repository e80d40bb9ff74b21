"""Each reader on a small file the test writes, and each way a file can be wrong."""

from __future__ import annotations

import gzip
import io
import urllib.error

import numpy as np
import pytest

from hqrun.data import JET_CLASSES, JET_FEATURES, DataConfig, load_dataset, read_raw
from hqrun.errors import ConfigError, DataError

FEATURES = list(JET_FEATURES)
CLASSES = list(JET_CLASSES)


def make_jets(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 5
    X = (rng.normal(size=(n, 16)) + y[:, None]).astype(np.float32)
    return X, y.astype(np.int64)


def write_npz(path, X, y, features=FEATURES, classes=CLASSES):
    np.savez(path, X=X, y=y, feature_names=np.array(features), class_names=np.array(classes))
    return path


def frame(X, y, features=FEATURES, label="class"):
    import pandas as pd

    df = pd.DataFrame(X, columns=features)
    df[label] = [CLASSES[i] for i in y]
    return df


def read(path, **kw):
    return read_raw(DataConfig(source="file", path=str(path), **kw))


# npz ---------------------------------------------------------------------------------------
def test_npz_reads_and_reorders_columns(tmp_path):
    X, y = make_jets()
    order = np.random.default_rng(1).permutation(16)
    path = write_npz(tmp_path / "j.npz", X[:, order], y, features=[FEATURES[i] for i in order])
    raw = read(path)
    np.testing.assert_array_equal(raw.X, X)
    np.testing.assert_array_equal(raw.y, y)
    assert raw.feature_names == FEATURES and raw.class_names == CLASSES


def test_npz_remaps_permuted_class_names(tmp_path):
    X, y = make_jets()
    file_classes = ["z", "w", "t", "q", "g"]
    path = write_npz(tmp_path / "j.npz", X, y, classes=file_classes)
    raw = read(path)
    assert [CLASSES[k] for k in raw.y[:5]] == [file_classes[k] for k in y[:5]]


def test_npz_missing_feature_is_named(tmp_path):
    X, y = make_jets()
    names = FEATURES[:15] + ["j_something_else"]
    path = write_npz(tmp_path / "j.npz", X, y, features=names)
    with pytest.raises(DataError) as err:
        read(path)
    assert "j_multiplicity" in str(err.value) and "j_something_else" in str(err.value)
    assert str(path) in str(err.value)


def test_npz_truncated_file(tmp_path):
    X, y = make_jets()
    path = write_npz(tmp_path / "j.npz", X, y)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated"):
        read(path)


def test_npz_mislabelled(tmp_path):
    X, y = make_jets()
    y[3] = 7
    path = write_npz(tmp_path / "j.npz", X, y)
    with pytest.raises(DataError, match="outside 0..4"):
        read(path)
    path = write_npz(tmp_path / "k.npz", X, y % 5, classes=["g", "q", "t", "w", "h"])
    with pytest.raises(DataError, match="'h'"):
        read(path)


def test_missing_file_and_missing_path():
    with pytest.raises(DataError, match="no such file"):
        read("/nonexistent/jets.npz")
    with pytest.raises(ConfigError, match="data.path"):
        read_raw(DataConfig(source="file"))


def test_unknown_suffix(tmp_path):
    path = tmp_path / "jets.dat"
    path.write_text("x")
    with pytest.raises(DataError, match="format"):
        read(path)


# tables ------------------------------------------------------------------------------------
def test_csv_roundtrip_and_errors(tmp_path):
    X, y = make_jets()
    df = frame(X, y)
    df = df[[df.columns[-1]] + list(df.columns[:-1])[::-1]]  # label first, features reversed
    df.to_csv(tmp_path / "j.csv", index=False)
    raw = read(tmp_path / "j.csv")
    np.testing.assert_allclose(raw.X, X, rtol=1e-6)
    np.testing.assert_array_equal(raw.y, y)

    frame(X, y).drop(columns=["j_zlogz"]).to_csv(tmp_path / "missing.csv", index=False)
    with pytest.raises(DataError, match="j_zlogz"):
        read(tmp_path / "missing.csv")

    extra = frame(X, y)
    extra["j_pt"] = 1.0
    extra.to_csv(tmp_path / "extra.csv", index=False)
    with pytest.raises(DataError, match="j_pt"):
        read(tmp_path / "extra.csv")
    assert read(tmp_path / "extra.csv", extra_columns="ignore").X.shape == (200, 16)

    bad = frame(X, y)
    bad.loc[5, "class"] = "higgs"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match="higgs"):
        read(tmp_path / "bad.csv")

    frame(X, y).to_csv(tmp_path / "nolabel.csv", index=False, columns=FEATURES)
    with pytest.raises(DataError, match="label column"):
        read(tmp_path / "nolabel.csv")


def test_csv_truncated_mid_row_gives_missing_label(tmp_path):
    X, y = make_jets(20)
    text = frame(X, y).to_csv(index=False)
    (tmp_path / "t.csv").write_text(text[: len(text) - 30])
    with pytest.raises(DataError, match="truncated|NaN"):
        load_dataset(DataConfig(source="file", path=str(tmp_path / "t.csv")), 0)


def write_arff(path, X, y, gz=False):
    lines = ["% test file", "@RELATION jets"]
    lines += [f"@ATTRIBUTE {name} NUMERIC" for name in FEATURES]
    lines += ["@ATTRIBUTE class {g,q,t,w,z}", "@DATA"]
    for row, label in zip(X, y):
        lines.append(",".join(f"{v:.7g}" for v in row) + f",{CLASSES[label]}")
    text = "\n".join(lines) + "\n"
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def test_arff(tmp_path):
    X, y = make_jets(50)
    for name, gz in (("j.arff", False), ("j.arff.gz", True)):
        raw = read(write_arff(tmp_path / name, X, y, gz=gz))
        np.testing.assert_allclose(raw.X, X, rtol=1e-6)
        np.testing.assert_array_equal(raw.y, y)
    (tmp_path / "bad.arff").write_text("not an arff\n1,2,3\n")
    with pytest.raises(DataError, match="ARFF"):
        read(tmp_path / "bad.arff")


def test_parquet(tmp_path):
    X, y = make_jets(50)
    df = frame(X, y)
    df["class"] = df["class"].astype("category")
    df.to_parquet(tmp_path / "j.parquet")
    raw = read(tmp_path / "j.parquet")
    np.testing.assert_array_equal(raw.X, X)
    np.testing.assert_array_equal(raw.y, y)
    (tmp_path / "broken.parquet").write_bytes((tmp_path / "j.parquet").read_bytes()[:100])
    with pytest.raises(DataError, match="broken.parquet"):
        read(tmp_path / "broken.parquet")


# hdf5 --------------------------------------------------------------------------------------
def write_h5(path, X, y, onehot_cols=("j_g", "j_q", "j_w", "j_z", "j_t")):
    import h5py

    names = ["j_pt", "j_eta"] + FEATURES[::-1] + list(onehot_cols) + ["j_index"]
    n = len(X)
    jets = np.zeros((n, len(names)), dtype=np.float32)
    jets[:, 0] = 1000.0
    for i, f in enumerate(FEATURES):
        jets[:, names.index(f)] = X[:, i]
    for k, cls in enumerate(CLASSES):
        col = f"j_{cls}"
        if col in names:
            jets[y == k, names.index(col)] = 1.0
    with h5py.File(path, "w") as h:
        h["jets"] = jets
        h["jetFeatureNames"] = np.array([s.encode() for s in names])
    return path


def test_hdf5_file_and_directory(tmp_path):
    X, y = make_jets(60)
    raw = read(write_h5(tmp_path / "a.h5", X, y))
    np.testing.assert_array_equal(raw.X, X)
    np.testing.assert_array_equal(raw.y, y)
    folder = tmp_path / "zenodo"
    folder.mkdir()
    write_h5(folder / "jetImage_1.h5", X[:30], y[:30])
    write_h5(folder / "jetImage_2.h5", X[30:], y[30:])
    raw = read_raw(DataConfig(source="file", path=str(folder)))
    np.testing.assert_array_equal(raw.X, X)
    np.testing.assert_array_equal(raw.y, y)


def test_hdf5_errors(tmp_path):
    import h5py

    X, y = make_jets(20)
    with pytest.raises(DataError, match="j_t"):
        read(write_h5(tmp_path / "no_t.h5", X, y, onehot_cols=("j_g", "j_q", "j_w", "j_z")))
    path = write_h5(tmp_path / "double.h5", X, y)
    with h5py.File(path, "r+") as h:
        jets = h["jets"][()]
        names = [n.decode() for n in h["jetFeatureNames"][()]]
        jets[2, names.index("j_g")] = 1.0
        jets[2, names.index("j_q")] = 1.0
        h["jets"][...] = jets
    with pytest.raises(DataError, match="exactly one class"):
        read(path)
    with h5py.File(tmp_path / "other.h5", "w") as h:
        h["something"] = np.zeros(3)
    with pytest.raises(DataError, match="jetFeatureNames"):
        read(tmp_path / "other.h5")
    good = write_h5(tmp_path / "cut.h5", X, y).read_bytes()
    (tmp_path / "cut.h5").write_bytes(good[:600])
    with pytest.raises(DataError, match="cut.h5"):
        read(tmp_path / "cut.h5")


# openml ------------------------------------------------------------------------------------
def test_openml_reads_cache_without_network(tmp_path, monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("the network must not be touched when the cache holds the file")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    X, y = make_jets(40)
    write_arff(tmp_path / "openml_42468.arff", X, y)
    raw = read_raw(DataConfig(source="openml", cache_dir=str(tmp_path)))
    np.testing.assert_allclose(raw.X, X, rtol=1e-6)
    assert raw.notes["cache_file"].endswith("openml_42468.arff")


def test_openml_offline_error_names_cache_and_formats(tmp_path, monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as err:
        read_raw(DataConfig(source="openml", cache_dir=str(cache)))
    message = str(err.value)
    assert str(cache) in message and "jets_file" in message
    for fmt in ("npz", "csv", "arff", "parquet", "hdf5"):
        assert fmt in message
    assert not any(cache.glob("openml_*")), "a failed download must not leave a cache file"


def test_openml_download_goes_through_cache(tmp_path, monkeypatch):
    X, y = make_jets(30)
    payload = write_arff(tmp_path / "src.arff", X, y).read_bytes()
    calls = []

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def fake_urlopen(url, timeout=None):
        calls.append(url)
        return Response(payload)

    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen)
    cfg = DataConfig(source="openml", cache_dir=str(tmp_path / "c"), url="http://example.invalid/x.arff")
    first = read_raw(cfg)
    second = read_raw(cfg)
    assert calls == ["http://example.invalid/x.arff"]
    np.testing.assert_array_equal(first.X, second.X)


# idx ---------------------------------------------------------------------------------------
def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dir(folder, n_train=60, n_test=20, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 6, 5), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for kind, arr, rank in (("images", images, 3), ("labels", labels, 1)):
            name = f"{prefix}-{kind}-idx{rank}-ubyte"
            data = idx_bytes(arr)
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
        out[prefix] = (images, labels)
    return out


@pytest.mark.parametrize("gz", [True, False])
def test_idx_reads_images_and_scales_them(tmp_path, gz):
    arrays = write_idx_dir(tmp_path / "mnist", gz=gz)
    raw = read_raw(DataConfig(source="idx", path=str(tmp_path / "mnist")))
    assert raw.X.shape == (60, 1, 6, 5)
    np.testing.assert_array_equal(raw.X[:, 0], arrays["train"][0])
    np.testing.assert_array_equal(raw.test[1], arrays["t10k"][1])
    splits = load_dataset(DataConfig(source="idx", path=str(tmp_path / "mnist"), val_fraction=0.5), 0)
    assert splits.input_shape == (1, 6, 5)
    assert len(splits.y_test) == 20 and len(splits.y_train) + len(splits.y_val) == 60
    assert splits.X_train.min() >= 0.0 and splits.X_train.max() <= 1.0
    np.testing.assert_allclose(np.sort(splits.X_test.ravel()), np.sort(arrays["t10k"][0].ravel() / 255.0), rtol=1e-6)


def test_idx_errors(tmp_path):
    folder = tmp_path / "mnist"
    write_idx_dir(folder, gz=False)
    data = (folder / "train-images-idx3-ubyte").read_bytes()
    (folder / "train-images-idx3-ubyte").write_bytes(data[:-7])
    with pytest.raises(DataError, match="truncated"):
        read_raw(DataConfig(source="idx", path=str(folder)))
    (folder / "train-images-idx3-ubyte").write_bytes(b"\x01\x02\x03\x04junk")
    with pytest.raises(DataError, match="not an IDX"):
        read_raw(DataConfig(source="idx", path=str(folder)))
    with pytest.raises(DataError, match="no such directory"):
        read_raw(DataConfig(source="idx", path=str(tmp_path / "none")))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="train-images"):
        read_raw(DataConfig(source="idx", path=str(empty)))


# embedded sample ---------------------------------------------------------------------------
def test_missing_embedded_sample_names_the_generator(tmp_path, monkeypatch):
    monkeypatch.setattr("hqrun.data.datasets.sample_path", lambda: tmp_path / "absent.npz")
    with pytest.raises(DataError, match="hqrun datagen jets"):
        read_raw(DataConfig(source="sample"))


def test_sample_source_reads_given_path(tmp_path):
    X, y = make_jets()
    path = write_npz(tmp_path / "s.npz", X, y)
    assert read_raw(DataConfig(source="sample", path=str(path))).X.shape == (200, 16)


def test_unknown_source():
    with pytest.raises(ConfigError, match="data.source"):
        read_raw(DataConfig(source="ftp"))


def test_npy_renamed_to_npz_and_bad_choices(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros(3))
    (tmp_path / "x.npy").rename(tmp_path / "x.npz")
    with pytest.raises(DataError, match="not an npz archive"):
        read(tmp_path / "x.npz")
    X, y = make_jets()
    path = write_npz(tmp_path / "j.npz", X, y)
    for key, value in (("nan_policy", "keep"), ("format", "xlsx"), ("extra_columns", "warn"),
                       ("val_fraction", 1.0)):
        with pytest.raises(ConfigError, match=f"data.{key}"):
            load_dataset(DataConfig(source="file", path=str(path), **{key: value}), 0)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(deadline=None, max_examples=25)
@given(st.sampled_from([">u1", ">i1", ">i2", ">i4", ">f4", ">f8"]),
       st.lists(st.integers(1, 5), min_size=1, max_size=3), st.integers(0, 2**31 - 1), st.booleans())
def test_idx_roundtrip_any_type_and_shape(dtype, shape, seed, gz):
    import tempfile
    from pathlib import Path

    from hqrun.data.idx import IDX_DTYPES, read_idx

    code = {v.str: k for k, v in IDX_DTYPES.items()}[np.dtype(dtype).str]
    array = (np.random.default_rng(seed).random(shape) * 100).astype(dtype)
    data = bytes([0, 0, code, len(shape)]) + b"".join(int(d).to_bytes(4, "big") for d in shape) + array.tobytes()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("a.idx.gz" if gz else "a.idx")
        path.write_bytes(gzip.compress(data) if gz else data)
        back = read_idx(path)
    assert back.shape == tuple(shape)
    np.testing.assert_array_equal(back, array.astype(np.dtype(dtype).newbyteorder("=")))
