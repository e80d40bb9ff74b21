"""``hqrun study`` (what ``hqrun experiment=jet_tagging`` runs): the paper's comparison.

Float baseline (BF) → homogeneous baselines (Q6) → one AutoQ search per goal (energy → QE,
bits → QB) → retrain each winner → price every model → firmware + bit-exact check for every
model → ``report.md``. Every step writes into the study directory and is skipped when its output
is complete, so rerunning the same command on an interrupted study continues it.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path


from omegaconf import DictConfig, OmegaConf

from hqrun import atomic
from hqrun.errors import HqrunError
from hqrun.safenames import check_name
from hqrun.study.firmware_jobs import plan_jobs, run_jobs
from hqrun.study.learned import check_learned, learned_enabled
from hqrun.study.steps import (GOAL_LABELS, baseline_label, fills_to_cap, ptq_step,
                               restart_seeds, search_jobs, search_seed, search_step, select_step,
                               train_step)


def study_dir(cfg: DictConfig) -> Path:
    from hqrun.rundir import output_dir

    return output_dir(cfg, "study")


def run(cfg: DictConfig) -> dict:
    """Run (or resume) the study; return the report's summary."""
    from hqrun.models import load_plan
    from hqrun.study.report import write_report

    scfg = cfg.study
    _check_study(cfg)
    root = study_dir(cfg)
    root.mkdir(parents=True, exist_ok=True)
    atomic.write_text(root / "study_config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    models: list[tuple[str, Path]] = []

    restarts = int(scfg.get("restarts", 1))
    for name in scfg.baselines:
        label = baseline_label(str(name))
        plan = load_plan(str(name)).to_dict()
        if restarts > 1:
            print(f"[study] {label}: training plan {name} {restarts} times, keeping the best on validation")
            select_step(cfg, root / label, [{"candidate": 0, "seed": seed, "plan": plan}
                                            for seed in restart_seeds(cfg, restarts)], None)
        else:
            print(f"[study] {label}: training plan {name}")
            train_step(cfg, root / label, plan, None)
        models.append((label, root / label))
    float_weights = root / "BF" / "model.pt"
    init = float_weights if scfg.init_from_float and float_weights.exists() else None

    searches: dict[str, Path] = {}
    for goal in scfg.goals:
        label = GOAL_LABELS.get(str(goal), f"Q{str(goal)[0].upper()}")
        searches[str(goal)] = root / f"search_{goal}"
        cap = (scfg.get("max_cost") or {}).get(str(goal))
        print(f"[study] {label}: AutoQ search for {goal} (search seed "
              f"{search_seed(cfg, str(goal))})" + (f" under {cap:g}" if cap is not None else ""))
        winner = search_step(cfg, searches[str(goal)], str(goal), cap)
        k = int(scfg.get("candidates", 1))
        filled = fills_to_cap(cfg, cap)
        if k > 1 or restarts > 1 or filled:
            what = "the winner" if k == 1 else f"the {k} best trials"
            times = f", {restarts} trainings each, the best on validation kept" if restarts > 1 \
                else (", the best on validation kept" if k > 1 else "")
            print(f"[study] {label}: retraining {what}"
                  + (" with kernels and biases raised to the cap" if filled else "") + times)
            select_step(cfg, root / label,
                        search_jobs(cfg, searches[str(goal)], k, restarts, str(goal), cap, label),
                        init)
        else:
            print(f"[study] {label}: retraining the winner {winner}")
            train_step(cfg, root / label, {**load_plan(str(winner)).to_dict(), "name": label}, init)
        models.append((label, root / label))

    learned_models = learned_family(cfg, root, searches) if learned_enabled(cfg) else []
    models += learned_models      # learned bit widths: a beta sweep, its candidates as trained

    backends = study_backends(cfg)
    extra = scfg.get("extra_backend_models")
    # Learned models have per-element activation widths, which only the RTL backend builds
    # (hls4ml refuses them by name), so every further backend builds them too.
    extra_models = None if extra is None else {str(m) for m in extra} | {l for l, _ in learned_models}
    if scfg.firmware:
        built = []
        for label, directory in models:
            target = directory
            if label == "BF":  # a float model reaches firmware through post-training quantization
                plan = OmegaConf.to_container(scfg.float_firmware_plan, resolve=True)
                target = ptq_step(cfg, directory, root / "BF_ptq", plan)
            built.append((label, directory, target))
        run_jobs(cfg, plan_jobs(built, backends, extra_models), int(scfg.get("firmware_workers") or 1))

    class_names = _class_names(models)
    command = "hqrun " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report = write_report(root, models, searches, class_names, int(scfg.pareto_points), command,
                          extra_backends=backends[1:])
    print(f"[study] report: {report}")
    return json.loads((root / "report.json").read_text())


def learned_family(cfg: DictConfig, root: Path, searches: dict[str, Path]) -> list[tuple[str, Path]]:
    """Run the beta sweep, take one candidate per EBOPs budget as a model (hqrun/study/learned.py);
    the sweep joins ``searches`` under its goal so the report draws its front."""
    from hqrun.search.journal import Journal
    from hqrun.study.learned import (LEARNED_GOAL, SEARCH_DIR, budget_label,
                                     learned_model_step, learned_search_step, pick_candidates)

    sweep = root / SEARCH_DIR
    print("[study] learned bit widths: beta sweep (search=beta)")
    learned_search_step(cfg, sweep)
    searches[LEARNED_GOAL] = sweep
    budgets = [float(b) for b in cfg.study.learned.budgets]
    picked = pick_candidates(Journal(sweep / "trials.jsonl").trials(), budgets)
    for budget in budgets:
        if budget not in dict(picked):
            print(f"[study] learned bit widths: no candidate at or under {budget:,.0f} EBOPs")
    out = []
    for budget, record in picked:
        label = budget_label(budget)
        print(f"[study] {label}: candidate {record['trial_id']} ({record['cost']:,.0f} EBOPs, "
              f"val accuracy {record['accuracy']:.4f}), taken as trained")
        learned_model_step(cfg, sweep, record, root / label)
        out.append((label, root / label))
    return out


def _check_study(cfg: DictConfig) -> None:
    """Refuse study settings that would only fail after the baselines have trained."""
    scfg = cfg.study
    for name in scfg.baselines:   # each becomes a directory of the study (BF, Q6, ...)
        check_name(str(name), "study.baselines entry")
    for goal in scfg.goals:       # each becomes search_<goal>/
        check_name(str(goal), "study.goals entry")
    caps = scfg.get("max_cost") or {}
    uncapped = [str(g) for g in scfg.goals if caps.get(str(g)) is None]
    if cfg.search.get("objective") == "accuracy" and uncapped:
        raise HqrunError(f"search.objective=accuracy needs a cost cap for every searched goal, "
                         f"and {', '.join(uncapped)} has none: set study.max_cost."
                         f"{uncapped[0]}=<cap>, or use search.objective=forgiving.")
    _check_backends(cfg)
    workers = scfg.get("firmware_workers", 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise HqrunError(f"study.firmware_workers={workers!r} must be an integer >= 1 (firmware "
                         "builds run at once; 1 builds them one after another).")
    check_learned(cfg)
    k = scfg.get("candidates", 1)
    if not isinstance(k, int) or k < 1:
        raise HqrunError(f"study.candidates={k!r} must be an integer >= 1 (the number of top "
                         "trials per search retrained in full; 1 retrains only the winner).")
    restarts = scfg.get("restarts", 1)
    if not isinstance(restarts, int) or restarts < 1:
        raise HqrunError(f"study.restarts={restarts!r} must be an integer >= 1 (full trainings per "
                         "model with successive training seeds; the best on validation is kept).")
    for goal, cap in caps.items():
        if cap is not None and not (isinstance(cap, (int, float)) and cap > 0):
            raise HqrunError(f"study.max_cost.{goal}={cap!r} must be a positive number in the "
                             "goal's unit (pJ for energy, bits for bits) or null.")


def study_backends(cfg: DictConfig) -> list[str]:
    """The firmware backends every model is built with (``study.backends``, else
    ``firmware.backend``), first the report's main build."""
    given = cfg.study.get("backends")
    if given is None:
        return [str((cfg.get("firmware") or {}).get("backend") or "hls4ml")]
    return [str(b) for b in given]


def _check_backends(cfg: DictConfig) -> None:
    from hqrun.firmware.backends import backend_names

    backends = study_backends(cfg)
    known = backend_names()
    bad = [b for b in backends if b not in known]
    if not backends or bad or len(set(backends)) != len(backends):
        raise HqrunError(f"study.backends={backends!r} must list distinct firmware backends, "
                         f"each one of {', '.join(known)} (e.g. study.backends=[hls4ml,rtl]); "
                         + (f"{', '.join(bad)} is not one." if bad else "fix the list."))


def _class_names(models: list[tuple[str, Path]]) -> list[str]:
    for _, directory in models:
        metrics = directory / "metrics.json"
        if metrics.exists():
            auc = json.loads(metrics.read_text()).get("test", {}).get("roc_auc", {})
            if auc:
                return list(auc)
    return []


