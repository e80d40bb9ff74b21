"""Split, scaler (fitted on train only), non-finite rows, and ``load_dataset`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hqrun.data import JET_CLASSES, JET_FEATURES, DataConfig, Scaler, load_dataset
from hqrun.data.preprocess import handle_non_finite, split
from hqrun.errors import ConfigError, DataError


def make_jets(n: int = 500, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 5
    X = (rng.normal(size=(n, 16)) * (1 + np.arange(16)) + 3 * y[:, None]).astype(np.float32)
    return X, y.astype(np.int64)


def write_npz(path, X, y):
    np.savez(path, X=X, y=y, feature_names=np.array(JET_FEATURES), class_names=np.array(JET_CLASSES))
    return str(path)


def test_split_sizes_stratified_disjoint_and_seeded():
    X, y = make_jets(1000)
    X = X.copy()
    X[:, 0] = np.arange(1000)  # row ids survive the split
    parts = split(X, y, test_fraction=0.2, val_fraction=0.2, seed=0)
    sizes = {k: len(v[1]) for k, v in parts.items()}
    assert sizes == {"train": 640, "val": 160, "test": 200}
    ids = [set(parts[k][0][:, 0].astype(int)) for k in ("train", "val", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert set().union(*ids) == set(range(1000))
    for _, (_, yy) in parts.items():
        counts = np.bincount(yy, minlength=5)
        assert counts.max() - counts.min() <= 1  # stratified: equal class shares
    again = split(X, y, 0.2, 0.2, seed=0)
    other = split(X, y, 0.2, 0.2, seed=1)
    np.testing.assert_array_equal(parts["test"][0], again["test"][0])
    assert not np.array_equal(parts["test"][0], other["test"][0])


def test_split_matches_sklearn_reference_cut():
    from sklearn.model_selection import train_test_split

    X, y = make_jets(400)
    parts = split(X, y, 0.2, 0.2, seed=0)
    _, X_test, _, _ = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
    np.testing.assert_array_equal(parts["test"][0], X_test)


@pytest.mark.parametrize("value", [0.0, 1.0, -0.1, 1.5])
def test_split_rejects_bad_fractions(value):
    X, y = make_jets(100)
    with pytest.raises(ConfigError):
        split(X, y, value, 0.2, 0)


@settings(deadline=None, max_examples=25)
@given(st.integers(0, 10_000), st.floats(-50, 50), st.floats(0.01, 100))
def test_scaler_is_fitted_on_train_only(seed, shift, spread):
    """Changing val/test rows must not change the scaler; train is standardised exactly."""
    rng = np.random.default_rng(seed)
    X_train = (rng.normal(size=(64, 4)) * spread + shift).astype(np.float32)
    scaler = Scaler.fit(X_train, list("abcd"))
    np.testing.assert_allclose(scaler.mean, X_train.astype(np.float64).mean(0), rtol=1e-12)
    Z = scaler.transform(X_train).astype(np.float64)
    np.testing.assert_allclose(Z.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(Z.std(0), 1.0, rtol=1e-4)


def test_load_dataset_scaler_uses_train_split_only(tmp_path):
    X, y = make_jets(500)
    path = write_npz(tmp_path / "a.npz", X, y)
    base = load_dataset(DataConfig(source="file", path=path), seed=0)
    # a huge outlier in a row that lands in the test split must not move the scaler
    Xb = X.copy()
    parts = split(X, y, 0.2, 0.2, 0)
    row = int(np.flatnonzero((X == parts["test"][0][0]).all(axis=1))[0])
    Xb[row] += 1e6
    changed = load_dataset(DataConfig(source="file", path=write_npz(tmp_path / "b.npz", Xb, y)), seed=0)
    np.testing.assert_array_equal(base.scaler.mean, changed.scaler.mean)
    np.testing.assert_array_equal(base.scaler.scale, changed.scaler.scale)
    assert not np.array_equal(base.X_test, changed.X_test)
    np.testing.assert_allclose(base.X_train.mean(0), 0, atol=1e-5)
    assert abs(base.X_test.mean()) < 0.5  # scaled with train statistics, roughly centred


def test_scaler_json_roundtrip(tmp_path):
    X, _ = make_jets(50)
    scaler = Scaler.fit(X, list(JET_FEATURES))
    scaler.save(tmp_path / "scaler.json")
    data = json.loads((tmp_path / "scaler.json").read_text())
    assert set(data) >= {"mean", "scale", "feature_names", "kind"}
    assert len(data["mean"]) == 16 and data["feature_names"] == list(JET_FEATURES)
    again = Scaler.load(tmp_path / "scaler.json")
    np.testing.assert_array_equal(again.transform(X), scaler.transform(X))


def test_constant_column_does_not_divide_by_zero():
    X = np.ones((10, 2), dtype=np.float32)
    X[:, 1] = np.arange(10)
    Z = Scaler.fit(X, ["c", "v"]).transform(X)
    assert np.all(np.isfinite(Z)) and np.all(Z[:, 0] == 0)


def test_non_finite_rows_rejected_with_counts_or_dropped(tmp_path):
    X, y = make_jets(200)
    X[3, 2] = np.nan
    X[7, 2] = np.inf
    X[7, 5] = np.nan
    path = write_npz(tmp_path / "nan.npz", X, y)
    with pytest.raises(DataError) as err:
        load_dataset(DataConfig(source="file", path=path), 0)
    message = str(err.value)
    assert "2 of 200 rows" in message and "'j_c1_b1_mmdt': 2" in message and "nan_policy=drop" in message
    splits = load_dataset(DataConfig(source="file", path=path, nan_policy="drop"), 0)
    assert splits.info["dropped_non_finite"] == 2
    assert len(splits.y_train) + len(splits.y_val) + len(splits.y_test) == 198
    assert np.all(np.isfinite(splits.X_train))
    with pytest.raises(ConfigError):
        handle_non_finite(X, y, list(JET_FEATURES), "x", policy="ignore")


def test_max_samples_subsamples_stratified(tmp_path):
    X, y = make_jets(1000)
    splits = load_dataset(DataConfig(source="file", path=write_npz(tmp_path / "a.npz", X, y), max_samples=250), 0)
    total = len(splits.y_train) + len(splits.y_val) + len(splits.y_test)
    assert total == 250
    assert np.bincount(splits.y_train, minlength=5).min() >= 30


@settings(max_examples=60, deadline=None)
@given(test=st.floats(0.05, 0.5), val=st.floats(0.05, 0.5), classes=st.integers(2, 6),
       extra=st.integers(0, 3), seed=st.integers(0, 2**16))
def test_the_rows_needed_per_class_leave_every_class_in_every_split(test, val, classes, extra, seed):
    """rows_needed_per_class is the promise check_classes makes: a class with that many rows
    (and any class with more) has at least one row in train, validation and test."""
    from hqrun.data.preprocess import rows_needed_per_class

    need = rows_needed_per_class([test, val])
    counts = [need] + [need + extra * (i + 1) for i in range(classes - 1)]
    y = np.repeat(np.arange(classes), counts)
    X = np.zeros((len(y), 2), np.float32)
    parts = split(X, y, test, val, seed)
    for name, (_, part) in parts.items():
        assert set(np.unique(part)) == set(range(classes)), (name, need, counts)


def test_too_few_classes_or_rows_are_refused_and_few_rows_warned(tmp_path):
    from hqrun.data.preprocess import DataWarning, check_classes, warn_few_rows

    with pytest.raises(DataError, match="all 20 rows belong to class 'g'"):
        check_classes(np.zeros(20, np.int64), JET_CLASSES, "f", [0.2, 0.2])
    with pytest.raises(DataError, match=r"the class\(es\) \['z'\] have no rows"):
        check_classes(np.arange(40) % 4, JET_CLASSES, "f", [0.2, 0.2])
    with pytest.raises(DataError, match=r"\{'z': 3\} \(rows per class\) have fewer than 7 rows"):
        check_classes(np.r_[np.arange(40) % 4, [4, 4, 4]], JET_CLASSES, "f", [0.2, 0.2])
    with pytest.raises(ConfigError, match="needs at least two"):
        check_classes(np.zeros(20, np.int64), ["g"], "f", [0.2, 0.2])
    check_classes(np.arange(35) % 5, JET_CLASSES, "f", [0.2, 0.2])      # 7 per class: enough
    with pytest.warns(DataWarning, match=r"\{'z': 4\} have fewer than 10 training rows"):
        warn_few_rows(np.r_[np.arange(40) % 4, [4] * 4], JET_CLASSES, "f")
