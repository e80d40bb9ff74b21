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

    OMP_NUM_THREADS=1 python bench/search_throughput.py --trials 12 --epochs 10
        --peer-python /path/to/qkeras-venv/bin/python [--population 1 4 16 64]

runs AutoQKeras side by side (issue 19): first AutoQKeras's Bayesian search in the peer's own
Python (bench/peer/autoqkeras_search.py: energy goal, hqrun's deployable menu, N trials x up to E
epochs, early stopping as AutoQKeras, one thread, timed from its own per-trial records), then in
this process hqrun on the same data and budget: (a) lone trials through Lightning
(search.trainer=lightning) of exactly the configurations AutoQKeras trained, (b) population
trials for each K (default 1 4 16 64), configurations drawn from the batchable part of the
deployable menu. One table: trial-epochs/hour/core per tool and mode, and the ratio to AutoQKeras.
``--menu population`` makes AutoQKeras and the lone trials search that batchable part too.
"""

from __future__ import annotations

import argparse
import dataclasses
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The bench's options; with --peer-python the population sizes default to 1 4 16 64."""
    args = build_parser().parse_args(argv)
    if args.peer_python and not args.population:
        args.population = [1, 4, 16, 64]
    if args.population and min(args.population) < 1:
        raise SystemExit("--population sizes must be >= 1")
    return args


def build_parser() -> argparse.ArgumentParser:
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
                    help="population sizes to measure (e.g. 1 4 16 64) instead of the Ray comparison "
                         "(with --peer-python: default 1 4 16 64)")
    ap.add_argument("--peer-python", default=None, metavar="PATH",
                    help="Python with tensorflow-cpu 2.21, tf-keras 2.21, qkeras 0.9.0 and keras-tuner "
                         "1.4.8: run AutoQKeras's search there, side by side")
    ap.add_argument("--menu", choices=("deployable", "population"), default="deployable",
                    help="with --peer-python: the menu AutoQKeras and hqrun's lone trials search: hqrun's "
                         "deployable space (default), or its part that populations batch (every row then "
                         "trains from the same menu)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    if args.peer_python:
        from autoqkeras_peer import PeerError

        try:
            return side_by_side_mode(args)
        except PeerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.population:
        return population_mode(args)

    if args.toy:
        from hqrun.search.toy import ToyBackend

        backend = ToyBackend(hidden=(64, 32, 32))
    else:
        from hqrun.search.backend import HqrunBackend

        backend = HqrunBackend({"name": "jet_dnn"})
    bench = prepare(args, TrialData(synthetic(args.train, 1), synthetic(args.val, 2)), backend)
    data, state, settings, patience = bench.data, bench.state, bench.settings, bench.patience
    ref_cost = settings.reference_cost
    space = build_space({}, backend.describe())            # AutoQKeras's default menu
    configs = sample(space, args.trials, args.seed)

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


@dataclasses.dataclass
class Bench:
    """What every timed mode shares: backend, data, float reference, trial settings."""

    backend: object
    data: TrialData
    state: dict
    settings: TrialSettings
    patience: int


def bench_data(args) -> TrialData:
    return TrialData(synthetic(args.train, 1), synthetic(args.val, 2))


def prepare(args, data: TrialData, backend=None) -> Bench:
    """The model (default: the jet model), the float reference (1 epoch) and the trial settings."""
    if backend is None:
        from hqrun.search.backend import HqrunBackend

        backend = HqrunBackend({"name": "jet_dnn"})
    torch.manual_seed(args.seed)  # the same reference (hence the same trials) in every run
    ref_model = backend.build({"name": "float"}, {})
    train_model(ref_model, data, 1, args.batch, 1e-3, args.seed)
    ref_cost = backend.reference_cost(ref_model).totals["energy"]
    state = {k: v.clone() for k, v in ref_model.state_dict().items()}
    patience = min(20, args.epochs // 5) if args.patience is None else args.patience
    settings = TrialSettings(args.epochs, args.batch, 1e-3, "energy", ForgivingFactor(), ref_cost,
                             threads=1, seed=args.seed, patience=patience)
    return Bench(backend, data, state, settings, patience)


def sample(space, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{c.key: rng.choice(c.options) for c in space.choices} for _ in range(n)]


def warm_up(bench: Bench, spaces_configs, trainers=("lean", "lightning"), population: bool = True) -> None:
    """First-call costs of torch, Lightning and the quantizers, out of the timings."""
    from hqrun.search.population_trials import run_population_trials

    small = TrialData(synthetic(2048, 3), synthetic(512, 4))
    warm = dataclasses.replace(bench.settings, epochs=1)
    for space, configs in spaces_configs:
        for trainer in trainers:
            run_trial(configs[0], space, bench.backend, small, bench.state,
                      dataclasses.replace(warm, trainer=trainer), lambda m: None)
    if population:
        space, configs = spaces_configs[-1]
        run_population_trials(configs[:2], space, bench.backend, small, bench.state, warm, [lambda m: None] * 2)


@dataclasses.dataclass
class Timing:
    trials: int
    epochs: int            # trial-epochs actually run (early stopping included)
    seconds: float         # wall clock
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return 3600 * self.epochs / self.seconds

    @property
    def cpu_rate(self) -> float:
        return 3600 * self.epochs / self.cpu_seconds


def time_lone(bench: Bench, space, configs: list[dict], trainer: str) -> Timing:
    """Trials one after the other, each timed whole (build, weight transfer, cost, training)."""
    settings = dataclasses.replace(bench.settings, trainer=trainer)
    t0, c0, epochs = time.perf_counter(), time.process_time(), 0
    for cfg in configs:
        epochs += run_trial(cfg, space, bench.backend, bench.data, bench.state, settings, lambda m: None)["epoch"]
    return Timing(len(configs), epochs, time.perf_counter() - t0, time.process_time() - c0)


def time_population(bench: Bench, space, configs: list[dict], k: int, n_trials: int) -> Timing:
    """Populations of k, back to back, over the first max(n_trials, k) // k * k configurations."""
    from hqrun.search.population_trials import run_population_trials

    t0, c0, epochs, trials = time.perf_counter(), time.process_time(), 0, 0
    for start in range(0, (max(n_trials, k) // k) * k, k):
        for last in run_population_trials(configs[start:start + k], space, bench.backend, bench.data,
                                          bench.state, bench.settings, [lambda m: None] * k):
            if isinstance(last, dict):   # else the error that failed or refused the member
                epochs += last["epoch"]
                trials += 1
    return Timing(trials, epochs, time.perf_counter() - t0, time.process_time() - c0)


def population_mode(args) -> int:
    """Trial-epochs/hour/core: lone trials (lean, Lightning) vs populations of each size."""
    bench = prepare(args, bench_data(args))
    space = build_space({"menu": POPULATION_MENU}, bench.backend.describe())
    configs = sample(space, max(max(args.population), args.trials), args.seed)
    warm_up(bench, [(space, configs)])
    lone = configs[: args.trials]
    rows = [("lone, lean loop", time_lone(bench, space, lone, "lean")),
            ("lone, Lightning", time_lone(bench, space, lone, "lightning"))]
    rows += [(f"population K={k}", time_population(bench, space, configs, k, args.trials)) for k in args.population]
    print(f"jet_dnn 16-64-32-32-5, {args.train} train / {args.val} val rows, batch {args.batch}, up to "
          f"{args.epochs} epochs/trial (patience {bench.patience}), 1 thread, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; menu: quantized_bits(alpha=1) + quantized_relu "
          "part of the deployable space")
    base = rows[1][1].rate
    for name, t in rows:
        print(f"{name:20s} {t.epochs:5d} trial-epochs in {t.seconds:7.1f} s = {t.rate:>10,.0f} "
              f"trial-epochs/hour/core ({t.rate / base:.2f}x lone Lightning)")
    return 0


def deployable_space_config() -> dict:
    """conf/search/space/deployable.yaml, as shipped with hqrun (search/space=deployable)."""
    from importlib import resources

    import yaml

    text = (resources.files("hqrun.conf") / "search" / "space" / "deployable.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def full_menu(space_cfg: dict) -> dict:
    """The menu a space config searches, kinds it leaves out filled from AutoQKeras's default
    (as build_space does), for the peer."""
    from hqrun.search.space import DEFAULT_MENU

    return {kind: dict(space_cfg["menu"].get(kind, DEFAULT_MENU[kind])) for kind in DEFAULT_MENU}


def side_by_side_mode(args) -> int:
    """AutoQKeras in its own Python, then hqrun (lone Lightning, populations), in one run."""
    from autoqkeras_peer import hqrun_configs, run_autoqkeras, write_peer_inputs

    data = bench_data(args)
    deployable = deployable_space_config()
    searched = deployable if args.menu == "deployable" else {"menu": POPULATION_MENU}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="hqrun-aqk-") as tmp:
        arrays = {"Xt": data.train.x.numpy(), "yt": data.train.y.numpy(),
                  "Xv": data.val.x.numpy(), "yv": data.val.y.numpy()}
        data_file, menu_file = write_peer_inputs(Path(tmp), arrays, full_menu(searched))
        workdir = Path(tmp) / "tuner"
        workdir.mkdir()
        peer = run_autoqkeras(args.peer_python, data_file, menu_file, workdir, args.trials, args.epochs,
                              args.batch, args.seed)
    bench = prepare(args, data)
    space = build_space(searched, bench.backend.describe())
    pop_space = build_space({"menu": POPULATION_MENU}, bench.backend.describe())
    pop_configs = sample(pop_space, max(max(args.population), args.trials), args.seed)
    configs = hqrun_configs(peer, space.keys)
    loads.append(os.getloadavg()[0])
    warm_up(bench, [(space, configs), (pop_space, pop_configs)], trainers=("lightning",))
    rows = [("AutoQKeras (Bayesian, tf-keras)", Timing(len(peer.trials), peer.epochs, peer.seconds, peer.cpu_seconds)),
            ("hqrun lone trials, Lightning", time_lone(bench, space, configs, "lightning"))]
    for k in args.population:
        loads.append(os.getloadavg()[0])
        rows.append((f"hqrun population K={k}", time_population(bench, pop_space, pop_configs, k, args.trials)))
    loads.append(os.getloadavg()[0])
    print_side_by_side(args, bench, peer, rows, loads)
    return 0


def print_side_by_side(args, bench: Bench, peer, rows: list[tuple[str, Timing]], loads: list[float]) -> None:
    base = rows[0][1]
    fit_s = sum(t["fit_seconds"] for t in peer.trials)
    print(f"jet model 16-64-32-32-5, {args.train} train / {args.val} val rows (synthetic), batch {args.batch}, "
          f"up to {args.epochs} epochs/trial, early stopping on val loss with patience {bench.patience} "
          f"(AutoQKeras's min(20, epochs//5)), one thread each, energy goal; AutoQKeras ran first, then "
          f"hqrun, in one run (ratios are from this one run); load average "
          f"{', '.join(f'{x:.1f}' for x in loads)} on {os.cpu_count()} cores")
    menu = ("hqrun's deployable menu" if args.menu == "deployable"
            else "the deployable menu's quantized_bits(alpha=1) + quantized_relu part")
    print(f"AutoQKeras: {len(peer.trials)} Bayesian trials over {menu}, timed from its own "
          f"per-trial records (trial start to end: quantize, QTools, compile, fit; fits alone {fit_s:.1f} s); "
          f"hqrun lone trials replay those {len(peer.trials)} configurations; populations draw from the "
          f"deployable menu's quantized_bits(alpha=1) + quantized_relu part (what populations batch)")
    head = (f"{'tool / mode':34s}{'trials':>7s}{'trial-epochs':>14s}{'seconds':>10s}"
            f"{'t-e/h/core (wall)':>19s}{'(CPU)':>10s}{'x AutoQKeras (wall, CPU)':>27s}")
    print(head)
    print("-" * len(head))
    for name, t in rows:
        ratio = f"{t.rate / base.rate:.2f}, {t.cpu_rate / base.cpu_rate:.2f}"
        print(f"{name:34s}{t.trials:>7d}{t.epochs:>14d}{t.seconds:>10.1f}{t.rate:>19,.0f}{t.cpu_rate:>10,.0f}"
              f"{ratio:>27s}")
    print(f"target (issue 19): search through Lightning >= 5x AutoQKeras. peer versions: {peer.versions}; "
          f"hqrun: python {sys.version.split()[0]}, torch {torch.__version__}; "
          f"measured {time.strftime('%Y-%m-%d %H:%M')}")


if __name__ == "__main__":
    sys.exit(main())
