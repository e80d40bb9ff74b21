"""The study's learned-bit-width family: a β sweep beside the AutoQ searches, and its models.

Why here and not in the AutoQ steps: the AutoQ searches choose plans that the study then
retrains, while a β sweep (``search.algorithm=beta``) ends with trained models, its candidates.
So the study runs the sweep into ``search_learned/`` with the settings of ``search=beta``
(changed by ``study.learned.search``), picks per EBOPs budget (``study.learned.budgets``) the
candidate with the best *validation* accuracy at or under it, and copies its weights, as
trained, into a model directory (``LB3k``, ``LB12k``, ...) with the same files a trained model
has: metrics.json (validation and test metrics), cost.json (deployed cost), plan.yaml, model.pt.
From there the firmware step and the report treat it like every other model, and the sweep's
front goes on the report's figure in an EBOPs column.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict

from hqrun import atomic
from hqrun.errors import HqrunError

__all__ = ["LEARNED_GOAL", "learned_enabled", "budget_label", "beta_search_config",
           "pick_candidates", "learned_search_step", "learned_model_step", "check_learned"]

#: The report column (goal) the learned front and models are compared in.
LEARNED_GOAL = "ebops"
SEARCH_DIR = "search_learned"


def _settings(cfg: Any) -> dict:
    node = (cfg.study.get("learned") if hasattr(cfg.study, "get") else None) or {}
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)


def learned_enabled(cfg: Any) -> bool:
    return bool(_settings(cfg).get("enabled", False))


def budget_label(budget: float) -> str:
    """``3000`` -> ``LB3k``, ``12500`` -> ``LB12.5k``, ``800`` -> ``LB800``: the model's name."""
    b = float(budget)
    text = f"{b / 1000:.12g}k" if b >= 1000 else f"{b:.12g}"
    return "LB" + text


def check_learned(cfg: Any) -> None:
    """Refuse study.learned settings that would only fail after the baselines have trained."""
    s = _settings(cfg)
    if not s.get("enabled", False):
        return
    budgets = s.get("budgets") or []
    if not budgets or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and b > 0
                              for b in budgets):
        raise HqrunError(f"study.learned.budgets={budgets!r} must list one or more EBOPs levels "
                         "> 0 (per level, the most accurate learned-bits candidate at or under it "
                         "becomes a model), e.g. study.learned.budgets=[3000,12000].")
    if LEARNED_GOAL in [str(g) for g in cfg.study.goals]:
        raise HqrunError("study.goals includes ebops, whose column of the report the learned-bits "
                         "front uses: drop ebops from study.goals, or set "
                         "study.learned.enabled=false.")
    from hqrun.search.runner import check_config

    check_config(beta_search_config(cfg))      # the sweep's own settings, one paragraph each


def beta_search_config(cfg: Any) -> DictConfig:
    """The sweep's search settings: conf/search/beta.yaml with its plan (conf/quant/learned.yaml)
    and trainer (conf/trainer/learned.yaml), the study's Ray settings and seed, then
    ``study.learned.search`` on top."""
    from hqrun.search.config import SearchConfig

    conf = Path(__import__("hqrun.conf", fromlist=["_"]).__file__).parent
    read = lambda *p: yaml.safe_load((conf.joinpath(*p)).read_text())  # noqa: E731
    node = OmegaConf.structured(SearchConfig)
    node.merge_with({k: v for k, v in read("search", "beta.yaml").items() if k != "defaults"})
    node.beta.plan = read("quant", "learned.yaml")
    node.beta.trainer = read("trainer", "learned.yaml")
    search = cfg.get("search") or {}
    if search.get("ray") is not None:    # the machine's Ray settings, as the AutoQ searches'
        node.merge_with({"ray": search.get("ray")})
    node.progress = bool(search.get("progress", True))
    node.merge_with(_settings(cfg).get("search") or {})
    return node


def learned_search_step(cfg: DictConfig, out_dir: Path) -> None:
    """Run (or resume) the β sweep into ``out_dir`` (skipped once it finished)."""
    if (out_dir / "search_summary.json").exists():
        print(f"[study] {out_dir.name}: already finished, skipped")
        return
    from hqrun.search.command import run as search

    job = copy.deepcopy(cfg)
    with open_dict(job):
        job.command = "search"
        job.search = beta_search_config(cfg)
        job.search.run_dir = str(out_dir)
    search(job)


def pick_candidates(records: list[dict], budgets: list[float]) -> list[tuple[float, dict]]:
    """Per budget, the candidate with the best validation accuracy at or under it (cheaper on
    a tie); budgets no candidate fits are left out."""
    ok = [r for r in records if r.get("status") == "ok" and r.get("model")
          and r.get("accuracy") is not None and r.get("cost") is not None]
    out = []
    for budget in budgets:
        fits = [r for r in ok if float(r["cost"]) <= float(budget)]
        if fits:
            out.append((float(budget), max(fits, key=lambda r: (r["accuracy"], -r["cost"]))))
    return out


def learned_model_step(cfg: DictConfig, search_dir: Path, record: dict, out_dir: Path) -> dict:
    """Copy one candidate into ``out_dir`` as a trained model: weights, plan, metrics on the
    study's validation and test splits, deployed cost (skipped when already done)."""
    done = out_dir / "metrics.json"
    if done.exists() and (out_dir / "model.pt").exists():
        print(f"[study] {out_dir.name}: already taken from the sweep, skipped")
        return json.loads(done.read_text())
    from hqrun.data import load_dataset
    from hqrun.models import build_model
    from hqrun.search.candidate_dirs import write_candidate_dir
    from hqrun.train.metrics import classification_metrics
    from hqrun.train.runner import predict_proba

    write_candidate_dir(search_dir, record, out_dir, metrics_file=False)
    model_cfg = yaml.safe_load((search_dir / "config.yaml").read_text())["model"]
    from hqrun.modelfile import load_model_file

    loaded = load_model_file(out_dir / "model.pt", "learned-bits candidate")
    model = build_model(model_cfg, loaded.record["plan"])
    model.load_state_dict(loaded.state)
    model.eval()
    splits = load_dataset(cfg.data, int(cfg.get("seed", 0)))
    epoch = int((record.get("config") or {}).get("epoch") or 0)
    metrics = {
        "model": model_cfg.get("name"), "plan": out_dir.name, "source": record["model"],
        "trial_id": record["trial_id"], "beta": record.get("beta"),
        "val": classification_metrics(predict_proba(model, splits.X_val), splits.y_val,
                                      splits.class_names),
        "test": classification_metrics(predict_proba(model, splits.X_test), splits.y_test,
                                       splits.class_names),
        "best_epoch": epoch - 1, "epochs_run": record.get("epochs"),
        "max_epochs": record.get("epochs"), "still_improving": False,
        "search_ebops": record.get("cost")}
    from hqrun.cost.deployed import deployed_cost

    deployed_cost(model, cfg.get("cost"), cfg.get("firmware")).to_json(out_dir / "cost.json")
    atomic.write_json(done, metrics, default=str)     # last: marks the model as finished
    return metrics
