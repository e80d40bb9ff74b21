"""Search throughput: trials/hour/core for the jet model, and Ray Tune's overhead per trial.

Budget of the AutoQKeras reference run: 64k training jets, batch 1024, 10 QAT epochs per trial
(validation on 16k jets after every epoch), one CPU core, one torch thread. The same sampled
plans run twice in the same process: (1) the trial function alone, in a loop; (2) through Ray
Tune on a local Ray with one CPU (the driver's journal callback included). Data are synthetic
Gaussian blobs: throughput does not depend on what the numbers mean.

    python bench/search_throughput.py               # 6 trials each way
    python bench/search_throughput.py --trials 12 --toy   # the toy backend instead of jet_dnn

Targets (issue 5): >= 1,000 trials/hour/core; Ray overhead <= 10 % of the trial time.

    python bench/search_throughput.py --population 1 4 16 64 [--train 16000 --epochs 4]

measures trial-epochs/hour/core of population trials (hqrun.search.population_trials: K
configurations trained as one Lightning population) for each K, against lone trials (lean loop
and Lightning), on the same sampled configurations. Populations batch quantized_bits(alpha=1)
and quantized_relu only, so this mode samples from that part of the deployable menu.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import torch  # noqa: E402

from hqrun.search.objectives import ForgivingFactor  # noqa: E402
from hqrun.search.space import build_space  # noqa: E402
from hqrun.search.trial import Split, TrialData, TrialSettings, run_trial, train_model  # noqa: E402


def synthetic(n: int, seed: int) -> Split:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(5, 16, generator=torch.Generator().manual_seed(99)) * 0.8
    y = torch.randint(0, 5, (n,), generator=g)
    return Split(centers[y] + torch.randn(n, 16, generator=g), y)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--train", type=int, default=64000)
    ap.add_argument("--val", type=int, default=16000)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--patience", type=int, default=None,
                    help="early stopping on val loss (default: AutoQKeras's min(20, epochs//5))")
    ap.add_argument("--toy", action="store_true", help="toy backend instead of hqrun's jet_dnn")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--population", type=int, nargs="+", default=None,
                    help="population sizes to measure (e.g. 1 4 16 64) instead of the Ray comparison")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.population:
        return population_mode(args)

    if args.toy:
        from hqrun.search.toy import ToyBackend

        backend = ToyBackend(hidden=(64, 32, 32))
    else:
        from hqrun.search.backend import HqrunBackend

        backend = HqrunBackend({"name": "jet_dnn"})
    data = TrialData(synthetic(args.train, 1), synthetic(args.val, 2))
    space = build_space({}, backend.describe())            # AutoQKeras's default menu
    ref_model = backend.build({"name": "float"}, {})
    train_model(ref_model, data, 1, args.batch, 1e-3, args.seed)
    ref_cost = backend.reference_cost(ref_model).totals["energy"]
    state = {k: v.clone() for k, v in ref_model.state_dict().items()}
    patience = min(20, args.epochs // 5) if args.patience is None else args.patience
    settings = TrialSettings(args.epochs, args.batch, 1e-3, "energy", ForgivingFactor(), ref_cost,
                             threads=1, seed=args.seed, patience=patience)
    rng = random.Random(args.seed)
    configs = [{c.key: rng.choice(c.options) for c in space.choices} for _ in range(args.trials)]

    # warm-up (first-call costs of torch and the quantizers, paid once per worker process too)
    run_trial(configs[0], space, backend, TrialData(synthetic(2048, 3), synthetic(512, 4)),
              state, TrialSettings(1, args.batch, 1e-3, "energy", ForgivingFactor(), ref_cost),
              lambda m: None)
    alone, epochs_run = [], []
    for cfg in configs:
        t0 = time.perf_counter()
        last = run_trial(cfg, space, backend, data, state, settings, lambda m: None)
        alone.append(time.perf_counter() - t0)
        epochs_run.append(last["epoch"])
    mean_alone = sum(alone) / len(alone)
    samples = args.train * sum(epochs_run) / len(epochs_run)
    print(f"model: {'toy' if args.toy else 'jet_dnn'} 16-64-32-32-5, {args.train} train / "
          f"{args.val} val rows, batch {args.batch}, up to {args.epochs} epochs/trial "
          f"(early stopping patience {patience}; mean {sum(epochs_run) / len(epochs_run):.1f} "
          f"epochs run), 1 thread, AutoQKeras's default menu")
    print(f"trial alone : {mean_alone:.3f} s/trial (min {min(alone):.3f}, max {max(alone):.3f}) "
          f"= {3600 / mean_alone:,.0f} trials/hour/core, {samples / mean_alone:,.0f} train samples/s")
    if args.no_ray:
        return 0

    import ray

    from hqrun.raystart import start_ray
    from hqrun.search.journal import Journal
    from hqrun.search.runner import TrialContext, _run_tuner

    start_ray(num_cpus=1)
    from hqrun.search.config import parse_search_config

    cfg = parse_search_config({"objective": "forgiving", "epochs": args.epochs, "retries": 0,
                               "ray": {"cpus_per_trial": 1}})
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal(Path(tmp) / "trials.jsonl")
        ctx = TrialContext(space, backend, data, state, settings, 0)
        # warm the worker (imports) with one short trial so the timed run measures steady state
        short = TrialContext(space, backend, TrialData(synthetic(2048, 3), synthetic(512, 4)),
                             state, TrialSettings(1, args.batch, 1e-3, "energy", ForgivingFactor(),
                                                  ref_cost), 0)
        _run_tuner(short, cfg, Journal(Path(tmp) / "warm.jsonl"), Path(tmp), None, 1, "random",
                   [], None, lambda r: None, 0, points=[configs[0]])
        t0 = time.perf_counter()
        _run_tuner(ctx, cfg, journal, Path(tmp), None, len(configs), "random", [], None,
                   lambda r: None, 0, points=configs)
        wall = time.perf_counter() - t0
        recs = journal.trials()
    ray.shutdown()
    body = sum(r["time"] for r in recs if r.get("time")) / max(len(recs), 1)
    per_trial = wall / len(configs)
    done = sorted(r["finished_at"] for r in recs)
    steady = (done[-1] - done[0]) / (len(done) - 1) if len(done) > 1 else per_trial
    print(f"through Ray : {per_trial:.3f} s/trial wall incl. Tuner start/stop "
          f"({3600 / per_trial:,.0f} trials/hour/core); steady state {steady:.3f} s/trial "
          f"between finishes; trial body inside Ray {body:.3f} s")
    print(f"Ray overhead: {100 * (steady - body) / body:+.1f} % steady state, "
          f"{100 * (per_trial - body) / body:+.1f} % incl. Tuner start/stop for {len(recs)} trials "
          f"(vs the trial body timed inside the same Ray run; alone-loop comparison "
          f"{100 * (per_trial - mean_alone) / mean_alone:+.1f} %, noisy on a shared machine)")
    return 0


#: The part of the deployable menu that population training batches (spec -> bits).
POPULATION_MENU = {
    "kernel": {"quantized_bits(2,1,1,alpha=1.0)": 2, "quantized_bits(4,0,1,alpha=1)": 4,
               "quantized_bits(6,0,1,alpha=1)": 6, "quantized_bits(8,0,1,alpha=1)": 8},
    "bias": {"quantized_bits(4,0,1,alpha=1)": 4, "quantized_bits(8,3,1,alpha=1)": 8},
    "activation": {"quantized_relu(2,0)": 2, "quantized_relu(2,1)": 2, "quantized_relu(3,1)": 3,
                   "quantized_relu(4,2)": 4, "quantized_relu(6,2)": 6, "quantized_relu(8,2)": 8,
                   "quantized_relu(8,4)": 8, "quantized_relu(16,8)": 16},
}


def population_mode(args) -> int:
    """Trial-epochs/hour/core: lone trials (lean, Lightning) vs populations of each size."""
    import dataclasses

    from hqrun.search.backend import HqrunBackend
    from hqrun.search.population_trials import run_population_trials

    backend = HqrunBackend({"name": "jet_dnn"})
    data = TrialData(synthetic(args.train, 1), synthetic(args.val, 2))
    space = build_space({"menu": POPULATION_MENU}, backend.describe())
    ref_model = backend.build({"name": "float"}, {})
    train_model(ref_model, data, 1, args.batch, 1e-3, args.seed)
    ref_cost = backend.reference_cost(ref_model).totals["energy"]
    state = {k: v.clone() for k, v in ref_model.state_dict().items()}
    patience = min(20, args.epochs // 5) if args.patience is None else args.patience
    settings = TrialSettings(args.epochs, args.batch, 1e-3, "energy", ForgivingFactor(), ref_cost,
                             threads=1, seed=args.seed, patience=patience)
    rng = random.Random(args.seed)
    n = max(max(args.population), args.trials)
    configs = [{c.key: rng.choice(c.options) for c in space.choices} for _ in range(n)]
    small = TrialData(synthetic(2048, 3), synthetic(512, 4))
    warm = dataclasses.replace(settings, epochs=1)
    for trainer in ("lean", "lightning"):   # first-call costs out of the timings
        run_trial(configs[0], space, backend, small, state, dataclasses.replace(warm, trainer=trainer),
                  lambda m: None)
    run_population_trials(configs[:2], space, backend, small, state, warm, [lambda m: None] * 2)

    def lone(trainer: str) -> tuple[float, int]:
        s = dataclasses.replace(settings, trainer=trainer)
        t0, epochs = time.perf_counter(), 0
        for cfg in configs[: args.trials]:
            epochs += run_trial(cfg, space, backend, data, state, s, lambda m: None)["epoch"]
        return time.perf_counter() - t0, epochs

    def population(k: int) -> tuple[float, int]:
        t0, epochs = time.perf_counter(), 0
        for start in range(0, (max(args.trials, k) // k) * k, k):
            for last in run_population_trials(configs[start:start + k], space, backend, data, state,
                                              settings, [lambda m: None] * k):
                epochs += last["epoch"] if isinstance(last, dict) else 0
        return time.perf_counter() - t0, epochs

    rows = [("lone, lean loop", lone("lean")), ("lone, Lightning", lone("lightning"))]
    rows += [(f"population K={k}", population(k)) for k in args.population]
    print(f"jet_dnn 16-64-32-32-5, {args.train} train / {args.val} val rows, batch {args.batch}, up to "
          f"{args.epochs} epochs/trial (patience {patience}), 1 thread, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; menu: quantized_bits(alpha=1) + quantized_relu "
          "part of the deployable space")
    base = rows[1][1][1] / rows[1][1][0]
    for name, (wall, epochs) in rows:
        rate = epochs / wall
        print(f"{name:20s} {epochs:5d} trial-epochs in {wall:7.1f} s = {3600 * rate:>10,.0f} "
              f"trial-epochs/hour/core ({rate / base:.2f}x lone Lightning)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
