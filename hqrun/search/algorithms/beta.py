"""The learned-bit-width β sweep (``search.algorithm=beta``): one full training per β.

Why a sweep over β and not over quantizers: with learned bit widths (docs/learned_bits.md) every
weight and activation picks its own width by gradient descent, so the only choice left to a
search is how hard the cost penalty ``β · EBOPs`` pushes. Each trial trains one model with one β
for ``search.epochs`` epochs (the trainer settings of ``search.beta.trainer``), and keeps the
Pareto set of its epochs, validation accuracy × EBOPs (:mod:`hqrun.search.epochfront`), as
*candidates*: each front epoch's weights are saved (``candidates/trial_NNN/epoch_EEEE/model.pt``,
a model file any hqrun command reads) and each candidate becomes one journal line. The journal
lines look like other algorithms' trial records (accuracy, cost, score, plan), so the search's
trials.csv, front, pareto.png and winner are the usual artefacts, and resume counts the β values
already journaled.

Trials run on Ray Tune like the other algorithms' (one Tune trial per β, ``search.ray.*``
resources, storage in ``<run dir>/ray``); each writes its candidates' weights into the run dir
itself, so a multi-node cluster needs the run dir on a shared file system.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from hqrun.errors import SearchError
from hqrun.search.algorithms import SearchAlgorithm, register_algorithm

__all__ = ["BetaSweep", "beta_values", "candidate_records", "train_beta_trial"]

#: Where a trial's candidate weights go, relative to the run dir.
CANDIDATE_DIR = "candidates"


def beta_values(cfg: Any, seed: int) -> list[float]:
    """The β of every trial: ``search.beta.grid`` as given, else ``search.max_trials``
    log-uniform draws in [beta_min, beta_max]. Draw *i* depends on (seed, i) only, so raising
    ``max_trials`` on resume adds trials without changing the ones already run."""
    import numpy as np

    bcfg = cfg.beta
    if bcfg.grid is not None:
        return [float(b) for b in bcfg.grid]
    lo, hi = math.log(float(bcfg.beta_min)), math.log(float(bcfg.beta_max))
    return [float(math.exp(np.random.default_rng([int(seed), i]).uniform(lo, hi)))
            for i in range(int(cfg.max_trials))]


def trial_name(index: int) -> str:
    return f"beta_{index:03d}"


def learned_plan(cfg: Any, beta: float, index: int) -> dict:
    """The trial's plan: the learned-plan knobs of ``search.beta.plan`` with this β, expanded into
    explicit quantizer specs (what plan.yaml and winner.yaml then hold)."""
    from hqrun.models import load_plan

    knobs = dict(cfg.beta.plan or {})
    knobs.update(name=trial_name(index), beta=float(beta))
    return load_plan(knobs).to_dict()


def trainer_settings(cfg: Any) -> dict:
    """``search.beta.trainer`` with ``max_epochs = search.epochs`` and no files or bars (a trial
    keeps its own candidates)."""
    trainer = dict(cfg.beta.trainer or {})
    trainer.update(max_epochs=int(cfg.epochs), checkpoint=False, csv_log=False,
                   progress_bar="false", roc_plot=False)
    return trainer


# --------------------------------------------------------------------------- one trial


@dataclass
class BetaContext:
    """What a β trial needs (Ray stores it once in its object store)."""

    model_cfg: dict
    data: Any                  # hqrun.search.trial.TrialData
    trainer: dict
    reference_state: dict | None
    run_dir: str
    seed: int
    threads: int
    points: dict                # trial index -> {"index", "beta", "plan"}


def train_beta_trial(config: dict, ctx: BetaContext) -> dict:
    """Train one β; save the front epochs' weights; return the trial's result (candidates).

    A training whose loss becomes non-finite returns ``failed`` with the reason and no
    candidates (its weights are not trustworthy after divergence).
    """
    import torch

    from hqrun.modelfile import save_model_file
    from hqrun.search.epochfront import EpochFront
    from hqrun.search.trial import evaluate, lightning_splits
    from hqrun.train.runner import build_from_plan, fit_and_evaluate

    t0 = time.perf_counter()
    index, beta, plan = int(config["index"]), float(config["beta"]), dict(config["plan"])
    torch.set_num_threads(max(1, ctx.threads))
    torch.manual_seed(ctx.seed)
    model = build_from_plan(ctx.model_cfg, plan)
    front = EpochFront()
    losses: list[float] = []

    def on_epoch(row: dict) -> None:
        losses.append(float(row["train_loss"]))
        front.offer(int(row["epoch"]), float(row["val_acc"]), float(row.get("ebops", math.nan)),
                    lambda: {k: v.detach().clone() for k, v in model.state_dict().items()})

    initial = ctx.reference_state
    result = fit_and_evaluate(lightning_splits(ctx.data), ctx.trainer, model=model, plan=plan,
                              seed=ctx.seed, epoch_callback=on_epoch, threads=ctx.threads,
                              evaluate_test=False, initial_state=initial)
    elapsed = time.perf_counter() - t0
    base = {"index": index, "beta": beta, "epochs": len(losses), "trial_time": elapsed}
    if result.metrics.get("diverged") or not all(math.isfinite(x) for x in losses):
        bad = next((i for i, x in enumerate(losses) if not math.isfinite(x)), len(losses) - 1)
        return {**base, "failed": 1, "candidates": [],
                "error": f"TrialFailed: the training loss became non-finite at epoch {bad + 1} "
                         f"(beta={beta:g}); lower trainer.lr or beta"}
    if not len(front):
        return {**base, "failed": 1, "candidates": [],
                "error": "TrialFailed: no epoch reported a finite validation accuracy and EBOPs"}
    out_dir = Path(ctx.run_dir) / CANDIDATE_DIR / trial_name(index)
    if out_dir.exists():          # a killed earlier attempt of this trial: start clean
        shutil.rmtree(out_dir)
    record = {"model": ctx.model_cfg, "plan": plan, "search": "beta", "beta": beta}
    candidates = []
    for p in front.points:
        model.load_state_dict(p.payload)
        test_acc = evaluate(model, ctx.data.test)[0] if ctx.data.test is not None else None
        rel = Path(CANDIDATE_DIR) / trial_name(index) / f"epoch_{p.epoch + 1:04d}" / "model.pt"
        save_model_file(Path(ctx.run_dir) / rel, p.payload, {**record, "epoch": p.epoch + 1})
        candidates.append({"epoch": p.epoch + 1, "accuracy": p.accuracy, "cost": p.cost,
                           "test_accuracy": test_acc, "model": rel.as_posix()})
    return {**base, "failed": 0, "candidates": candidates}


def _beta_trainable(config: dict, ctx: BetaContext) -> None:
    """Ray function trainable: one report with the trial's candidates (errors included)."""
    from ray import tune

    config = ctx.points[int(config["index"])]
    try:
        result = train_beta_trial(config, ctx)
    except Exception as err:  # noqa: BLE001 - any trial error is journaled, never fatal
        result = {"index": int(config["index"]), "beta": float(config["beta"]), "failed": 1,
                  "candidates": [], "error": f"{type(err).__name__}: {err}"[:500]}
    tune.report(result)


# --------------------------------------------------------------------------- journal lines


def candidate_records(result: dict, plan: dict, score: Callable[[float, float], float],
                      session: str) -> list[dict]:
    """Journal lines of one finished trial: one per candidate epoch, or one failed line.

    A candidate's ``config`` names its trial (index, β) and epoch; its ``plan`` is the trial's
    plan, so rankings treat a trial's candidates as one model (``ranking.plan_key``) while the
    Pareto front may hold several of them.
    """
    index, beta = int(result["index"]), float(result["beta"])
    common = {"event": "trial", "block": None, "plan": plan, "widths": {}, "beta": beta,
              "trial": trial_name(index), "epochs": result.get("epochs", 0),
              "time": result.get("trial_time"), "finished_at": time.time(), "session": session}
    if result.get("failed"):
        return [{**common, "trial_id": f"{trial_name(index)}-failed", "status": "failed",
                 "config": {"index": index, "beta": beta}, "accuracy": None, "cost": None,
                 "score": None, "error": result.get("error"), "costs": {}}]
    out = []
    for c in result["candidates"]:
        acc, cost = float(c["accuracy"]), float(c["cost"])
        out.append({**common, "trial_id": f"{trial_name(index)}-e{int(c['epoch']):04d}",
                    "status": "ok", "config": {"index": index, "beta": beta,
                                               "epoch": int(c["epoch"])},
                    "accuracy": acc, "cost": cost, "score": score(acc, cost),
                    "best_epoch": int(c["epoch"]), "error": None, "costs": {"ebops": cost},
                    "test_accuracy": c.get("test_accuracy"), "model": c["model"]})
    return out


def pending_points(betas: list[float], records: list[dict]) -> list[tuple[int, float]]:
    """(trial index, β) still to train: the β values without a journal line (candidates or a
    failed line), each under an index no journaled trial used, so names and candidate folders
    never collide when a resumed search adds grid values or draws."""
    seen = [r["config"] for r in records if isinstance(r.get("config"), dict)
            and isinstance(r["config"].get("index"), int)]
    done = {float(c.get("beta")) for c in seen if isinstance(c.get("beta"), (int, float))}
    todo = list(dict.fromkeys(b for b in betas if b not in done))
    start = max((int(c["index"]) for c in seen), default=-1) + 1
    return [(start + k, b) for k, b in enumerate(todo)]


def per_trial(records: list[dict]) -> list[dict]:
    """One record per trial (its best-scoring candidate, or its failed line), in journal order:
    what the progress bar counts."""
    best: dict[str, dict] = {}
    for r in records:
        key = str(r.get("trial", r["trial_id"]))
        old = best.get(key)
        if old is None or (r.get("score") is not None
                           and (old.get("score") is None or r["score"] > old["score"])):
            best[key] = r
    return list(best.values())


# --------------------------------------------------------------------------- the algorithm


@register_algorithm("beta")
class BetaSweep(SearchAlgorithm):
    """One learned-bit-width training per β; each trial's epoch front becomes candidates."""

    def validate(self, cfg):  # noqa: ANN001, ANN201 - see SearchAlgorithm.validate
        bcfg = cfg.beta
        if bcfg.grid is not None:
            bad = [b for b in bcfg.grid if not (isinstance(b, (int, float)) and math.isfinite(b)
                                                and b >= 0)]
            if bad or not len(bcfg.grid):
                raise SearchError(
                    f"search.beta.grid={list(bcfg.grid)} must list one or more finite beta "
                    "values >= 0 (beta weighs EBOPs in the loss; 0 trains widths for accuracy "
                    "only), e.g. search.beta.grid=[1e-7,1e-6,1e-5]; or set it to null to draw "
                    "search.max_trials values between search.beta.beta_min and beta_max.")
        else:
            lo, hi = float(bcfg.beta_min), float(bcfg.beta_max)
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0 or hi <= 0:
                raise SearchError(
                    f"search.beta.beta_min={lo:g} and search.beta.beta_max={hi:g} must be finite "
                    "and > 0: beta is drawn log-uniformly between them (and beta < 0 would reward "
                    "cost). For beta=0 or other exact values use search.beta.grid=[0,1e-6,...].")
            if lo > hi:
                raise SearchError(
                    f"search.beta.beta_min={lo:g} is larger than search.beta.beta_max={hi:g}; "
                    "beta is drawn log-uniformly between them, so swap the two values (e.g. "
                    "search.beta.beta_min=1e-7 search.beta.beta_max=3e-5).")
        if str(cfg.goal.type) != "ebops":
            raise SearchError(
                f"search.goal.type={cfg.goal.type} does not fit search.algorithm=beta: learned "
                "bit widths are trained against EBOPs and their candidates are priced in EBOPs. "
                "Set search.goal.type=ebops (conf/search/beta.yaml does).")
        if str(cfg.retrain) != "none":
            raise SearchError(
                f"search.retrain={cfg.retrain} does not apply to search.algorithm=beta: its "
                "candidates are trained models already (candidates/, winner/, front/ hold their "
                "weights). Set search.retrain=none (conf/search/beta.yaml does).")
        if not bcfg.plan:
            raise SearchError(
                "search.beta.plan is empty; it holds the learned-plan knobs (granularity, "
                "init_frac, learn, ...) as conf/quant/learned.yaml does. Use search=beta, whose "
                "defaults fill it, or set search.beta.plan=<mapping>.")
        from hqrun.errors import HqrunError

        try:                    # the knobs themselves (granularity, init_frac, ...), now
            learned_plan(cfg, float(bcfg.grid[0]) if bcfg.grid else float(bcfg.beta_min), 0)
        except HqrunError as err:
            raise SearchError(f"search.beta.plan: {err}") from None
        from hqrun.train.runner import check_trainer_config

        try:
            check_trainer_config(trainer_settings(cfg))
        except HqrunError as err:
            raise SearchError(str(err).replace("trainer.", "search.beta.trainer.")) from None

    def fingerprint(self, cfg):  # noqa: ANN001, ANN201
        # β values may be added on resume (a longer grid, more draws); what each trial trains
        # may not change
        plain = {k: v for k, v in cfg.to_plain()["beta"].items() if k != "grid"}
        return {"beta": plain}

    def run(self, run):  # noqa: ANN001, ANN201 - see SearchAlgorithm.run
        betas = beta_values(run.cfg, run.seed)
        todo = pending_points(betas, run.journal.trials())
        done = per_trial(run.finished())
        progress = run.progress(len(done) + len(todo), done)
        if todo:
            points = [{"index": i, "beta": b, "plan": learned_plan(run.cfg, b, i)}
                      for i, b in todo]
            _run_beta_tuner(run, points, progress)
        progress.close()
        return {}, None

    def write_artefacts(self, outcome: Any, written: dict, cfg: Any) -> dict:
        """winner/ and front/point_NN/: run dirs holding the chosen candidates' weights."""
        from hqrun.search.candidate_dirs import export_candidates

        return export_candidates(outcome.run_dir, written)


def _run_beta_tuner(run: Any, points: list[dict], progress: Callable[[dict], None]) -> None:
    """One Ray Tune run over ``points`` (one trial each); each result is journaled as it lands."""
    import os

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from ray import tune
    from ray.tune import Callback, FailureConfig, RunConfig, TuneConfig

    from hqrun.search.runner import _error_line, _first_line, _trial_error_text

    cfg = run.cfg
    ff, ref_cost = run.settings.forgiving, run.settings.reference_cost
    ctx = BetaContext(dict(run.backend.model_cfg), run.data, trainer_settings(cfg),
                      run.reference.state if cfg.beta.from_reference else None,
                      str(Path(run.run_dir).resolve()), int(run.seed),
                      int(cfg.ray.cpus_per_trial), {int(p["index"]): p for p in points})
    storage = Path(run.run_dir) / "ray"
    storage.mkdir(parents=True, exist_ok=True)
    part = f"part_{len(list(storage.iterdir())):03d}"
    journal = run.journal

    def write(result: dict, plan: dict) -> None:
        records = candidate_records(result, plan, lambda a, c: ff.score(a, ref_cost, c), part)
        for rec in records:
            journal.append(rec)
        progress(per_trial(records)[0])     # the bar counts trials, not candidates

    class BetaJournal(Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):  # noqa: ANN001
            point = ctx.points[int(trial.config["index"])]
            res = dict(trial.last_result or {})
            if "candidates" not in res:      # finished without reporting: count it as failed
                res = {"index": point["index"], "beta": point["beta"],
                       "failed": 1, "error": "the trial ended without a result"}
            write(res, point["plan"])

        def on_trial_error(self, iteration, trials, trial, **info):  # noqa: ANN001
            text = ""
            try:
                text = _trial_error_text(trial)
            except Exception:  # noqa: BLE001
                pass
            point = ctx.points[int(trial.config["index"])]
            write({"index": point["index"], "beta": point["beta"], "failed": 1,
                   "error": _error_line(text) or _first_line(text) or "trial raised"},
                  point["plan"])

    trainable = tune.with_resources(tune.with_parameters(_beta_trainable, ctx=ctx),
                                    {"cpu": int(cfg.ray.cpus_per_trial)})
    tuner = tune.Tuner(
        trainable,
        param_space={"index": tune.grid_search(sorted(ctx.points))},
        tune_config=TuneConfig(num_samples=1, reuse_actors=True,
                               trial_dirname_creator=lambda t: t.trial_id),
        run_config=RunConfig(name=part, storage_path=str(storage.resolve()), verbose=0,
                             failure_config=FailureConfig(max_failures=int(cfg.retries)),
                             callbacks=[BetaJournal()]),
    )
    import logging

    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    tuner.fit()
