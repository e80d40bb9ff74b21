"""Run a search on Ray Tune: random, Bayesian (Optuna TPE), ASHA, or AutoQKeras's blocks.

Ray is an execution detail: the space, the objective and the block schedule are plain Python
(``space``, ``objectives``, ``blocks``) and the trial is :func:`hqrun.search.trial.run_trial`.
This module only wires them to Ray Tune and keeps the run directory's journal, which is the
source of truth for resume: a rerun on the same directory counts the trials already journaled
and asks Ray only for the rest (Optuna is warm-started with the finished trials' scores).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from hqrun import atomic
from hqrun.errors import SearchError, StorageError
from hqrun.search.blocks import Block, schedule_blocks
from hqrun.search.config import ALGORITHMS, OBJECTIVES
from hqrun.search.journal import Journal, scored_trials
from hqrun.search.objectives import cost_of, forgiving_from_config, score_rule
from hqrun.search.progress import TrialProgress
from hqrun.search.space import SearchSpace, build_space
from hqrun.search.trial import (Backend, TrialData, TrialSettings, float_plan,
                                run_trial, train_model)

FINISHED = ("ok", "stopped", "failed")


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def _plain(cfg: Any) -> Any:
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(cfg):
            return OmegaConf.to_container(cfg, resolve=True)
        if hasattr(cfg, "__dataclass_fields__"):
            return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return cfg


@dataclass
class Reference:
    """The float reference model, trained once per search and cached in the run dir."""

    state: dict[str, torch.Tensor]
    accuracy: float
    cost: dict[str, float]
    layer_costs: dict[str, dict[str, float]]


@dataclass
class SearchOutcome:
    run_dir: Path
    records: list[dict]
    reference: Reference
    reference_cost: float          # stressed, in the goal's unit
    space: SearchSpace
    frozen: dict = field(default_factory=dict)
    final_block: int | None = None   # blocks: the winner comes from the last block searched


# --------------------------------------------------------------------------- validation


def check_config(cfg: Any) -> None:
    """Refuse bad settings before any work (the schema only checks types)."""
    algo = _get(cfg, "algorithm")
    if algo not in ALGORITHMS:
        raise SearchError(f"search.algorithm={algo!r}; use one of {', '.join(ALGORITHMS)}.")
    obj = _get(cfg, "objective")
    if obj not in OBJECTIVES:
        raise SearchError(f"search.objective={obj!r}; use one of {', '.join(OBJECTIVES)}.")
    for key in ("max_trials", "epochs", "batch_size"):
        if int(_get(cfg, key)) < 1:
            raise SearchError(f"search.{key}={_get(cfg, key)} must be >= 1.")
    if algo == "blocks" and _get(_get(cfg, "blocks"), "search") not in ("random", "bayesian"):
        raise SearchError("search.blocks.search must be random or bayesian.")
    if _get(cfg, "trainer", "lean") not in ("lean", "lightning"):
        raise SearchError(f"search.trainer={_get(cfg, 'trainer')!r}; use lean or lightning.")
    if _get(cfg, "retrain") not in ("winner", "front", "none"):
        raise SearchError(f"search.retrain={_get(cfg, 'retrain')!r}; use winner, front or none.")
    forgiving_from_config(_get(cfg, "goal"))
    cap = _get(_get(cfg, "goal"), "max_cost")
    if obj == "accuracy" and cap is None:
        raise SearchError("search.objective=accuracy ranks trials by accuracy alone, so it needs "
                          "a cost cap: set search.goal.max_cost=<cap in the goal's unit> (or "
                          "study.max_cost.<goal>), or use search.objective=forgiving.")
    if cap is not None and algo not in ("random", "asha", "evolution"):
        raise SearchError(f"search.goal.max_cost={cap} works with search.algorithm=random, asha "
                          f"or evolution (configurations are drawn under the cap before "
                          f"training), not with {algo}. Switch the algorithm or set "
                          "search.goal.max_cost=null.")
    if algo == "evolution":
        ecfg = _get(cfg, "evolution")
        for key in ("population", "tournament", "batch"):
            if int(_get(ecfg, key)) < 1:
                raise SearchError(f"search.evolution.{key}={_get(ecfg, key)} must be >= 1.")


def patience_of(cfg: Any) -> int:
    """search.patience, or AutoQKeras's default ``min(20, epochs // 5)`` when null."""
    p = _get(cfg, "patience")
    return min(20, int(_get(cfg, "epochs")) // 5) if p is None else int(p)


def fingerprint(cfg: Any) -> str:
    """What makes two runs the same search (budget and Ray settings may change on resume)."""
    plain = _plain(cfg)
    keep = {k: plain.get(k) for k in ("algorithm", "objective", "epochs", "batch_size", "patience", "trainer",
                                       "learning_rate", "train_samples", "goal", "space", "blocks")}
    if plain.get("algorithm") == "evolution":
        keep["evolution"] = plain.get("evolution")
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_resume(run_dir: Path, cfg: Any) -> bool:
    """Whether ``run_dir`` already holds this search (True: resume it); reads, never writes.

    Raises :class:`SearchError` when the directory holds a search with other settings, or a
    ``search.json`` that cannot be read (one paragraph, before any file is written).
    """
    header = Path(run_dir) / "search.json"
    if not header.exists():
        return False
    try:
        old = json.loads(header.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        old = err
    if not isinstance(old, dict) or not isinstance(old.get("fingerprint"), str):
        why = (f"{type(old).__name__}: {old}" if isinstance(old, Exception)
               else f"valid JSON but not a record with a fingerprint")
        raise SearchError(
            f"{header} is unreadable ({why}); it records which search this directory holds, so "
            "the search cannot be resumed safely. Restore search.json from a backup, or start "
            "the search in a new directory with search.run_dir=<dir> (or hydra.run.dir=<dir>).")
    if old["fingerprint"] != fingerprint(cfg):
        raise SearchError(
            f"the run dir {run_dir} holds a different search (its search.json was written "
            "with other search settings). Resume it with the same search options, or pass a "
            "new directory with search.run_dir=<dir> (or hydra.run.dir=<dir>).")
    return True


def _check_run_dir(run_dir: Path, cfg: Any) -> None:
    if not check_resume(run_dir, cfg):
        atomic.write_json(run_dir / "search.json", {"fingerprint": fingerprint(cfg),
                                                    "config": _plain(cfg)}, default=str)


# --------------------------------------------------------------------------- reference


def train_reference(backend: Backend, data: TrialData, cfg: Any, run_dir: Path,
                    seed: int) -> Reference:
    """Train the float model once (cached as reference.pt + reference.json)."""
    pt, js = run_dir / "reference.pt", run_dir / "reference.json"
    model = backend.build(float_plan(), {})
    if pt.exists() and js.exists():
        return _load_reference(pt, js)
    torch.manual_seed(seed)
    model = backend.build(float_plan(), {})
    acc = train_model(model, data, int(_get(cfg, "reference_epochs")), int(_get(cfg, "batch_size")),
                      float(_get(cfg, "learning_rate")), seed)
    info = backend.reference_cost(model)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    atomic.torch_save(state, pt)
    atomic.write_json(js, {"accuracy": acc, "cost": info.totals, "layer_costs": info.layers})
    return Reference(state, acc, dict(info.totals), dict(info.layers))


def _load_reference(pt: Path, js: Path) -> Reference:
    """The cached float reference, read as data; a damaged cache is one paragraph."""
    from hqrun.errors import ModelFileError
    from hqrun.modelfile import load_model_file

    fix = (f"Delete {pt.name} and {js.name} in {pt.parent} to train the float reference again, "
           "then rerun the same command (finished trials are kept).")
    try:
        state = load_model_file(pt, "the search's cached float reference", sidecar=False,
                                fix=fix).state
    except ModelFileError as err:
        raise SearchError(str(err)) from None
    try:
        meta = json.loads(js.read_text(encoding="utf-8"))
        reference = Reference(state, float(meta["accuracy"]), dict(meta["cost"]),
                              dict(meta["layer_costs"]))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        raise SearchError(f"{js} is unreadable ({type(err).__name__}: {err}). {fix}") from None
    return reference


# --------------------------------------------------------------------------- Ray plumbing


def init_ray(cfg: Any) -> None:
    """Start (or join) Ray quietly, on loopback only (:mod:`hqrun.raystart`); reuse a session
    that is already up (tests, notebooks)."""
    from hqrun.raystart import start_ray

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "100")
    rcfg = _get(cfg, "ray")
    address = _get(rcfg, "address")
    try:
        start_ray(address, _get(rcfg, "num_cpus"))
    except Exception as err:  # noqa: BLE001 - connection errors come in many types
        where = f"the Ray cluster at {address!r}" if address else "a local Ray"
        raise SearchError(f"could not start {where}: {err}. For a cluster run `ray start "
                          "--head` on the head node and pass search.ray.address=<ip>:6379; "
                          "leave search.ray.address=null to run locally.") from None


@dataclass
class TrialContext:
    """Everything a trial process needs; Ray stores it once in its object store."""

    space: SearchSpace
    backend: Backend
    data: TrialData
    reference_state: dict | None
    settings: TrialSettings
    retries: int = 0


def _trainable(config: dict, ctx: TrialContext) -> None:
    """Ray function trainable: run the trial, retrying Python errors inside the same actor.

    An exception raised out of a trainable makes Ray tear the actor down and start a new
    process (seconds of imports); a failure is instead reported as a final result with
    ``failed: 1`` and NaN metrics, so the worker is reused and the journal records why.
    A trial that already reported epochs is not retried (the scheduler has seen them).
    Crashes of the process itself still go through Ray's FailureConfig (``search.retries``).
    """
    from ray import tune

    for attempt in range(ctx.retries + 1):
        reported: list[dict] = []

        def report(metrics: dict) -> None:
            reported.append(metrics)
            tune.report(metrics)

        try:
            run_trial(config, ctx.space, ctx.backend, ctx.data, ctx.reference_state,
                      ctx.settings, report)
            return
        except Exception as err:  # noqa: BLE001 - any trial error is recorded, not fatal
            if reported or attempt == ctx.retries:
                nan = float("nan")
                tune.report({"failed": 1, "error": f"{type(err).__name__}: {err}"[:500],
                             "accuracy": nan, "cost": nan, "score": nan,
                             "epoch": len(reported), "attempts": attempt + 1})
                return


class _StorageAbort:
    """The first disk-full/read-only error the journal hit during a Tune run.

    Ray Tune catches exceptions raised in callbacks, logs a traceback and goes on with the next
    trial, whose result could not be recorded either. So the callback records the error here
    instead, a Tune stopper ends the run, and :func:`_run_tuner` raises it once afterwards.
    """

    def __init__(self) -> None:
        self.error: StorageError | None = None

    def stopper(self):
        from ray.tune.stopper import Stopper

        abort = self

        class StopOnStorageError(Stopper):
            def __call__(self, trial_id: str, result: dict) -> bool:
                return abort.error is not None

            def stop_all(self) -> bool:
                return abort.error is not None

        return StopOnStorageError()


def _journal_callback(journal: Journal, space: SearchSpace, block: int | None, epochs: int,
                      session: str, progress: Callable[[dict], None],
                      abort: _StorageAbort | None = None):
    from ray.tune import Callback

    class JournalCallback(Callback):
        """Writes each finished trial to the journal as soon as Ray reports it."""

        def _record(self, trial, status: str, error: str | None = None) -> None:
            res = dict(trial.last_result or {})
            config = {k: trial.config[k] for k in space.keys if k in trial.config}
            if res.get("failed"):
                status, error = "failed", res.get("error")
            elif status == "ok" and int(res.get("epoch", 0)) < epochs and not res.get("early_stopped"):
                status = "stopped"
            rec = {
                "event": "trial", "trial_id": f"{session}-{trial.trial_id}", "block": block,
                "status": status, "config": config, "plan": space.plan(config),
                "widths": space.widths(config),
                "accuracy": _num(res.get("accuracy")), "cost": _num(res.get("cost")),
                "score": _num(res.get("score")), "epochs": res.get("epoch", 0),
                "best_epoch": res.get("best_epoch"),
                "time": res.get("trial_time"), "error": error,
                "costs": {k[5:]: v for k, v in res.items() if k.startswith("cost_")},
                "finished_at": time.time(),
            }
            try:
                journal.append(rec)
            except StorageError as err:   # disk full: stop the run, report it once
                if abort is None:
                    raise
                abort.error = abort.error or err
                return
            progress(rec)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._record(trial, "ok")

        def on_trial_error(self, iteration, trials, trial, **info):
            err = "trial raised (see Ray's error file)"
            try:
                err = _error_line(str(trial.get_error())) or err
            except Exception:  # noqa: BLE001
                pass
            self._record(trial, "failed", err)

    return JournalCallback()


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _error_line(text: str) -> str | None:
    """The last ``SomeError: message`` line of a traceback text (what a user needs to read)."""
    import re

    hits = [ln.strip() for ln in text.splitlines()
            if re.match(r"^\s*[\w.]*(Error|Exception|Failed|Interrupt)\b.*:", ln)]
    return hits[-1][:500] if hits else None


def _run_tuner(ctx: TrialContext, cfg: Any, journal: Journal, run_dir: Path, block: int | None,
               num_samples: int, searcher: str, previous: list[dict], scheduler: str | None,
               progress: Callable[[dict], None], seed: int,
               points: list[dict] | None = None) -> None:
    """One Ray Tune run of ``num_samples`` trials (``points``: configs to run first)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")   # hqrun prints its own progress line
    from ray import tune
    from ray.tune import FailureConfig, RunConfig, TuneConfig

    space = ctx.space
    param_space = {c.key: tune.choice(c.options) for c in space.choices}
    multi = _get(cfg, "objective") == "pareto"
    if searcher == "bayesian":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)

        bcfg = _get(cfg, "bayesian")
        ok = [r for r in previous if r["status"] in ("ok", "stopped") and r.get("score") is not None]
        metric, mode = (["accuracy", "cost"], ["max", "min"]) if multi else ("score", "max")
        rewards = [[r["accuracy"], r["cost"]] if multi else r["score"] for r in ok]
        sampler = optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=int(_get(bcfg, "n_startup_trials", 5)))
        search_alg = OptunaSearch(metric=metric, mode=mode, sampler=sampler,
                                  points_to_evaluate=[dict(r["config"]) for r in ok] or None,
                                  evaluated_rewards=rewards or None)
    else:
        from ray.tune.search.basic_variant import BasicVariantGenerator

        search_alg = BasicVariantGenerator(random_state=seed, points_to_evaluate=points)
    sched = None
    if scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        acfg = _get(cfg, "asha")
        sched = ASHAScheduler(time_attr="training_iteration", metric="score", mode="max",
                              max_t=int(_get(cfg, "epochs")),
                              grace_period=int(_get(acfg, "grace_period", 1)),
                              reduction_factor=int(_get(acfg, "reduction_factor", 3)))
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, ctx=ctx),
        {"cpu": int(_get(_get(cfg, "ray"), "cpus_per_trial", 1))})
    storage = run_dir / "ray"
    storage.mkdir(parents=True, exist_ok=True)
    part = f"part_{len(list(storage.iterdir())):03d}"
    session = f"{part}" if block is None else f"b{block}-{part}"
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    abort = _StorageAbort()
    quiet = _StorageErrorFilter()
    for name in _RAY_STORAGE_LOGGERS:
        logging.getLogger(name).addFilter(quiet)
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=TuneConfig(num_samples=num_samples, search_alg=search_alg, scheduler=sched,
                               reuse_actors=True,
                               trial_dirname_creator=lambda t: t.trial_id),
        run_config=RunConfig(
            name=part, storage_path=str(storage.resolve()), verbose=0,
            failure_config=FailureConfig(max_failures=int(_get(cfg, "retries", 0))),
            callbacks=[_journal_callback(journal, space, block, int(_get(cfg, "epochs")),
                                         session, progress, abort)],
            stop=abort.stopper(),
        ),
    )
    try:
        tuner.fit()
    finally:
        for name in _RAY_STORAGE_LOGGERS:
            logging.getLogger(name).removeFilter(quiet)
    if abort.error is not None:
        raise abort.error


#: Ray Tune loggers that print a traceback when Ray's own storage (run_dir/ray) is full.
_RAY_STORAGE_LOGGERS = ("ray.tune.execution.experiment_state", "ray.train._internal.syncer",
                        "ray.tune.execution.tune_controller")


class _StorageErrorFilter(logging.Filter):
    """Drops Ray Tune's tracebacks for a full disk or read-only directory (while it copies its
    own experiment state, which hqrun does not read: the journal is the record). hqrun's journal
    and artefact writes hit the same condition and report it once, as one paragraph."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Some of these records carry the error as exc_info, others format the traceback into
        # the message from inside the except block (where sys.exc_info() still holds it).
        exc = record.exc_info[1] if record.exc_info else sys.exc_info()[1]
        return not (exc is not None
                    and (isinstance(exc, StorageError) or atomic.is_storage_error(exc)))


# --------------------------------------------------------------------------- the search


#: Progress of the trials (a bar on a terminal, a few lines in a log): hqrun/search/progress.py.
Progress = TrialProgress


def run_search(cfg: Any, backend: Backend, data: TrialData, run_dir: str | os.PathLike,
               seed: int = 0) -> SearchOutcome:
    """Validate, train/load the reference, run (or resume) the trials; return the journal."""
    check_config(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    layers = backend.describe()
    space = build_space(_get(cfg, "space"), layers)     # every space error before any trial
    algo = _get(cfg, "algorithm")
    bcfg = _get(cfg, "blocks")
    if algo == "blocks":    # regexes checked now; costs need the reference
        searched = sorted({t[0] for c in space.choices for t in c.targets})
        schedule_blocks(list(_get(bcfg, "patterns") or []), searched, {}, 1.0, 1,
                        _get(bcfg, "schedule", "sequential"))
    _check_run_dir(run_dir, cfg)
    journal = Journal(run_dir / "trials.jsonl")

    goal = _get(_get(cfg, "goal"), "type")
    ff = score_rule(str(_get(cfg, "objective")), _get(cfg, "goal"))
    threads = int(_get(_get(cfg, "ray"), "cpus_per_trial", 1))
    torch.set_num_threads(threads)
    reference = train_reference(backend, data, cfg, run_dir, seed)
    ref_cost = ff.reference(cost_of(reference.cost, goal))
    settings = TrialSettings(int(_get(cfg, "epochs")), int(_get(cfg, "batch_size")),
                             float(_get(cfg, "learning_rate")), goal, ff, ref_cost / ff.stress,
                             threads, seed, patience_of(cfg), str(_get(cfg, "trainer", "lean")))
    init_ray(cfg)
    max_trials = int(_get(cfg, "max_trials"))
    searcher = "bayesian" if algo == "bayesian" else "random"
    frozen: dict = {}
    final_block = None
    if algo == "evolution":
        _run_evolution(cfg, space, backend, data, reference, settings, journal, run_dir, goal,
                       seed)
    elif algo != "blocks":
        done = [r for r in journal.trials() if r["status"] in FINISHED]
        progress = Progress(max_trials, bool(_get(cfg, "progress", True)), done)
        remaining = max_trials - len(done)
        points = None
        cap = _get(_get(cfg, "goal"), "max_cost")
        if remaining > 0 and cap is not None:
            points = _capped_points(space, backend, goal, float(cap), remaining, seed + len(done),
                                    [r["config"] for r in journal.trials()],
                                    bool(_get(cfg, "progress", True)))
            remaining = len(points)
        if remaining > 0:
            ctx = TrialContext(space, backend, data, reference.state, settings,
                               int(_get(cfg, "retries", 0)))
            _run_tuner(ctx, cfg, journal, run_dir, None, remaining, searcher, done,
                       "asha" if algo == "asha" else None, progress, seed + len(done), points)
        progress.close()
    else:
        frozen, final_block = _run_blocks(cfg, space, backend, data, reference, settings,
                                          journal, run_dir, ref_cost, goal, seed)
    return SearchOutcome(run_dir, journal.trials(), reference, ref_cost, space, frozen,
                         final_block)


def _capped_points(space: SearchSpace, backend: Backend, goal: str, cap: float, n: int, seed: int,
                   tried: list[dict], verbose: bool) -> list[dict]:
    """``n`` untried configurations within the cost cap (fewer when the cap leaves fewer)."""
    from hqrun.search.costcap import draw_under_cap

    try:
        drawn = draw_under_cap(space, backend, goal, cap, n, seed, exclude=tried)
    except SearchError:
        if tried:       # a resumed search whose cap admits no configuration it has not run
            print(f"[search] no untried configuration left under max_cost={cap:g} {goal}")
            return []
        raise
    if verbose or len(drawn.configs) < n:
        print(f"[search] {len(drawn.configs)} of {n} trials drawn under max_cost={cap:g} {goal} "
              f"({drawn.draws} configurations priced in {drawn.seconds:.0f} s, cheapest "
              f"{drawn.cheapest:g})")
    return drawn.configs


def issue_order(record: Mapping[str, Any]) -> tuple:
    """Sort key: the order trials were handed to Ray (Tuner run, then Ray's trial index).

    The journal is in finishing order, which depends on timing when trials run in parallel;
    breeding from issue order makes an evolution search reproducible from its seed.
    """
    session, _, ray_id = str(record.get("trial_id", "")).rpartition("-")
    index = ray_id.rsplit("_", 1)[-1]
    return (session, int(index) if index.isdigit() else -1, ray_id)


def _run_evolution(cfg: Any, space: SearchSpace, backend: Backend, data: TrialData,
                   reference: Reference, settings: TrialSettings, journal: Journal, run_dir: Path,
                   goal: str, seed: int) -> None:
    """Regularized evolution: a random population, then batches of mutated tournament winners
    (hqrun/search/evolution.py), each batch one Ray Tune run; resumable from the journal."""
    import random

    from hqrun.search.costcap import config_key, price
    from hqrun.search.evolution import children, random_configs

    ecfg = _get(cfg, "evolution")
    population, tournament = int(_get(ecfg, "population")), int(_get(ecfg, "tournament"))
    batch, max_trials = int(_get(ecfg, "batch")), int(_get(cfg, "max_trials"))
    cap = _get(_get(cfg, "goal"), "max_cost")
    verbose = bool(_get(cfg, "progress", True))
    accept = None if cap is None else (lambda c: price(space, backend, c, goal) <= float(cap))
    done = [r for r in journal.trials() if r["status"] in FINISHED]
    progress = Progress(max_trials, verbose, done)
    ctx = TrialContext(space, backend, data, reference.state, settings,
                       int(_get(cfg, "retries", 0)))
    while len(done) < max_trials:
        records = sorted(journal.trials(), key=issue_order)
        tried = {config_key(r["config"]) for r in records}
        rng = random.Random(seed + len(done))
        want = max_trials - len(done)
        if len(done) < population:
            n = min(want, population - len(done))
            points = (_capped_points(space, backend, goal, float(cap), n, seed + len(done),
                                     [r["config"] for r in records], verbose)
                      if cap is not None else random_configs(space, n, rng, tried))
        else:
            points = children(space, records, min(want, batch), rng, population, tournament,
                              tried, accept)
        if not points:
            print(f"[search] evolution: no untried configuration left to breed after "
                  f"{len(done)} trials")
            break
        _run_tuner(ctx, cfg, journal, run_dir, None, len(points), "random", done, None,
                   progress, seed + len(done), points)
        before, done = len(done), [r for r in journal.trials() if r["status"] in FINISHED]
        if len(done) == before:
            raise SearchError(f"a round of {len(points)} trials finished none (see {run_dir}/ray "
                              "for Ray's errors); rerun the same command to resume.")
    progress.close()


def _run_blocks(cfg: Any, space: SearchSpace, backend: Backend, data: TrialData,
                reference: Reference, settings: TrialSettings, journal: Journal, run_dir: Path,
                ref_cost: float, goal: str, seed: int) -> tuple[dict, int | None]:
    bcfg = _get(cfg, "blocks")
    searched = [l.name for l in space.layers
                if any(t[0] == l.name for c in space.choices for t in c.targets)]
    layer_costs = {name: cost_of(c, goal) if goal in c else float(c.get("total", 0.0))
                   for name, c in reference.layer_costs.items()}
    blocks = schedule_blocks(list(_get(bcfg, "patterns")), searched, layer_costs, ref_cost,
                             int(_get(cfg, "max_trials")), _get(bcfg, "schedule", "sequential"),
                             int(_get(bcfg, "min_trials", 10)))
    write_schedule(run_dir, blocks)
    done_blocks = journal.blocks_done()
    frozen: dict = {}
    claimed: set[str] = set()
    last = None
    for blk in blocks:
        members = [n for n in blk.layers if n not in claimed]
        claimed.update(members)
        if blk.index in done_blocks:
            frozen.update(_unkey(done_blocks[blk.index]["frozen"]))
            last = blk.index
            continue
        sub = space.restrict(members, frozen)
        if not sub.choices:
            continue
        last = blk.index
        done = [r for r in journal.trials(blk.index) if r["status"] in FINISHED]
        progress = Progress(blk.trials, bool(_get(cfg, "progress", True)), done)
        if _get(cfg, "progress", True):
            print(f"[search] block {blk.index} {blk.pattern!r}: layers {', '.join(members)}, "
                  f"cost {blk.cost:.4g} of {ref_cost:.4g}, {blk.trials} trials")
        remaining = blk.trials - len(done)
        if remaining > 0:
            ctx = TrialContext(sub, backend, data, reference.state, settings,
                               int(_get(cfg, "retries", 0)))
            _run_tuner(ctx, cfg, journal, run_dir, blk.index, remaining,
                       _get(bcfg, "search", "random"), done, None, progress, seed + len(done))
        progress.close()
        best = best_record(journal.trials(blk.index), "forgiving")
        if best is None:
            raise SearchError(f"every trial of block {blk.index} ({blk.pattern!r}) failed; see "
                              f"{run_dir / 'trials.csv'} for the errors.")
        chosen = sub.assignment(best["config"])
        frozen.update(chosen)
        journal.append({"event": "block_done", "block": blk.index, "pattern": blk.pattern,
                        "trial_id": best["trial_id"], "frozen": _key(frozen)})
    return frozen, last


def _key(assign: Mapping) -> dict:
    return {f"{layer}::{slot}": v for (layer, slot), v in assign.items()}


def _unkey(d: Mapping) -> dict:
    return {tuple(k.split("::", 1)): v for k, v in d.items()}


def write_schedule(run_dir: Path, blocks: list[Block]) -> None:
    atomic.write_json(run_dir / "blocks.json",
                      [{"index": b.index, "pattern": b.pattern, "layers": list(b.layers),
                        "cost": b.cost, "trials": b.trials} for b in blocks])


def best_record(records: list[dict], objective: str = "forgiving") -> dict | None:
    """Highest score among completed trials (early-stopped ones only if none completed)."""
    ranked = ranked_records(records, 1)
    return ranked[0] if ranked else None


def plan_key(record: dict) -> str:
    """What makes two trials the same model: their plan and layer widths, as canonical text."""
    return json.dumps([record.get("plan"), record.get("widths") or {}], sort_keys=True, default=str)


def ranked_records(records: list[dict], k: int) -> list[dict]:
    """The ``k`` best-scoring trials with distinct plans, best first: completed trials before
    early-stopped ones (a stopped trial's accuracy is from fewer epochs), then by score."""
    out: list[dict] = []
    seen: set[str] = set()
    for statuses in (("ok",), ("stopped",)):
        group = scored_trials(records, statuses)
        for r in sorted(group, key=lambda r: (r["score"], r["accuracy"], -r["cost"]), reverse=True):
            key = plan_key(r)
            if key not in seen and len(out) < k:
                seen.add(key)
                out.append(r)
    return out
