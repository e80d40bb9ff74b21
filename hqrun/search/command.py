"""``hqrun search``: run (or resume) an AutoQ search, then retrain and test the winner(s).

Run dir layout: search.json (settings fingerprint), reference.pt/.json (float reference),
trials.jsonl (journal: the record), trials.csv, pareto.png, winner.yaml (+ front/*.yaml),
ray/ (Ray Tune's own storage), winner/ (retrained winner: best.ckpt, plan.yaml, scaler.json,
metrics.json). Rerun the same command with the same run dir to resume.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from hqrun.errors import SearchError


#: A search goal's key in a cost report's totals.
TOTALS_KEY = {"energy": "energy", "bits": "size_bits", "ebops": "ebops", "lut": "lut"}


def resolve_run_dir(cfg: Any) -> Path:
    """search.run_dir, else Hydra's run dir, else runs/search/<timestamp>."""
    explicit = cfg.search.get("run_dir") if hasattr(cfg.search, "get") else cfg.search.run_dir
    if explicit:
        from hqrun.safenames import check_output_path

        return check_output_path(explicit, "search.run_dir")
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # noqa: BLE001 - not under Hydra (notebook, tests)
        return Path("runs/search") / time.strftime("%Y-%m-%d_%H-%M-%S")


def _save_config(cfg: Any, path: Path) -> None:
    from omegaconf import OmegaConf

    from hqrun import atomic

    if OmegaConf.is_config(cfg):
        atomic.write_text(path, OmegaConf.to_yaml(cfg, resolve=True))


def _seed(cfg: Any) -> int:
    s = cfg.search.get("seed") if hasattr(cfg.search, "get") else cfg.search.seed
    return int(cfg.get("seed", 0) if s is None else s)


def run(cfg: Any) -> dict:
    """The ``hqrun search`` command (``cfg`` is the composed, validated config)."""
    import torch

    from hqrun.rundir import claimed_dir
    from hqrun.search.backend import HqrunBackend
    from hqrun.search.algorithms import get_algorithm
    from hqrun.search.runner import check_config
    from hqrun.search.space import build_space

    torch.set_num_threads(int(cfg.get("threads", 1) or 1))
    scfg = check_config(cfg.search)                  # parsed once; bad settings and spaces fail
    seed = _seed(cfg)                                # here, before any data is read or any trial
    backend = HqrunBackend(cfg.model, cfg.get("cost"))
    space = build_space(scfg.space, backend.describe())
    get_algorithm(scfg.algorithm).check_space(scfg, space)   # e.g. block regexes, before any file
    with claimed_dir(resolve_run_dir(cfg), "search", what="the search run directory") as claimed:
        return _run(cfg, scfg, seed, backend, claimed)


def _run(cfg: Any, scfg: Any, seed: int, backend: Any, claimed: Any) -> dict:
    """The search in its claimed directory: inputs checked, then the first file written."""
    from hqrun import atomic
    from hqrun.data import load_dataset
    from hqrun.search.backend import splits_to_data
    from hqrun.search.learning import learning_floor
    from hqrun.search.results import leaderboard, write_results
    from hqrun.search.runner import check_resumable, check_resume, run_search

    run_dir = claimed.path
    if check_resume(run_dir, scfg):   # another search's directory, a damaged search.json: now
        check_resumable(run_dir)        # and a damaged journal or reference, before any write
    # The split is the run's `seed`'s, as in `hqrun train`: search.seed only seeds the search
    # (sampling, trials), so a study's searches and its trained models see the same test jets.
    splits = load_dataset(cfg.data, int(cfg.get("seed", 0)))
    claimed.create()
    _save_config(cfg, run_dir / "config.yaml")   # hqrun firmware run=<dir>/winner reads it
    splits.scaler.save(run_dir / "scaler.json")
    data = splits_to_data(splits, scfg.train_samples)
    print(f"[search] run dir {run_dir}: {scfg.algorithm} search, goal {scfg.goal.type}, "
          f"objective {scfg.objective}, {scfg.max_trials} trials x {scfg.epochs} epochs")
    outcome = run_search(scfg, backend, data, run_dir, seed)
    goal = str(scfg.goal.type)
    floor = learning_floor(data.val.y.numpy())   # trials at chance never become front points
    written = write_results(outcome, goal, str(scfg.objective), floor=floor,
                            stress=float(scfg.goal.stress), cap=scfg.goal.max_cost,
                            epochs=int(scfg.epochs))
    from hqrun.search.algorithms import get_algorithm

    written.update(get_algorithm(scfg.algorithm).write_artefacts(outcome, written, cfg))
    print(leaderboard(outcome.records, goal=goal, floor=floor))
    if "winner" not in written:
        raise SearchError(f"no trial finished successfully; the errors are in {run_dir}/trials.csv "
                          "(column error). Fix the cause and rerun the same command to resume.")
    if not floor.learned(written["winner"].get("accuracy")):
        print(f"[search] warning: no trial learned anything ({floor.describe()}); the winner is "
              "a guesser. More epochs (search.epochs), another space or a higher learning rate "
              "may help.")
    summary: dict = {"run_dir": str(run_dir), "winner_plan": str(run_dir / "winner.yaml"),
                     "trials": len(outcome.records), "seed": seed, "goal": goal,
                     "epochs_per_trial": int(scfg.epochs), "learning_floor": floor.to_dict(),
                     "cost_basis": _cost_basis(cfg)}
    retrain = str(scfg.retrain)
    if retrain != "none":
        targets = [("winner", written["winner"])]
        if retrain == "front":
            targets += [(f"front/point_{i:02d}", r) for i, r in enumerate(written.get("front", []))]
        summary["retrained"] = {}
        for name, rec in targets:
            summary["retrained"][name] = retrain_plan(cfg, splits, backend, outcome, rec,
                                                      run_dir / name, seed)
        w = summary["retrained"]["winner"]
        print(f"[search] winner retrained {scfg.final_epochs} epochs: test accuracy "
              f"{w['test_accuracy']:.4f}, {goal} {w['cost'][TOTALS_KEY.get(goal, goal)]:.6g} as "
              "deployed "
              f"(float reference: val accuracy {outcome.reference.accuracy:.4f}, "
              f"{goal} {outcome.reference.cost.get(goal, float('nan')):.6g} as the search prices "
              "it)")
    # search_summary.json last: its presence marks a finished search (hqrun.rundir, the study)
    atomic.write_json(run_dir / "search_summary.json", summary, default=str)
    print(f"[search] wrote {run_dir}/winner.yaml, trials.csv, pareto.png")
    from hqrun.hints import firmware_hint, next_line, train_plan_hint

    hint = next_line([train_plan_hint(run_dir / "winner.yaml"), firmware_hint(run_dir / "winner")],
                     "[search] ")
    if hint:
        print(hint)
    return summary


def _cost_basis(cfg: Any) -> str:
    """How the search priced its trials (QTools's convention, unless cost.source_quantizers)."""
    from hqrun.cost.api import DEFAULT_SOURCE

    cost = cfg.get("cost") if hasattr(cfg, "get") else None
    source = (cost.get("source_quantizers") if cost is not None else None) or DEFAULT_SOURCE
    return (f"estimated by hqrun.cost with QTools's convention: model input {source} unless the "
            "plan has an input quantizer (what the search optimises; trained models are priced "
            "as deployed in their cost.json)")


def retrain_plan(cfg: Any, splits: Any, backend: Any, outcome: Any, rec: dict, out_dir: Path,
                 seed: int) -> dict:
    """Retrain one plan for search.final_epochs with the Lightning trainer; test it once."""
    from omegaconf import OmegaConf

    from hqrun.search.results import write_plan
    from hqrun.train.runner import fit_and_evaluate

    from hqrun import atomic

    done = out_dir / "metrics.json"
    if done.exists():      # resumed after the retraining finished
        return json.loads(done.read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    widths = rec.get("widths") or {}
    write_plan(rec["plan"], out_dir / "plan.yaml", out_dir.name, widths)
    tcfg = cfg.get("trainer") if hasattr(cfg, "get") else getattr(cfg, "trainer", None)
    trainer = (OmegaConf.to_container(tcfg, resolve=True) if OmegaConf.is_config(tcfg)
               else dict(tcfg or {}))
    trainer["max_epochs"] = int(cfg.search.final_epochs)
    model_cfg = backend._cfg(widths)
    initial = None
    if not widths:   # same shapes as the float reference: start from its weights
        ref = backend.build({"name": "float"}, {})
        ref.load_state_dict(outcome.reference.state)
        initial = ref
    plan = {**rec["plan"], "name": out_dir.name}     # "winner", "point_03": the bar says which
    result = fit_and_evaluate(splits, trainer, model_cfg=model_cfg, plan=plan, seed=seed,
                              run_dir=out_dir, initial_state=initial,
                              threads=int(cfg.get("threads", 1) or 1))
    splits.scaler.save(out_dir / "scaler.json")
    from hqrun.cost.deployed import deployed_cost

    cost = deployed_cost(result.model, cfg.get("cost"), cfg.get("firmware"))
    cost.to_json(out_dir / "cost.json")   # a trained model: its deployed cost, as hqrun train
    metrics = {
        "trial_id": rec["trial_id"], "plan": rec["plan"], "widths": widths,
        "test_accuracy": result.metrics["test"]["accuracy"],
        "val_accuracy": result.metrics["val"]["accuracy"],
        "cost": cost.totals, "cost_basis": cost.basis, "checkpoint": result.checkpoint,
        "search_accuracy": rec.get("accuracy"), "search_score": rec.get("score"),
        "metrics": result.metrics,
    }
    atomic.write_text(out_dir / "model.yaml", OmegaConf.to_yaml(OmegaConf.create(model_cfg)))
    atomic.write_json(done, metrics, default=str)
    return metrics
