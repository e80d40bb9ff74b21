"""Pythia 8 event streams for the five jet classes of the hls4ml recipe.

Each class is one Pythia configuration (13 TeV pp, Monash tune, ISR/FSR, MPI, hadronisation and
decays on) plus the truth objects that its jets must be matched to. W and Z come from a heavy
scalar (2 TeV, narrow) decaying to WW/ZZ: such bosons are mostly longitudinal and two-prong, like
the published set, whereas W/Z+jet bosons are mostly transverse and often groom to one prong.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from hqrun.errors import ConfigError

CLASS_NAMES: tuple[str, ...] = ("g", "q", "t", "w", "z")

_COMMON = (
    "Beams:eCM = 13000.",
    "Tune:pp = 14",  # Monash 2013
    "PartonLevel:ISR = on",
    "PartonLevel:FSR = on",
    "PartonLevel:MPI = on",
    "HadronLevel:all = on",
    "Next:numberCount = 0",
    "Next:numberShowEvent = 0",
    "Next:numberShowInfo = 0",
    "Next:numberShowProcess = 0",
    "Init:showChangedSettings = off",
    "Init:showChangedParticleData = off",
    "Print:quiet = on",
)
_PT_WINDOW = ("PhaseSpace:pTHatMin = 900.", "PhaseSpace:pTHatMax = 1150.")
_HADRONIC_W = ("24:onMode = off", "24:onIfAny = 1 2 3 4 5")
_HADRONIC_Z = ("23:onMode = off", "23:onIfAny = 1 2 3 4 5")
_HEAVY_SCALAR = (
    "Higgs:useBSM = on",
    "HiggsBSM:gg2H2 = on",
    "35:m0 = 2000.",
    "35:doForceWidth = on",
    "35:mWidth = 10.",
    "35:mMin = 1800.",
    "35:mMax = 2200.",
    "35:onMode = off",
)

#: Pythia settings per class
CLASS_SETTINGS: dict[str, tuple[str, ...]] = {
    "g": ("HardQCD:gg2gg = on", "HardQCD:qqbar2gg = on") + _PT_WINDOW,
    "q": ("HardQCD:qq2qq = on", "HardQCD:qqbar2qqbarNew = on") + _PT_WINDOW,
    "t": ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on") + _PT_WINDOW + _HADRONIC_W,
    "w": _HEAVY_SCALAR + ("35:onIfMatch = 24 -24",) + _HADRONIC_W,
    "z": _HEAVY_SCALAR + ("35:onIfMatch = 23 23",) + _HADRONIC_Z,
}

#: |PDG id| of the truth object a jet of each class must be matched to
_TARGET_IDS: dict[str, frozenset[int]] = {
    "g": frozenset({21}),
    "q": frozenset({1, 2, 3, 4, 5}),
    "t": frozenset({6}),
    "w": frozenset({24}),
    "z": frozenset({23}),
}


def pythia_settings(cls: str, seed: int) -> list[str]:
    """All readString settings for one class and seed (also written into the metadata)."""
    if cls not in CLASS_SETTINGS:
        raise ConfigError(f"unknown jet class {cls!r}; the classes are {', '.join(CLASS_NAMES)}.")
    if not 1 <= seed <= 900_000_000:
        raise ConfigError(f"Pythia seed {seed} is outside 1..900000000 (Random:seed's range).")
    return [*_COMMON, *CLASS_SETTINGS[cls], "Random:setSeed = on", f"Random:seed = {seed}"]


def make_pythia(cls: str, seed: int):
    """An initialised ``pythia8mc.Pythia`` for one class."""
    import pythia8mc

    pythia = pythia8mc.Pythia("", False)
    for line in pythia_settings(cls, seed):
        if not pythia.readString(line):
            raise ConfigError(f"Pythia rejected the setting {line!r} (pythia8mc version?).")
    if not pythia.init():
        raise ConfigError(f"Pythia failed to initialise for class {cls!r}; see its log above.")
    return pythia


def _p4(p) -> tuple[float, float, float, float]:
    return (p.px(), p.py(), p.pz(), p.e())


def truth_targets(pythia, cls: str) -> np.ndarray:
    """(m, 4) momenta of the objects a jet of class ``cls`` must be matched to.

    Quarks and gluons: the two outgoing partons of the hard process. Tops and bosons: the last
    copy of each in the event record (after recoils, right before its decay).
    """
    ids = _TARGET_IDS[cls]
    if cls in ("g", "q"):
        proc = pythia.process
        rows = [_p4(proc[i]) for i in range(proc.size()) if proc[i].status() == 23 and proc[i].idAbs() in ids]
    else:
        ev = pythia.event
        rows = []
        for i in range(ev.size()):
            p = ev[i]
            if p.idAbs() in ids and ev[p.daughter1()].idAbs() != p.idAbs():
                rows.append(_p4(p))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def visible_particles(pythia) -> np.ndarray:
    """(n, 4) momenta of the visible final-state particles (neutrinos excluded)."""
    rows = [_p4(p) for p in pythia.event if p.isFinal() and p.isVisible()]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def events(cls: str, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless stream of (visible particles, truth targets) for one class; failed events skipped."""
    pythia = make_pythia(cls, seed)
    while True:
        if not pythia.next():
            continue
        yield visible_particles(pythia), truth_targets(pythia, cls)
