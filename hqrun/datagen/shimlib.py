"""Build (once) and load the C++ jet shim that wraps FastJet and fastjet-contrib.

Why a compiled shim: the ``fastjet`` wheel carries the C++ fastjet-contrib library (mass-drop
grooming, energy correlators) and its headers but no Python binding for it. We compile
``shim/hqjets.cpp`` with g++ against the wheel's own headers and libraries the first time it is
needed, and cache the ``.so`` in a user cache directory under a key that hashes the source, the
fastjet location and version, and the compiler — so a changed source or wheel triggers a rebuild
and everything else reuses the cached build (tests, every worker process, later runs).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from hqrun.errors import HqrunError

SOURCE = Path(__file__).resolve().parent / "shim" / "hqjets.cpp"
LIB_NAME = "libhqjets.so"

_LOADED: ctypes.CDLL | None = None


class ShimBuildError(HqrunError, RuntimeError):
    """The C++ FastJet shim could not be compiled or loaded."""


def physics_missing_reason() -> str | None:
    """Why the physics extra cannot run here, or None when pythia8mc and fastjet are present."""
    missing = []
    for mod in ("pythia8mc", "fastjet"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        return (
            f"the jet generator needs {', '.join(missing)}, which is not installed; install the "
            "physics extra with `pip install 'hqrun[physics]'` (pythia8mc==8.317.2 and fastjet)."
        )
    return None


def fastjet_paths() -> tuple[Path, Path]:
    """The fastjet wheel's C++ include and library directories."""
    reason = physics_missing_reason()
    if reason and "fastjet" in reason:
        raise ShimBuildError(reason)
    import fastjet

    root = Path(fastjet.__file__).resolve().parent
    include, lib = root / "include", root / "lib64"
    if not lib.is_dir():
        lib = root / "lib"
    if not (include / "fastjet" / "contrib" / "EnergyCorrelator.hh").is_file() or not any(
        lib.glob("libfastjetcontribfragile*")
    ):
        raise ShimBuildError(
            f"the fastjet wheel at {root} has no fastjet-contrib headers or library "
            "(expected include/fastjet/contrib/EnergyCorrelator.hh and "
            "lib64/libfastjetcontribfragile.so); install a fastjet wheel >= 3.4.2 from PyPI."
        )
    return include, lib


def cache_dir() -> Path:
    """Where compiled shims live: $HQRUN_CACHE_DIR, else $XDG_CACHE_HOME/hqrun, else ~/.cache/hqrun."""
    base = os.environ.get("HQRUN_CACHE_DIR")
    if base:
        return Path(base) / "shim"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "hqrun" / "shim"


def _compiler() -> str:
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise ShimBuildError(
            "no C++ compiler found to build the FastJet shim for `hqrun datagen`; install g++ "
            "(e.g. `apt-get install g++`) or point $CXX at one."
        )
    return cxx


def build_key() -> str:
    """Hash of everything the compiled shim depends on."""
    import fastjet

    include, lib = fastjet_paths()
    h = hashlib.sha256()
    h.update(SOURCE.read_bytes())
    h.update(str(lib).encode())
    h.update(str(getattr(fastjet, "__version__", "")).encode())
    h.update(_compiler().encode())
    return h.hexdigest()[:16]


def build(force: bool = False) -> Path:
    """Compile the shim into the cache (once per key) and return the library path."""
    include, lib = fastjet_paths()
    key = build_key()
    target = cache_dir() / key / LIB_NAME
    if target.is_file() and not force:
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # read-only home (CI, containers): fall back to the temp dir
        private = Path(tempfile.gettempdir()) / f"hqrun-shim-{os.getuid()}"
        private.mkdir(mode=0o700, exist_ok=True)
        info = private.stat()
        # /tmp is shared: a library someone else could have placed there must never be loaded
        if info.st_uid != os.getuid() or info.st_mode & 0o022:
            raise ShimBuildError(
                f"{private} is not a private directory of this user (owner uid {info.st_uid}, "
                f"mode {oct(info.st_mode & 0o777)}); hqrun will not load a compiled library from "
                "it. Remove it, or make ~/.cache writable, and rerun."
            )
        target = private / key / LIB_NAME
        if target.is_file() and not force:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    cmd = [
        _compiler(), "-O2", "-std=c++17", "-fPIC", "-shared", f"-I{include}", str(SOURCE),
        "-o", tmp, f"-L{lib}", "-lfastjetcontribfragile", "-lfastjettools", "-lfastjet",
        f"-Wl,-rpath,{lib}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        os.unlink(tmp)
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise ShimBuildError(
            f"compiling the FastJet shim {SOURCE} failed (command: {' '.join(cmd)}); the "
            f"compiler said: {tail}"
        )
    os.replace(tmp, target)  # atomic: concurrent builders never see a half-written file
    print(f"hqrun: built the FastJet shim {target}", file=sys.stderr)
    return target


def load() -> ctypes.CDLL:
    """The loaded shim with typed signatures (built on first use, cached per process)."""
    global _LOADED
    if _LOADED is not None:
        return _LOADED
    path = build()
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as err:
        raise ShimBuildError(
            f"loading the FastJet shim {path} failed ({err}); delete {path.parent} to force a "
            "rebuild, or reinstall the fastjet wheel."
        ) from err
    dp, ip, d, i = ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_int), ctypes.c_double, ctypes.c_int
    lib.hq_event_jets.argtypes = [dp, i, dp, i, d, d, d, d, d, d, i, dp, dp, ip]
    lib.hq_event_jets.restype = i
    lib.hq_leading_jet_features.argtypes = [dp, i, d, d, dp, dp]
    lib.hq_leading_jet_features.restype = i
    lib.hq_ratios.argtypes = [dp, i, dp]
    lib.hq_ratios.restype = None
    lib.hq_ratios_contrib.argtypes = [dp, i, dp]
    lib.hq_ratios_contrib.restype = None
    lib.hq_n_features.restype = i
    _LOADED = lib
    return lib
