"""Tests of the jet generator (hqrun.datagen).

The writer and CLI-argument tests need nothing extra. The physics tests need the optional extra
``hqrun[physics]`` (pythia8mc, fastjet) and a C++ compiler; they are skipped with the reason
otherwise. The compiled shim is cached in the user cache dir, so it is built at most once.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hqrun.datagen.shimlib import physics_missing_reason
from hqrun.datagen.writer import metadata_path, read_metadata, sha256_of, write_jets
from hqrun.errors import ConfigError, DataError

FEATURES = [f"f{i}" for i in range(16)]
CLASSES = ["g", "q", "t", "w", "z"]

_REASON = physics_missing_reason()
needs_physics = pytest.mark.skipif(_REASON is not None, reason=f"physics extra missing: {_REASON}")


# --------------------------------------------------------------------------- writer (no physics)
def _toy_set(n=25, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 16)), rng.integers(0, 5, n), rng.normal(size=(n, 4))


def test_writer_roundtrip_and_metadata(tmp_path):
    X, y, kin = _toy_set()
    out = write_jets(tmp_path / "a.npz", X, y, kin, FEATURES, CLASSES, {"seed": 7, "command": "x"})
    d = np.load(out)
    assert d["X"].dtype == np.float32 and d["X"].shape == (25, 16)
    assert d["y"].dtype == np.int64 and np.array_equal(d["y"], y)
    assert d["jet_pt_eta_phi_m"].dtype == np.float32
    assert list(d["feature_names"]) == FEATURES and list(d["class_names"]) == CLASSES
    np.testing.assert_allclose(d["X"], X.astype(np.float32))
    meta = read_metadata(out)
    assert meta["seed"] == 7 and meta["n_jets"] == 25
    assert meta["sha256"] == sha256_of(out)
    assert sum(meta["counts"].values()) == 25
    assert meta["counts"]["g"] == int((y == 0).sum())
    assert metadata_path(out) == tmp_path / "a.json"


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda X, y, k: (X[:, :15], y, k), "feature names"),
        (lambda X, y, k: (X, y[:-1], k), "do not match"),
        (lambda X, y, k: (X, y + 5, k), "labels span"),
    ],
)
def test_writer_rejects_malformed(tmp_path, mutate, match):
    X, y, kin = mutate(*_toy_set())
    with pytest.raises(DataError, match=match):
        write_jets(tmp_path / "b.npz", X, y, kin, FEATURES, CLASSES)
    assert not (tmp_path / "b.npz").exists()


def test_writer_requires_npz_suffix(tmp_path):
    with pytest.raises(DataError, match=r"\.npz"):
        write_jets(tmp_path / "b.h5", *_toy_set(), FEATURES, CLASSES)


def test_read_metadata_missing(tmp_path):
    with pytest.raises(DataError, match="no metadata record"):
        read_metadata(tmp_path / "none.npz")


@pytest.mark.parametrize(
    "argv, match",
    [
        (["jets", "--n-per-class", "0", "--out", "x.npz"], "n-per-class"),
        (["jets", "--out", "x.npz", "--classes", "g,x"], "unknown"),
        (["jets", "--out", "x.csv"], r"\.npz"),
        (["jets", "--out", "x.npz", "--workers", "0"], "workers"),
    ],
)
def test_command_rejects_bad_arguments(argv, match):
    from hqrun.datagen.command import main

    with pytest.raises(ConfigError, match=match):
        main(argv)


def test_chunk_plan_is_seeded_and_balanced():
    from hqrun.datagen.generate import chunk_seed, plan_chunks

    chunks = plan_chunks(1100, seed=3, chunk_size=500)
    assert [c.n_jets for c in chunks[:3]] == [500, 500, 100]
    assert len(chunks) == 15
    seeds = [c.seed for c in chunks]
    assert len(set(seeds)) == len(seeds) and all(1 <= s <= 900_000_000 for s in seeds)
    assert seeds == [c.seed for c in plan_chunks(1100, seed=3, chunk_size=500)]
    assert chunk_seed(3, 0, 0) != chunk_seed(4, 0, 0)


def test_embedded_sample_layout():
    """The sample shipped in the package is balanced and matches its metadata record."""
    from importlib import resources

    path = resources.files("hqrun") / "data_files" / "jets_sample.npz"
    assert path.is_file(), "the embedded jet sample is missing from the package"
    from hqrun.datagen.features import FEATURE_NAMES

    d = np.load(path)
    meta = json.loads((resources.files("hqrun") / "data_files" / "jets_sample.json").read_text())
    assert list(d["feature_names"]) == list(FEATURE_NAMES)
    assert list(d["class_names"]) == CLASSES
    counts = np.bincount(d["y"], minlength=5)
    assert counts.min() == counts.max() == meta["n_per_class"] >= 1000
    assert np.isfinite(d["X"]).all()
    assert meta["sha256"] == sha256_of(path)
    assert meta["command"].startswith("hqrun datagen jets")


# --------------------------------------------------------------------------- physics
def _p4(pt, y, phi, m=0.0):
    mt = math.hypot(pt, m)
    return [pt * math.cos(phi), pt * math.sin(phi), mt * math.sinh(y), mt * math.cosh(y)]


def _numpy_ratios(parts):
    """Brute-force ECF ratios straight from the definitions (pt_R measure)."""
    parts = np.asarray(parts, dtype=float)
    pt = np.hypot(parts[:, 0], parts[:, 1])
    y = 0.5 * np.log((parts[:, 3] + parts[:, 2]) / (parts[:, 3] - parts[:, 2]))
    phi = np.arctan2(parts[:, 1], parts[:, 0])
    z = pt / pt.sum()

    def ang(i, j):
        dphi = abs(phi[i] - phi[j])
        dphi = min(dphi, 2 * math.pi - dphi)
        return math.hypot(y[i] - y[j], dphi)

    n = len(z)
    e2 = {b: sum(z[i] * z[j] * ang(i, j) ** b for i, j in itertools.combinations(range(n), 2)) for b in (0, 1, 2)}
    g3 = {}
    for b in (1, 2):
        for v in (1, 2, 3):
            g3[v, b] = sum(
                z[i] * z[j] * z[k] * np.prod(sorted([ang(i, j), ang(i, k), ang(j, k)])[:v]) ** b
                for i, j, k in itertools.combinations(range(n), 3)
            )
    return np.array([
        e2[0], e2[1], e2[2],
        g3[3, 1] / e2[1] ** 2, g3[3, 2] / e2[2] ** 2,
        g3[3, 1] / e2[1] ** 3, g3[3, 2] / e2[2] ** 3,
        g3[3, 1] / e2[1] ** 3, g3[3, 1] / e2[2] ** 1.5,
        g3[1, 1] / e2[1], g3[1, 2] / e2[2],
        g3[2, 1] / e2[1] ** 2, g3[2, 2] / e2[2] ** 2,
    ])


@needs_physics
def test_two_particle_ratios_by_hand():
    from hqrun.datagen.features import ecf_ratios

    # pT 300 and 100 at dy = 0.3, dphi = 0.4 -> dR = 0.5; z = 0.75, 0.25
    out = ecf_ratios(np.array([_p4(300, 0.1, 1.0), _p4(100, 0.4, 1.4)]))
    zz = 0.75 * 0.25
    np.testing.assert_allclose(out[:3], [zz, zz * 0.5, zz * 0.25], rtol=1e-12)
    assert np.all(out[3:] == 0.0)  # no triples: every 3-point function vanishes


@needs_physics
def test_three_particle_ratios_match_numpy_and_contrib():
    from hqrun.datagen.features import ecf_ratios

    parts = np.array([_p4(400, 0.0, 0.0), _p4(250, 0.3, 0.1, m=0.14), _p4(50, -0.2, 0.5)])
    fast = ecf_ratios(parts)
    np.testing.assert_allclose(fast, _numpy_ratios(parts), rtol=1e-10)
    np.testing.assert_allclose(fast, ecf_ratios(parts, reference=True), rtol=1e-10)


@needs_physics
@settings(deadline=None, max_examples=15)
@given(st.integers(2, 12), st.integers(0, 2**31 - 1))
def test_single_pass_ratios_equal_contrib(n, seed):
    from hqrun.datagen.features import ecf_ratios

    rng = np.random.default_rng(seed)
    parts = np.array([_p4(p, yy, f) for p, yy, f in zip(rng.exponential(30, n) + 0.5, rng.normal(0, 0.3, n), rng.normal(0, 0.3, n))])
    fast, ref = ecf_ratios(parts), ecf_ratios(parts, reference=True)
    np.testing.assert_allclose(fast, ref, rtol=1e-9, atol=1e-14)
    assert np.all(fast >= 0)
    assert fast[7] == fast[5]  # D2^(1,1) is D2^(1)


@needs_physics
def test_grooming_drops_soft_wide_particle():
    from hqrun.datagen.features import leading_jet_features

    hard = [_p4(500, 0.0, 0.0), _p4(400, 0.2, 0.2)]
    soft = [_p4(20, 0.5, -0.4)]  # z = 20/920 < 0.1 at the widest angle: groomed away
    kin2, f2 = leading_jet_features(np.array(hard))
    kin3, f3 = leading_jet_features(np.array(hard + soft))
    assert f2[15] == 2 and f3[15] == 3
    z = np.array([500, 400]) / 900
    assert f2[0] == pytest.approx(np.sum(z * np.log(z)), rel=1e-12)
    assert f2[14] == pytest.approx(kin2[3], rel=1e-9)  # nothing groomed: groomed mass = jet mass
    assert f3[14] == pytest.approx(f2[14], rel=1e-9)  # soft particle removed by mMDT
    assert f3[14] < kin3[3]
    np.testing.assert_allclose(f3[1:14], f2[1:14], rtol=1e-9)  # ratios use the groomed jet


@pytest.fixture(scope="module")
def small_generated(tmp_path_factory):
    if _REASON is not None:
        pytest.skip(f"physics extra missing: {_REASON}")
    from hqrun.datagen.command import main

    out = tmp_path_factory.mktemp("datagen") / "few.npz"
    assert main(["jets", "--n-per-class", "3", "--seed", "5", "--chunk-size", "3", "--out", str(out), "--no-progress"]) == 0
    return out


@needs_physics
def test_generated_jets_layout_and_invariants(small_generated):
    from hqrun.datagen.features import FEATURE_NAMES

    d = np.load(small_generated)
    X, y, kin = d["X"], d["y"], d["jet_pt_eta_phi_m"]
    assert X.shape == (15, 16) and kin.shape == (15, 4)
    assert list(d["feature_names"]) == list(FEATURE_NAMES) and list(d["class_names"]) == CLASSES
    assert np.bincount(y, minlength=5).tolist() == [3] * 5
    assert np.isfinite(X).all() and np.isfinite(kin).all()
    assert np.all(X[:, 1:14] >= 0)
    np.testing.assert_array_equal(X[:, 8], X[:, 6])  # j_d2_a1_b1_mmdt == j_d2_b1_mmdt
    assert np.all(X[:, 14] <= kin[:, 3] * (1 + 1e-5) + 1e-3)  # groomed mass <= jet mass
    mult = X[:, 15]
    assert np.all(mult >= 1) and np.array_equal(mult, np.round(mult))
    assert np.all(X[:, 0] <= 0)  # sum z ln z with z <= 1
    assert np.all((kin[:, 0] > 800) & (kin[:, 0] < 1200)) and np.all(np.abs(kin[:, 1]) < 2.5)
    meta = read_metadata(small_generated)
    assert meta["seed"] == 5 and meta["counts"] == dict.fromkeys(CLASSES, 3)
    assert meta["command"].startswith("hqrun datagen jets --n-per-class 3")
    assert meta["versions"]["pythia8mc"] == "8.317.2"


@needs_physics
def test_same_seed_same_jets():
    from hqrun.datagen.generate import Chunk, run_chunk

    a = run_chunk(Chunk(1, 0, 2, seed=11))
    b = run_chunk(Chunk(1, 0, 2, seed=11))
    assert a.feats.shape == (2, 16)
    np.testing.assert_array_equal(a.feats, b.feats)
    np.testing.assert_array_equal(a.kin, b.kin)
