"""The 16 hls4ml jet-substructure features, computed by the C++ shim.

Names and order follow the hls4ml LHC jet data set (OpenML 42468), so files written here are read
by the same ``jets_file``/``jets_sample`` loaders as the published set. All energy-correlation
ratios of a jet come from one pass over its constituent pairs and triples (see
``shim/hqjets.cpp``); ratios that are 0/0 (single-particle groomed jets) are reported as 0.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from hqrun.data.config import JET_FEATURES

#: Same names and order as the readers expect; one definition, in the light ``hqrun.data.config``
#: (importing it pulls in no torch, pandas or h5py).
FEATURE_NAMES: tuple[str, ...] = JET_FEATURES
#: the 13 energy-correlation ratios, in the order the shim returns them
RATIO_NAMES: tuple[str, ...] = FEATURE_NAMES[1:14]
N_FEATURES = len(FEATURE_NAMES)


@dataclass(frozen=True)
class JetCuts:
    """Jet definition and selection of the hls4ml recipe."""

    R: float = 0.8
    pt_min: float = 800.0
    pt_max: float = 1200.0
    abs_eta_max: float = 2.5
    match_dr: float = 0.6
    zcut: float = 0.1


def _p4(particles: np.ndarray) -> np.ndarray:
    arr = np.ascontiguousarray(particles, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"particles must have shape (n, 4) as (px, py, pz, E); got {arr.shape}")
    return arr


def _ptr(arr: np.ndarray, ctype=ctypes.c_double):
    return arr.ctypes.data_as(ctypes.POINTER(ctype))


def event_jets(
    particles: np.ndarray, targets: np.ndarray, cuts: JetCuts = JetCuts(), max_jets: int = 4
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cluster one event's visible particles; keep selected jets matched to a truth target.

    Returns ``(kin, feats, match)``: (k, 4) ungroomed-jet (pt, eta, phi, m), (k, 16) features and
    (k,) indices into ``targets`` (each target matched at most once, hardest jet first).
    """
    from hqrun.datagen.shimlib import load

    lib = load()
    parts, targ = _p4(particles), _p4(targets)
    kin = np.zeros((max_jets, 4))
    feats = np.zeros((max_jets, N_FEATURES))
    match = np.zeros(max_jets, dtype=np.int32)
    k = lib.hq_event_jets(
        _ptr(parts), len(parts), _ptr(targ), len(targ), cuts.R, cuts.pt_min, cuts.pt_max,
        cuts.abs_eta_max, cuts.match_dr, cuts.zcut, max_jets, _ptr(kin), _ptr(feats),
        _ptr(match, ctypes.c_int),
    )
    return kin[:k], feats[:k], match[:k]


def leading_jet_features(
    particles: np.ndarray, R: float = 0.8, zcut: float = 0.1
) -> tuple[np.ndarray, np.ndarray] | None:
    """(kin, 16 features) of the hardest anti-kt jet of ``particles``; None if there is none."""
    from hqrun.datagen.shimlib import load

    parts = _p4(particles)
    kin, feats = np.zeros(4), np.zeros(N_FEATURES)
    if not load().hq_leading_jet_features(_ptr(parts), len(parts), R, zcut, _ptr(kin), _ptr(feats)):
        return None
    return kin, feats


def ecf_ratios(particles: np.ndarray, reference: bool = False) -> np.ndarray:
    """The 13 ECF ratios of ``particles`` taken as one ungroomed jet.

    ``reference=True`` computes them with fastjet-contrib's EnergyCorrelator classes instead of
    the single-pass loop (slow; used to check the fast path).
    """
    from hqrun.datagen.shimlib import load

    lib = load()
    parts = _p4(particles)
    out = np.zeros(len(RATIO_NAMES))
    fn = lib.hq_ratios_contrib if reference else lib.hq_ratios
    fn(_ptr(parts), len(parts), _ptr(out))
    return out
