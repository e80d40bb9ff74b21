"""Run a search on Ray Tune: the plumbing and the journal; algorithms decide what to train.

Ray is an execution detail: the space, the objective and the algorithms are plain Python
(``space``, ``objectives``, :mod:`hqrun.search.algorithms`) and the trial is
:func:`hqrun.search.trial.run_trial`. This module parses the config once into its schema, checks
it, trains (or loads) the float reference, starts Ray on loopback and hands a :class:`SearchRun`
to the chosen algorithm; :meth:`SearchRun.run_trials` is the one way configurations reach Ray,
and the run directory's journal is the source of truth for resume: a rerun on the same directory
counts the trials already journaled and asks Ray only for the rest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from hqrun import atomic
from hqrun.errors import SearchError, StorageError
from hqrun.search.algorithms import SearchAlgorithm, get_algorithm
from hqrun.search.budget_checks import check_budgets
from hqrun.search.config import OBJECTIVES, SearchConfig, check_population, parse_search_config
from hqrun.search.journal import Journal
from hqrun.search.objectives import cost_of, forgiving_from_config, score_rule
from hqrun.search.progress import TrialProgress
from hqrun.search.space import SearchSpace, build_space
from hqrun.search.trial import (Backend, TrialData, TrialSettings, float_plan,
                                run_trial_with_retries, train_model)

FINISHED = ("ok", "stopped", "failed")
#: Key of a population Ray trial's config (its member configurations) and final result (theirs).
POPULATION_KEY = "members"


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


def check_config(cfg: Any) -> SearchConfig:
    """Parse ``cfg`` into :class:`SearchConfig` and refuse bad settings before any work.

    The schema checks types; this checks values, the common ones here and the algorithm's own
    through its :meth:`~hqrun.search.algorithms.SearchAlgorithm.validate`.
    """
    cfg = parse_search_config(cfg)
    algo = get_algorithm(cfg.algorithm)
    if cfg.objective not in OBJECTIVES:
        raise SearchError(f"search.objective={cfg.objective!r}; use one of {', '.join(OBJECTIVES)}.")
    check_population(cfg.population)
    for key in ("max_trials", "epochs", "batch_size"):
        if int(getattr(cfg, key)) < 1:
            raise SearchError(f"search.{key}={getattr(cfg, key)} must be >= 1.")
    if cfg.trainer not in ("lean", "lightning"):
        raise SearchError(f"search.trainer={cfg.trainer!r}; use lean or lightning.")
    if cfg.retrain not in ("winner", "front", "none"):
        raise SearchError(f"search.retrain={cfg.retrain!r}; use winner, front or none.")
    forgiving_from_config(cfg.goal)
    check_budgets(cfg)
    cap = cfg.goal.max_cost
    if cfg.objective == "accuracy" and cap is None:
        raise SearchError("search.objective=accuracy ranks trials by accuracy alone, so it needs "
                          "a cost cap: set search.goal.max_cost=<cap in the goal's unit> (or "
                          "study.max_cost.<goal>), or use search.objective=forgiving.")
    if cap is not None and not algo.supports_cap:
        names = _capable_algorithms()
        capped = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
        raise SearchError(f"search.goal.max_cost={cap} works with search.algorithm={capped} "
                          f"(configurations are drawn under the cap before training), not with "
                          f"{cfg.algorithm}. Switch the algorithm or set search.goal.max_cost=null.")
    algo.validate(cfg)
    return cfg


def _capable_algorithms() -> list[str]:
    from hqrun.search.algorithms import algorithm_names

    return [n for n in algorithm_names() if get_algorithm(n).supports_cap]


def patience_of(cfg: SearchConfig) -> int:
    """search.patience, or AutoQKeras's default ``min(20, epochs // 5)`` when null."""
    return min(20, int(cfg.epochs) // 5) if cfg.patience is None else int(cfg.patience)


def fingerprint(cfg: Any) -> str:
    """What makes two runs the same search (budget and Ray settings may change on resume)."""
    cfg = parse_search_config(cfg)
    plain = cfg.to_plain()
    keep = {k: plain.get(k) for k in ("algorithm", "objective", "epochs", "batch_size", "patience", "trainer",
                                       "learning_rate", "train_samples", "goal", "space", "blocks")}
    keep.update(get_algorithm(cfg.algorithm).fingerprint(cfg))
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
               else "valid JSON but not a record with a fingerprint")
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


def check_resumable(run_dir: Path) -> None:
    """The journal and the cached float reference of a search being resumed can be read.

    Called before a resumed search writes anything, so a damaged record stops it with the
    earlier run's files as they were (unreadable journal *lines* are only warned about, later).
    """
    journal = Path(run_dir) / "trials.jsonl"
    if journal.exists():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Journal(journal).records()
    pt, js = Path(run_dir) / "reference.pt", Path(run_dir) / "reference.json"
    if pt.exists() and js.exists():
        _load_reference(pt, js)


def _check_run_dir(run_dir: Path, cfg: SearchConfig) -> None:
    if not check_resume(run_dir, cfg):
        atomic.write_json(run_dir / "search.json", {"fingerprint": fingerprint(cfg),
                                                    "config": cfg.to_plain()}, default=str)


# --------------------------------------------------------------------------- reference


def train_reference(backend: Backend, data: TrialData, cfg: SearchConfig, run_dir: Path,
                    seed: int) -> Reference:
    """Train the float model once (cached as reference.pt + reference.json)."""
    pt, js = run_dir / "reference.pt", run_dir / "reference.json"
    model = backend.build(float_plan(), {})
    if pt.exists() and js.exists():
        return _load_reference(pt, js)
    torch.manual_seed(seed)
    model = backend.build(float_plan(), {})
    acc = train_model(model, data, int(cfg.reference_epochs), int(cfg.batch_size),
                      float(cfg.learning_rate), seed)
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


def init_ray(cfg: SearchConfig) -> None:
    """Start (or join) Ray quietly, on loopback only (:mod:`hqrun.raystart`); reuse a session
    that is already up (tests, notebooks)."""
    from hqrun.raystart import start_ray

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "100")
    address = cfg.ray.address
    try:
        start_ray(address, cfg.ray.num_cpus)
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
    """Ray function trainable: one configuration, or a population of them (``members``).

    A lone trial reports every epoch (schedulers such as ASHA act on them). Its Python errors
    are retried inside the same actor (:func:`hqrun.search.trial.run_trial_with_retries`): an
    exception raised out of a trainable makes Ray tear the actor down and start a new process
    (seconds of imports), so a failure is instead reported as a final result with ``failed: 1``
    and NaN metrics, the worker is reused and the journal records why. A population
    (:mod:`hqrun.search.population_run`) reports once, at the end, every member's final result
    under ``members``; the journal callback writes one line per member.
    Crashes of the process itself still go through Ray's FailureConfig (``search.retries``).
    """
    from ray import tune

    if POPULATION_KEY in config:
        from hqrun.search.population_run import train_population

        outcomes = train_population(config[POPULATION_KEY], ctx.space, ctx.backend, ctx.data,
                                    ctx.reference_state, ctx.settings, ctx.retries)
        tune.report({POPULATION_KEY: outcomes, "population_size": len(outcomes)})
        return
    last = run_trial_with_retries(config, ctx.space, ctx.backend, ctx.data, ctx.reference_state,
                                  ctx.settings, tune.report, ctx.retries)
    if last.get("failed"):
        tune.report(last)


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


class LostTrials:
    """Trials whose worker process or node went away (``ray stop`` on a node, a killed raylet,
    a machine that left the cluster): not the trial's fault, so they are run again instead of
    being journaled as failed. Only process-level failures reach Tune's ``on_trial_error``
    (:func:`_trainable` reports a trial's own exceptions as a result), and of those the ones
    whose error names a dead or unreachable actor, worker or node count as lost."""

    MARKERS = ("ActorDiedError", "RayActorError", "WorkerCrashedError", "NodeDiedError",
               "ActorUnavailableError", "OwnerDiedError", "actor died", "node has died",
               "node died", "died unexpectedly", "worker died", "node was terminated",
               # a node killed mid-call: "The actor ... is unavailable: ... RpcError ...
               # Connection reset by peer"
               "is unavailable", "temporarily unavailable", "RpcError")

    def __init__(self) -> None:
        self.configs: list[dict] = []

    @classmethod
    def is_lost(cls, error_text: str) -> bool:
        return any(marker in error_text for marker in cls.MARKERS)


#: How many extra Tune rounds re-run lost trials before they are journaled as failed.
LOST_TRIAL_ROUNDS = 3


def _journal_callback(journal: Journal, space: SearchSpace, block: int | None, epochs: int,
                      session: str, progress: Callable[[dict], None],
                      abort: _StorageAbort | None = None, lost: LostTrials | None = None,
                      notes: set[str] | None = None):
    from ray.tune import Callback

    from hqrun.search.journal import member_trial_id
    from hqrun.search.population_searcher import ISSUE_KEY

    notes = set() if notes is None else notes

    class JournalCallback(Callback):
        """Writes each finished trial to the journal as soon as Ray reports it: one line per
        configuration, so a population Ray trial writes one line per member."""

        def _record(self, trial, status: str, error: str | None = None) -> None:
            # trials handed out by a PopulationSearcher carry their issue order (Ray's own
            # trial ids count only trials of its basic variant generator)
            ray_id = (f"{trial.trial_id}_{int(trial.config[ISSUE_KEY]):05d}"
                      if ISSUE_KEY in trial.config else trial.trial_id)
            if POPULATION_KEY not in trial.config:
                self._write(f"{session}-{ray_id}", trial.config, dict(trial.last_result or {}),
                            status, error)
                return
            outcomes = (trial.last_result or {}).get(POPULATION_KEY) if status == "ok" else None
            for k, config in enumerate(trial.config[POPULATION_KEY]):
                outcome = outcomes[k] if isinstance(outcomes, list) and k < len(outcomes) else None
                if outcome is None:
                    outcome = {"failed": 1, "error": error or "the population trial returned no "
                               "result for this configuration"}
                elif outcome.get("fallback"):
                    _say_once(notes, "fallback", _fallback_line(str(outcome["fallback"])))
                self._write(f"{session}-{member_trial_id(ray_id, k)}", config, outcome, status, error)

        def _write(self, trial_id: str, trial_config: dict, res: dict, status: str,
                   error: str | None) -> None:
            config = {k: trial_config[k] for k in space.keys if k in trial_config}
            if res.get("failed"):
                status, error = "failed", res.get("error")
            elif status == "ok" and int(res.get("epoch", 0)) < epochs and not res.get("early_stopped"):
                status = "stopped"
            rec = {
                "event": "trial", "trial_id": trial_id, "block": block,
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
            err, text = "trial raised (see Ray's error file)", ""
            try:
                text = _trial_error_text(trial)
                err = _error_line(text) or _first_line(text) or err
            except Exception:  # noqa: BLE001
                pass
            if lost is not None and LostTrials.is_lost(text):
                members = trial.config.get(POPULATION_KEY) or [trial.config]
                lost.configs.extend({k: c[k] for k in space.keys if k in c} for c in members)
                return        # not journaled: the runner runs it again
            self._record(trial, "failed", err)

    return JournalCallback()


def _fallback_line(reason: str) -> str:
    return ("[search] configurations that cannot be trained in a population train as lone "
            f"trials (first: {reason})")


def _say_once(notes: set[str], key: str, line: str) -> None:
    """Print ``line`` the first time ``key`` comes up in this search."""
    if key not in notes:
        notes.add(key)
        print(line, flush=True)


def _trial_error_text(trial: Any) -> str:
    """What Tune wrote about a trial's failure: its local error file (written when the error
    is handled, before Tune copies it to the run dir's storage), else the stored copy."""
    local = trial.error_file
    if local and Path(local).is_file():
        return Path(local).read_text(encoding="utf-8", errors="replace")
    error = trial.get_error()
    return "" if error is None else str(error)


def _first_line(text: str) -> str | None:
    """The first line of Tune's error file after its "Failure # n" header."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("Failure #")]
    return lines[0][:500] if lines else None


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _error_line(text: str) -> str | None:
    """The last ``SomeError: message`` line of a traceback text (what a user needs to read)."""
    import re

    hits = [ln.strip() for ln in text.splitlines()
            if re.match(r"^\s*[\w.]*(Error|Exception|Failed|Interrupt)\b.*:", ln)]
    return hits[-1][:500] if hits else None


def _run_tuner(ctx: TrialContext, cfg: SearchConfig, journal: Journal, run_dir: Path, block: int | None,
               num_samples: int, searcher: str, previous: list[dict], scheduler: str | None,
               progress: Callable[[dict], None], seed: int,
               points: list[dict] | None = None, lost_rounds: int = LOST_TRIAL_ROUNDS,
               notes: set[str] | None = None) -> None:
    """One Ray Tune run of ``num_samples`` configurations (``points``: configs to run first);
    trials lost with their worker or node run again in up to ``lost_rounds`` further runs.

    With ``search.population`` K > 1 and no scheduler, each Ray trial trains up to K of them as
    one population (:mod:`hqrun.search.population_searcher`, :mod:`hqrun.search.population_run`);
    the journal still gets one line per configuration. ``notes``: one-time log lines already
    printed in this search."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")   # hqrun prints its own progress line
    from ray import tune
    from ray.tune import FailureConfig, RunConfig, TuneConfig

    population = int(cfg.population) if scheduler is None else 1
    notes = set() if notes is None else notes

    space = ctx.space
    param_space = {c.key: tune.choice(c.options) for c in space.choices}
    multi = cfg.objective == "pareto"
    if searcher == "bayesian":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)

        ok = [r for r in previous if r["status"] in ("ok", "stopped") and r.get("score") is not None]
        metric, mode = (["accuracy", "cost"], ["max", "min"]) if multi else ("score", "max")
        rewards = [[r["accuracy"], r["cost"]] if multi else r["score"] for r in ok]
        sampler = optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=int(cfg.bayesian.n_startup_trials))
        # a population asks OptunaSearch itself (no Tune param space): it gets the space here
        search_alg = OptunaSearch(space=OptunaSearch.convert_search_space(param_space)
                                  if population > 1 else None,
                                  metric=metric, mode=mode, sampler=sampler,
                                  points_to_evaluate=[dict(r["config"]) for r in ok] or None,
                                  evaluated_rewards=rewards or None)
    elif population == 1:
        from ray.tune.search.basic_variant import BasicVariantGenerator

        search_alg = BasicVariantGenerator(random_state=seed, points_to_evaluate=points)
    if population > 1:
        from hqrun.search.population_searcher import (PopulationSearcher, RandomMembers,
                                                      SearcherMembers)

        from hqrun.search.population_run import batch_refusal

        tried = [r["config"] for r in previous]
        source = (SearcherMembers(search_alg, tried) if searcher == "bayesian"
                  else RandomMembers(space, seed, points, tried))
        search_alg = PopulationSearcher(
            source, population, num_samples, POPULATION_KEY,
            refusal=lambda config: batch_refusal(config, space, ctx.backend),
            on_refusal=lambda reason: _say_once(notes, "fallback", _fallback_line(reason)))
        param_space = {}    # num_samples stays an upper bound: the searcher says when it is done
    sched = None
    if scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        sched = ASHAScheduler(time_attr="training_iteration", metric="score", mode="max",
                              max_t=int(cfg.epochs), grace_period=int(cfg.asha.grace_period),
                              reduction_factor=int(cfg.asha.reduction_factor))
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, ctx=ctx),
        {"cpu": int(cfg.ray.cpus_per_trial)})
    storage = run_dir / "ray"
    storage.mkdir(parents=True, exist_ok=True)
    part = f"part_{len(list(storage.iterdir())):03d}"
    session = f"{part}" if block is None else f"b{block}-{part}"
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    abort = _StorageAbort()
    lost = LostTrials() if lost_rounds > 0 else None   # the last round journals them as failed
    quiet = _StorageErrorFilter()
    for name in _RAY_STORAGE_LOGGERS:
        logging.getLogger(name).addFilter(quiet)
    controller = logging.getLogger("ray.tune.execution.tune_controller")
    if lost is not None:
        controller.addFilter(_LOST_WORKER_FILTER)
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=TuneConfig(num_samples=num_samples, search_alg=search_alg, scheduler=sched,
                               reuse_actors=True,
                               trial_dirname_creator=lambda t: t.trial_id),
        run_config=RunConfig(
            name=part, storage_path=str(storage.resolve()), verbose=0,
            failure_config=FailureConfig(max_failures=int(cfg.retries)),
            callbacks=[_journal_callback(journal, space, block, int(cfg.epochs),
                                         session, progress, abort, lost, notes)],
            stop=abort.stopper(),
        ),
    )
    try:
        tuner.fit()
    finally:
        for name in _RAY_STORAGE_LOGGERS:
            logging.getLogger(name).removeFilter(quiet)
        controller.removeFilter(_LOST_WORKER_FILTER)
    if abort.error is not None:
        raise abort.error
    if lost is not None and lost.configs:
        print(f"[search] {len(lost.configs)} trial(s) lost with their worker or node; running "
              "them again", flush=True)
        _run_tuner(ctx, cfg, journal, run_dir, block, len(lost.configs), "random", previous,
                   scheduler, progress, seed, list(lost.configs), lost_rounds - 1, notes)


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


class _LostWorkerFilter(logging.Filter):
    """Drops Ray Tune's traceback for a trial whose worker or node died: the runner runs that
    trial again and says so in one line (the last round, which journals it as failed, keeps
    Tune's report)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (exc is not None and LostTrials.is_lost(f"{type(exc).__name__}: {exc}"))


_LOST_WORKER_FILTER = _LostWorkerFilter()


# --------------------------------------------------------------------------- the search


@dataclass
class SearchRun:
    """One search as an algorithm sees it: settings, space, reference, journal, and the one way
    configurations reach Ray (:meth:`run_trials`)."""

    cfg: SearchConfig
    space: SearchSpace
    backend: Backend
    data: TrialData
    reference: Reference
    reference_cost: float          # stressed, in the goal's unit
    settings: TrialSettings
    journal: Journal
    run_dir: Path
    goal: str
    seed: int
    notes: set[str] = field(default_factory=set)   # one-time log lines already printed

    def finished(self, block: int | None = None) -> list[dict]:
        """The journal's finished trials (of one block when given)."""
        trials = self.journal.trials() if block is None else self.journal.trials(block)
        return [r for r in trials if r["status"] in FINISHED]

    def progress(self, total: int, done: list[dict]) -> TrialProgress:
        """A bar on a terminal, a few lines in a log (hqrun/search/progress.py)."""
        return TrialProgress(total, bool(self.cfg.progress), done)

    def capped_points(self, n: int, seed: int, tried: list[dict]) -> list[dict]:
        """``n`` untried configurations within ``search.goal.max_cost``."""
        return _capped_points(self.space, self.backend, self.goal, float(self.cfg.goal.max_cost),
                              n, seed, tried, bool(self.cfg.progress), self.reference.state)

    def run_trials(self, n: int, progress: Callable[[dict], None], *, searcher: str = "random",
                   scheduler: str | None = None, previous: list[dict] | None = None,
                   seed: int | None = None, points: list[dict] | None = None,
                   block: int | None = None, space: SearchSpace | None = None) -> None:
        """Hand ``n`` configurations to Ray Tune (``points`` first; then ``searcher`` samples),
        ``search.population`` of them per Ray trial unless a ``scheduler`` stops trials one by one."""
        ctx = TrialContext(space or self.space, self.backend, self.data, self.reference.state,
                           self.settings, int(self.cfg.retries))
        if int(self.cfg.population) > 1:
            if scheduler is None:
                self.notes.add("population used")
            elif "population ignored" not in self.notes:
                self.notes.add("population ignored")
                print(f"[search] search.population={self.cfg.population} is not used with the "
                      f"{scheduler} scheduler: it stops trials one by one, so each Ray trial "
                      "trains one configuration", flush=True)
        _run_tuner(ctx, self.cfg, self.journal, self.run_dir, block, n, searcher,
                   list(previous or []), scheduler, progress,
                   self.seed if seed is None else seed, points, notes=self.notes)


def run_search(cfg: Any, backend: Backend, data: TrialData, run_dir: str | os.PathLike,
               seed: int = 0) -> SearchOutcome:
    """Validate, train/load the reference, run (or resume) the trials; return the journal."""
    cfg = check_config(cfg)
    algorithm: SearchAlgorithm = get_algorithm(cfg.algorithm)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    space = build_space(cfg.space, backend.describe())   # every space error before any trial
    algorithm.check_space(cfg, space)
    _check_run_dir(run_dir, cfg)
    journal = Journal(run_dir / "trials.jsonl")

    goal = str(cfg.goal.type)
    ff = score_rule(str(cfg.objective), cfg.goal)
    threads = int(cfg.ray.cpus_per_trial)
    torch.set_num_threads(threads)
    reference = train_reference(backend, data, cfg, run_dir, seed)
    ref_cost = ff.reference(cost_of(reference.cost, goal))
    settings = TrialSettings(int(cfg.epochs), int(cfg.batch_size), float(cfg.learning_rate), goal,
                             ff, ref_cost / ff.stress, threads, seed, patience_of(cfg),
                             str(cfg.trainer))
    init_ray(cfg)
    run = SearchRun(cfg, space, backend, data, reference, ref_cost, settings, journal, run_dir,
                    goal, seed)
    frozen, final_block = algorithm.run(run)
    if int(cfg.population) > 1 and not run.notes & {"population used", "population ignored"} \
            and run.finished():
        print(f"[search] search.population={cfg.population} had no effect: search.algorithm="
              f"{cfg.algorithm} trains one model per Ray trial", flush=True)
    return SearchOutcome(run_dir, journal.trials(), reference, ref_cost, space, frozen or {},
                         final_block)


def _capped_points(space: SearchSpace, backend: Backend, goal: str, cap: float, n: int, seed: int,
                   tried: list[dict], verbose: bool, reference_state: Any = None) -> list[dict]:
    """``n`` untried configurations within the cost cap (fewer when the cap leaves fewer), priced
    with the float reference's weights as their trials will be."""
    from hqrun.search.costcap import draw_under_cap

    try:
        drawn = draw_under_cap(space, backend, goal, cap, n, seed, exclude=tried,
                               reference_state=reference_state)
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
