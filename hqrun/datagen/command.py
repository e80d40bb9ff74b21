"""``hqrun datagen jets``: regenerate the jet-tagging sample (needs ``hqrun[physics]``).

Flag-driven rather than Hydra-driven because it is a one-off producer of a data file, not a
stage of a run; ``hqrun.cli`` hands it the arguments after ``datagen``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import shlex
import sys
import time
from importlib import metadata as _md

from hqrun.errors import ConfigError, HqrunError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hqrun datagen",
        description="Generate simulated jet data sets (Pythia 8 + FastJet; needs hqrun[physics]).",
    )
    sub = p.add_subparsers(dest="what", required=True, metavar="{jets}")
    j = sub.add_parser(
        "jets",
        help="the 16 hls4ml jet-substructure features for g, q, t, w, z jets",
        description="Balanced, shuffled jet set in the hqrun .npz layout plus a .json record.",
    )
    j.add_argument("--n-per-class", type=int, default=2000, help="jets per class (default 2000)")
    j.add_argument("--seed", type=int, default=1, help="master seed (default 1)")
    j.add_argument("--out", required=True, help="output .npz path (a .json record is written next to it)")
    j.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    j.add_argument("--chunk-size", type=int, default=500,
                   help="jets per Pythia seed/chunk; the output depends on it (default 500)")
    j.add_argument("--classes", default="g,q,t,w,z", help="comma-separated subset of g,q,t,w,z")
    bar = j.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="show a progress bar (default: only on a terminal)")
    bar.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def _version(dist: str) -> str:
    try:
        return _md.version(dist)
    except _md.PackageNotFoundError:
        return "not installed"


def _check(args: argparse.Namespace) -> list[str]:
    from hqrun.datagen.pythia_events import CLASS_NAMES

    if args.n_per_class < 1:
        raise ConfigError(f"--n-per-class must be >= 1, got {args.n_per_class}.")
    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}.")
    if args.chunk_size < 1:
        raise ConfigError(f"--chunk-size must be >= 1, got {args.chunk_size}.")
    if not args.out.endswith(".npz"):
        raise ConfigError(f"--out {args.out!r} must end in .npz.")
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    unknown = [c for c in classes if c not in CLASS_NAMES]
    if unknown or not classes:
        raise ConfigError(f"--classes {args.classes!r}: unknown {unknown}; choose from {','.join(CLASS_NAMES)}.")
    return classes


def main(argv: list[str]) -> int:
    """Entry point for ``hqrun datagen ...``; returns the exit status."""
    args = _parser().parse_args(argv)
    classes = _check(args)
    from hqrun.datagen.shimlib import physics_missing_reason

    reason = physics_missing_reason()
    if reason:
        raise HqrunError(reason)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from hqrun import __version__
    from hqrun.datagen.features import FEATURE_NAMES, JetCuts
    from hqrun.datagen.generate import generate
    from hqrun.datagen.pythia_events import CLASS_NAMES, CLASS_SETTINGS, pythia_settings
    from hqrun.datagen.writer import write_jets

    started = _dt.datetime.now(_dt.timezone.utc)
    t0 = time.perf_counter()
    gen = generate(args.n_per_class, args.seed, args.workers, args.chunk_size, classes, args.progress)
    wall = time.perf_counter() - t0
    cuts = JetCuts()
    meta = {
        "command": "hqrun datagen " + shlex.join(argv),
        "seed": args.seed,
        "n_per_class": args.n_per_class,
        "chunk_size": args.chunk_size,
        "workers": args.workers,
        "started_utc": started.isoformat(timespec="seconds"),
        "wall_seconds": round(wall, 1),
        "cpu_seconds_per_class": gen.seconds_per_class,
        "events_per_class": gen.events_per_class,
        "n_nonfinite_set_to_zero": gen.n_nonfinite_set_to_zero,
        "versions": {
            "hqrun": __version__,
            "pythia8mc": _version("pythia8mc"),
            "fastjet": _version("fastjet"),
            "numpy": _version("numpy"),
            "python": platform.python_version(),
        },
        "jets": {"algorithm": "anti-kt", "R": cuts.R, "pt_min": cuts.pt_min, "pt_max": cuts.pt_max,
                 "abs_eta_max": cuts.abs_eta_max, "match_dR": cuts.match_dr,
                 "grooming": f"modified mass drop, zcut={cuts.zcut}, grooming mode"},
        "pythia_settings": {c: pythia_settings(c, 1)[:-1] for c in CLASS_SETTINGS if c in classes},
        "note": "Pythia-only stand-in (no detector simulation); not the published hls4ml data set.",
    }
    out = write_jets(args.out, gen.X, gen.y, gen.kin, FEATURE_NAMES, CLASS_NAMES, meta)
    print(f"hqrun datagen: wrote {len(gen.y)} jets to {out} (+ {out.with_suffix('.json').name}) "
          f"in {wall:.0f} s", file=sys.stderr)
    return 0
