"""Generate a balanced jet set: Pythia events → FastJet jets → 16 features, over worker processes.

Work is cut into fixed chunks (class, chunk index), each with its own Pythia seed derived from the
user's seed, so the output depends on ``seed``, ``n_per_class`` and ``chunk_size`` only — not on
how many workers ran it or in which order chunks finished.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from hqrun.datagen.features import N_FEATURES, JetCuts, event_jets
from hqrun.datagen.pythia_events import CLASS_NAMES, events


@dataclass(frozen=True)
class Chunk:
    cls_index: int
    chunk_index: int
    n_jets: int
    seed: int


@dataclass
class ChunkResult:
    chunk: Chunk
    kin: np.ndarray
    feats: np.ndarray
    n_events: int
    seconds: float


@dataclass
class GeneratedJets:
    X: np.ndarray
    y: np.ndarray
    kin: np.ndarray
    events_per_class: dict[str, int] = field(default_factory=dict)
    seconds_per_class: dict[str, float] = field(default_factory=dict)
    n_nonfinite_set_to_zero: int = 0


def chunk_seed(seed: int, cls_index: int, chunk_index: int) -> int:
    """Pythia ``Random:seed`` (1..900000000) of one chunk, derived from the user's seed."""
    state = np.random.SeedSequence([seed, cls_index, chunk_index]).generate_state(1)[0]
    return int(state % 900_000_000) + 1


def plan_chunks(n_per_class: int, seed: int, chunk_size: int, classes: Sequence[str] = CLASS_NAMES) -> list[Chunk]:
    chunks = []
    for name in classes:
        ci = CLASS_NAMES.index(name)
        for k, start in enumerate(range(0, n_per_class, chunk_size)):
            chunks.append(Chunk(ci, k, min(chunk_size, n_per_class - start), chunk_seed(seed, ci, k)))
    return chunks


def run_chunk(chunk: Chunk, cuts: JetCuts = JetCuts(), progress: Callable[[int], None] | None = None) -> ChunkResult:
    """Generate events until ``chunk.n_jets`` matched jets are collected (extra jets of the last event dropped)."""
    t0 = time.perf_counter()
    cls = CLASS_NAMES[chunk.cls_index]
    kins, feats, got, n_events = [], [], 0, 0
    stream = events(cls, chunk.seed)
    while got < chunk.n_jets:
        parts, targets = next(stream)
        n_events += 1
        if len(targets) == 0 or len(parts) == 0:
            continue
        kin, f, _ = event_jets(parts, targets, cuts)
        take = min(len(kin), chunk.n_jets - got)
        if take:
            kins.append(kin[:take])
            feats.append(f[:take])
            got += take
            if progress is not None:
                progress(take)
    return ChunkResult(
        chunk,
        np.concatenate(kins) if kins else np.zeros((0, 4)),
        np.concatenate(feats) if feats else np.zeros((0, N_FEATURES)),
        n_events,
        time.perf_counter() - t0,
    )


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency of the usual installs
        return None
    return tqdm(total=total, unit="jet", desc="datagen jets", file=sys.stderr, dynamic_ncols=True)


def generate(
    n_per_class: int,
    seed: int,
    workers: int = 1,
    chunk_size: int = 500,
    classes: Sequence[str] = CLASS_NAMES,
    progress: bool | None = None,
    cuts: JetCuts = JetCuts(),
) -> GeneratedJets:
    """Balanced, shuffled jet set with ``n_per_class`` jets of each class in ``classes``."""
    chunks = plan_chunks(n_per_class, seed, chunk_size, classes)
    if progress is None:
        progress = sys.stderr.isatty()
    bar = _progress_bar(sum(c.n_jets for c in chunks), progress)
    results: list[ChunkResult] = []
    try:
        if workers <= 1:
            for chunk in chunks:
                results.append(run_chunk(chunk, cuts, bar.update if bar else None))
        else:
            from hqrun.datagen.shimlib import build

            build()  # compile once here, not racing in every worker
            ctx = mp.get_context("spawn")
            with ctx.Pool(workers) as pool:
                for res in pool.imap_unordered(_run_chunk_star, [(c, cuts) for c in chunks]):
                    results.append(res)
                    if bar:
                        bar.update(res.chunk.n_jets)
    finally:
        if bar:
            bar.close()
    results.sort(key=lambda r: (r.chunk.cls_index, r.chunk.chunk_index))
    X = np.concatenate([r.feats for r in results]).astype(np.float64)
    kin = np.concatenate([r.kin for r in results])
    y = np.concatenate([np.full(len(r.feats), r.chunk.cls_index, dtype=np.int64) for r in results])
    bad = ~np.isfinite(X)
    n_bad = int(bad.sum())
    X[bad] = 0.0
    order = np.random.default_rng(seed).permutation(len(X))
    out = GeneratedJets(X[order].astype(np.float32), y[order], kin[order].astype(np.float32))
    for r in results:
        name = CLASS_NAMES[r.chunk.cls_index]
        out.events_per_class[name] = out.events_per_class.get(name, 0) + r.n_events
        out.seconds_per_class[name] = round(out.seconds_per_class.get(name, 0.0) + r.seconds, 2)
    out.n_nonfinite_set_to_zero = n_bad
    return out


def _run_chunk_star(args: tuple[Chunk, JetCuts]) -> ChunkResult:
    return run_chunk(*args)
