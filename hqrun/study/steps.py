"""The steps of a study, each resumable: a step whose output is complete is skipped.

Every model of the study (BF, Q6, QE, QB) is a plain ``hqrun train`` run directory inside the
study directory, so ``hqrun firmware run=...`` and ``hqrun cost run=...`` work on each of them
afterwards, exactly as on any training run.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf, open_dict

from hqrun import atomic
from hqrun.errors import HqrunError

#: Row labels the paper uses: BF (float), Q6 (homogeneous 6-bit), QE (energy), QB (bits).
GOAL_LABELS = {"energy": "QE", "bits": "QB", "ebops": "QF"}


def baseline_label(plan_name: str) -> str:
    return "BF" if plan_name == "float" else plan_name.upper()


def _derive(cfg: DictConfig, **updates: Any) -> DictConfig:
    """A copy of the study config with some keys replaced (dotted keys allowed)."""
    new = copy.deepcopy(cfg)
    with open_dict(new):
        for key, value in updates.items():
            OmegaConf.update(new, key, value, merge=False, force_add=True)
    return new


def train_step(cfg: DictConfig, out_dir: Path, plan: dict, init_from: Path | None) -> dict:
    """Train one model into ``out_dir`` unless a finished run is already there."""
    metrics_path = out_dir / "metrics.json"
    if metrics_path.exists() and (out_dir / "model.pt").exists():
        print(f"[study] {out_dir.name}: already trained, skipped")
        return json.loads(metrics_path.read_text())
    from hqrun.train.command import run as train

    job = _derive(cfg, command="train", out_dir=str(out_dir), plan=None, quant=plan,
                  checkpoint=str(init_from) if init_from else None)
    return train(job)


def search_seed(cfg: DictConfig, goal: str) -> int:
    """The seed of one goal's search: ``search.seed`` (else ``seed``) plus the goal's position in
    ``study.goals`` when ``study.distinct_search_seeds``, so two uncapped searches do not train
    the same configurations (they drew the same ones when they shared a seed)."""
    base = cfg.search.get("seed")
    base = int(cfg.get("seed", 0) if base is None else base)
    if not cfg.study.get("distinct_search_seeds", True):
        return base
    return base + [str(g) for g in cfg.study.goals].index(goal)


def search_step(cfg: DictConfig, out_dir: Path, goal: str, max_cost: float | None = None) -> Path:
    """Run (or resume) the AutoQ search for one goal (under ``max_cost`` when given); return its
    winner plan file."""
    winner = out_dir / "winner.yaml"
    if (out_dir / "search_summary.json").exists() and winner.exists():
        print(f"[study] search {goal}: already finished, skipped")
        return winner
    from hqrun.search.command import run as search

    job = _derive(cfg, command="search", **{"search.run_dir": str(out_dir),
                                            "search.goal.type": goal, "search.retrain": "none",
                                            "search.goal.max_cost": max_cost,
                                            "search.seed": search_seed(cfg, goal)})
    search(job)
    return winner


def learning_floor_of(search_dir: Path):
    """The failed-to-learn floor a finished search recorded (None for older searches)."""
    from hqrun.search.learning import LearningFloor

    summary = search_dir / "search_summary.json"
    try:
        data = json.loads(summary.read_text()) if summary.exists() else {}
    except (OSError, ValueError):
        data = {}
    return LearningFloor.from_dict(data.get("learning_floor") if isinstance(data, dict) else None)


def candidate_plans(search_dir: Path, k: int, spread: bool = False,
                    fill: Callable[[dict], tuple[dict, dict, float]] | None = None
                    ) -> list[tuple[dict, Path]]:
    """The ``k`` best-scoring trials of a finished search, each written as a plan file under
    ``<search_dir>/candidates/`` (best first; the first one is the search's winner).

    With ``spread``, the best trial of each family of activation widths comes first
    (hqrun/study/diversity.py), so the full trainings compare data paths, not near-copies.
    ``fill(config) -> (config, plan, cost)`` completes a trial before it is written (the
    parameter quantizers raised to the cost cap, :func:`cap_filler`); the returned record then
    carries the filled plan and cost, and the trial's own in ``trial_plan`` / ``trial_cost``.
    """
    from hqrun.search.journal import Journal
    from hqrun.search.results import write_plan
    from hqrun.search.ranking import plan_key, ranked_records

    journal = Journal(search_dir / "trials.jsonl")
    # block scheduler: only the block searched last holds whole plans (blocks may run in cost
    # order, so "last" is the journal's last finished block, not the highest index)
    finished_blocks = list(journal.blocks_done())
    records = journal.trials(finished_blocks[-1] if finished_blocks else None)
    folder = search_dir / "candidates"
    folder.mkdir(exist_ok=True)
    floor = learning_floor_of(search_dir)   # a trial at chance is retrained only if all are
    everything = ranked_records(records, len(records))
    ranked = [r for r in everything if floor is None or floor.learned(r.get("accuracy"))]
    if not ranked and everything:
        print(f"[study] warning: no trial of {search_dir.name} learned anything in the search's "
              f"epochs ({floor.describe()}); retraining the best ones in full anyway (more "
              "search.epochs would rank them better)")
        ranked = everything
    if spread:
        from hqrun.study.diversity import plan_family, spread_over_families

        ranked = spread_over_families(ranked, len(ranked), plan_family)
    out: list[tuple[dict, Path]] = []
    seen: set[str] = set()
    for rec in ranked:
        if len(out) >= k:
            break
        if fill is not None and not finished_blocks:
            config, plan, cost = fill(rec["config"])
            if config != rec["config"]:
                rec = {**rec, "config": config, "plan": plan, "cost": cost,
                       "trial_plan": rec["plan"], "trial_cost": rec.get("cost")}
        key = plan_key(rec)
        if key in seen:      # two trials that fill to the same plan are trained once
            continue
        seen.add(key)
        path = folder / f"c{len(out)}.yaml"
        write_plan(rec["plan"], path, f"candidate_{len(out)}", rec.get("widths"))
        out.append((rec, path))
    return out


def fills_to_cap(cfg: DictConfig, cap: float | None) -> bool:
    """Whether a goal capped at ``cap`` has its candidates filled (``study.fill_to_cap``)."""
    return cap is not None and bool(cfg.study.get("fill_to_cap", False))


def cap_filler(cfg: DictConfig, goal: str, cap: float | None
               ) -> Callable[[dict], tuple[dict, dict, float]] | None:
    """The ``fill`` of :func:`candidate_plans` for one capped goal when ``study.fill_to_cap``
    (None otherwise): parameter quantizers raised as far as the cap allows
    (:func:`hqrun.search.costcap.fill_to_cap`)."""
    if not fills_to_cap(cfg, cap):
        return None
    from hqrun.search.backend import HqrunBackend
    from hqrun.search.costcap import fill_to_cap, price
    from hqrun.search.space import build_space

    backend = HqrunBackend(cfg.model, cfg.get("cost"))
    space = build_space(cfg.search.space, backend.describe())

    def fill(config: dict) -> tuple[dict, dict, float]:
        if set(config) != set(space.keys):   # not a whole-space trial: leave it as it is
            return config, space.plan(config), price(space, backend, config, goal)
        filled = fill_to_cap(config, space, lambda c: price(space, backend, c, goal) <= cap)
        return filled, space.plan(filled), price(space, backend, filled, goal)

    return fill


def restart_seeds(cfg: DictConfig, restarts: int) -> list[int]:
    """Training seeds of the restarts of one model: the run's training seed, then the next ones.

    Restarts differ in initial weights and batch order only: the data split keeps the run's
    ``seed`` (``trainer.seed`` is the separate training seed).
    """
    from hqrun.train.command import training_seed

    base = training_seed(cfg)
    return [base + r for r in range(max(1, int(restarts)))]


def select_step(cfg: DictConfig, out_dir: Path, jobs: list[dict], init_from: Path | None) -> dict:
    """Train every job in full and keep the one with the best validation accuracy as ``out_dir``
    (a plain training run directory).

    A job is ``{"candidate": i, "plan": plan dict, "seed": training seed, ...}``; the other keys
    (trial id, search accuracy, cost) are copied into the record. A search trial's accuracy comes
    from a few epochs and one training seed is one draw of a noisy process; a short list trained
    to the end and judged on validation data (never on test data) picks the final model more
    reliably than one training of the single best trial. Jobs train in
    ``<out_dir>_candidates/c<i>`` (first seed) and ``c<i>_s<seed>`` (the others); the choice is
    recorded in ``<out_dir>/candidates.json``.
    """
    if (out_dir / "metrics.json").exists() and (out_dir / "model.pt").exists():
        print(f"[study] {out_dir.name}: already trained, skipped")
        return json.loads((out_dir / "metrics.json").read_text())
    rows = []
    first_seed: dict[int, int] = {}
    for job in jobs:
        i, seed = int(job["candidate"]), int(job["seed"])
        first = first_seed.setdefault(i, seed) == seed
        cand_dir = out_dir.parent / f"{out_dir.name}_candidates" / (f"c{i}" if first else f"c{i}_s{seed}")
        print(f"[study] {out_dir.name}: candidate {i}, training seed {seed}"
              + (f" (trial {job['trial_id']})" if job.get("trial_id") else ""))
        metrics = train_step(_derive(cfg, **{"trainer.seed": seed}), cand_dir, job["plan"], init_from)
        row = {k: v for k, v in job.items() if k != "plan"}
        rows.append({**row, "dir": str(cand_dir), "val_accuracy": metrics["val"]["accuracy"],
                     "test_accuracy": metrics["test"]["accuracy"]})
    if not rows:
        raise HqrunError(f"nothing to train for {out_dir.name}: the search has no finished trial; "
                         "see its trials.csv (column error), fix the cause and rerun the same command.")
    best = max(rows, key=lambda r: (r["val_accuracy"], -r["candidate"], -r["seed"]))
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(best["dir"], tmp)
    for row in rows:
        row["chosen"] = row is best
    atomic.write_json(tmp / "candidates.json", rows)
    atomic.replace_dir(tmp, out_dir)
    print(f"[study] {out_dir.name}: candidate {best['candidate']} (training seed {best['seed']}) "
          f"chosen (validation accuracy {best['val_accuracy']:.4f})")
    return json.loads((out_dir / "metrics.json").read_text())


def search_jobs(cfg: DictConfig, search_dir: Path, k: int, restarts: int, goal: str = "",
                cap: float | None = None, label: str = "") -> list[dict]:
    """Jobs for :func:`select_step`: the ``k`` best trials of a search (spread over families
    when ``study.spread_candidates``, filled to ``cap`` when ``study.fill_to_cap``), each at
    every restart seed. Each plan is named ``<label>-c<i>`` (its ROC plot and metrics say which
    model they belong to)."""
    from hqrun.models import load_plan

    spread = bool(cfg.study.get("spread_candidates", False))
    fill = cap_filler(cfg, goal, cap) if goal else None
    jobs = []
    for i, (rec, plan_path) in enumerate(candidate_plans(search_dir, k, spread, fill)):
        plan = load_plan(str(plan_path)).to_dict()
        if label:
            plan["name"] = f"{label}-c{i}"
        for seed in restart_seeds(cfg, restarts):
            jobs.append({"candidate": i, "seed": seed, "plan": plan, "trial_id": rec["trial_id"],
                         "search_accuracy": rec.get("accuracy"), "cost": rec.get("cost"),
                         "trial_cost": rec.get("trial_cost", rec.get("cost"))})
    return jobs


def ptq_step(cfg: DictConfig, float_dir: Path, out_dir: Path, plan: dict) -> Path:
    """A run directory holding the float model's weights under a fixed-point plan, no retraining.

    A float model has no fixed-point grid, so it cannot be proven bit-exact as it is. The paper
    put its float baseline on the FPGA at hls4ml's default ap_fixed<16,6>; this step does the same
    explicitly (post-training quantization), so BF's firmware is verified against the PyTorch
    model it really computes: the float weights seen through ``plan``'s quantizers. That model is
    what BF's row of the report describes: its test metrics (``metrics.json``) and its deployed
    cost (``cost.json``) are written here, by the same code as every trained model's.
    """
    if (out_dir / "metrics.json").exists() and (out_dir / "model.pt").exists():
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    from hqrun.cost.deployed import deployed_cost
    from hqrun.data import load_dataset
    from hqrun.modelfile import load_model_file, save_model_file
    from hqrun.models import build_model, load_plan
    from hqrun.train.metrics import classification_metrics
    from hqrun.train.runner import predict_proba

    config = OmegaConf.load(float_dir / "config.yaml")
    with open_dict(config):
        config.quant = plan
        config.plan = None
    atomic.write_text(out_dir / "config.yaml", OmegaConf.to_yaml(config))
    ptq_plan = load_plan(plan)
    ptq_plan.to_yaml(out_dir / "plan.yaml")
    atomic.write_bytes(out_dir / "scaler.json", (float_dir / "scaler.json").read_bytes())
    # the float weights under the fixed-point plan: model.json says so
    loaded = load_model_file(float_dir / "model.pt", "the float baseline's weights")
    model_cfg = OmegaConf.to_container(config.model, resolve=True)
    save_model_file(out_dir / "model.pt", loaded.state,
                    {**loaded.record, "model": model_cfg, "plan": ptq_plan.to_dict()})
    model = build_model(model_cfg, ptq_plan)
    model.load_state_dict(loaded.state, strict=False)
    model.eval()
    deployed_cost(model, cfg.get("cost"), cfg.get("firmware")).to_json(out_dir / "cost.json")
    splits = load_dataset(config.data, int(config.get("seed", 0)))   # the float run's split
    metrics = {"model": model_cfg.get("name"), "plan": ptq_plan.name, "data": splits.summary(),
               "post_training_quantized_from": str(float_dir)}
    for part, (x, y) in {"val": (splits.X_val, splits.y_val),
                         "test": (splits.X_test, splits.y_test)}.items():
        metrics[part] = classification_metrics(predict_proba(model, x), y, splits.class_names)
    atomic.write_json(out_dir / "metrics.json", metrics, indent=1)   # last: marks it complete
    return out_dir


def firmware_step(cfg: DictConfig, model_dir: Path) -> dict:
    """Build and verify the firmware of a trained model (skipped when its report exists)."""
    report = model_dir / "firmware" / "report.json"
    if report.exists():
        print(f"[study] {model_dir.name}: firmware already verified, skipped")
        return json.loads(report.read_text())
    from hqrun.firmware_command import run as firmware

    job = _derive(cfg, command="firmware", run=str(model_dir), checkpoint=None)
    return firmware(job)
