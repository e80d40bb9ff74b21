"""``hqrun train``: data + model + plan → trained model and a run directory that records it.

The run directory (Hydra's output dir) is the unit of record: ``config.yaml`` (resolved),
``metrics.json``, ``best.ckpt`` (Lightning) and ``model.pt`` (plain state dict of the best epoch),
``plan.yaml``, ``scaler.json`` (the firmware applies it to raw inputs), ``roc.png`` and the CSV
logs. Later commands (``hqrun cost run=…``, ``hqrun firmware run=…``) read it back.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hqrun.errors import ConfigError
from hqrun.rundir import output_dir

#: Model-config keys that must follow the data (filled from it when they disagree).
_DATA_KEYS = ("n_inputs", "input_shape", "n_classes")


def resolve_plan(cfg: Any):
    """The plan: ``plan=path/to/plan.yaml`` when given, else the ``quant`` config group."""
    from hqrun.models import load_plan

    plan_path = cfg.get("plan") if hasattr(cfg, "get") else None
    if plan_path:
        if Path(str(plan_path)).expanduser().is_dir():
            return load_plan(str(Path(str(plan_path)).expanduser()))   # says it is a directory
        if not Path(str(plan_path)).expanduser().is_file():
            raise ConfigError(
                f"plan={plan_path!r}: no such plan file. Pass the path of a plan YAML (e.g. the "
                "winner.yaml a search wrote), or choose a packaged scheme with quant=float|q6|q<n>."
            )
        return load_plan(str(Path(str(plan_path)).expanduser()))
    return load_plan(cfg.get("quant"))


def initial_weights(checkpoint: Any) -> Path | None:
    """``checkpoint=`` as starting weights: a ``model.pt``/``best.ckpt`` file or a train run dir.

    This is how quantization-aware training starts from a trained float model:
    ``hqrun train quant=q6 checkpoint=runs/train/<float run>``.
    """
    if not checkpoint:
        return None
    path = Path(str(checkpoint)).expanduser()
    if path.is_dir():
        for name in ("model.pt", "best.ckpt"):
            if (path / name).is_file():
                return path / name
        raise ConfigError(f"checkpoint={checkpoint!r}: the directory holds no model.pt or best.ckpt "
                          "(pass a run directory written by `hqrun train`, or the file itself).")
    if not path.is_file():
        raise ConfigError(f"checkpoint={checkpoint!r}: no such file or directory; pass a model.pt, "
                          "a best.ckpt or the run directory that holds them.")
    return path


def fit_model_to_data(model_cfg: dict, splits: Any) -> tuple[dict, list[str]]:
    """Set the model's input size and class count from the data; list what changed.

    The jet model's YAML says 16 inputs and 5 classes; a user's file with other features or
    classes should still train, and the change is reported rather than failing on a shape error.
    """
    model_cfg = dict(model_cfg)
    wanted = {"n_inputs": int(splits.input_shape[0]) if len(splits.input_shape) == 1 else None,
              "input_shape": list(splits.input_shape) if len(splits.input_shape) > 1 else None,
              "n_classes": int(splits.n_classes)}
    changed = []
    for key in _DATA_KEYS:
        if key in model_cfg and wanted[key] is not None:
            current = list(model_cfg[key]) if isinstance(model_cfg[key], (list, tuple)) else model_cfg[key]
            if current != wanted[key]:
                changed.append(f"model.{key}: {current} -> {wanted[key]}")
                model_cfg[key] = wanted[key]
    if len(splits.input_shape) > 1 and "input_shape" not in model_cfg:
        raise ConfigError(
            f"the data are images of shape {list(splits.input_shape)} but model "
            f"{model_cfg.get('name')!r} takes flat feature vectors; use model=cnn for image data."
        )
    if len(splits.input_shape) == 1 and "input_shape" in model_cfg and "n_inputs" not in model_cfg:
        raise ConfigError(
            f"model {model_cfg.get('name')!r} takes images but the data are {splits.input_shape[0]} "
            "features per row; use model=jet_dnn or model=mlp for tabular data."
        )
    return model_cfg, changed


def training_seed(cfg: Any) -> int:
    """Seed of the initial weights and batch order: ``trainer.seed``, else the run's ``seed``
    (which alone draws the data split)."""
    seed = cfg.trainer.get("seed")
    return int(cfg.get("seed", 0)) if seed is None else int(seed)


def run(cfg: Any) -> dict:
    """Train one model as configured and write the run directory. Returns the metrics.

    Every input (settings, plan, starting weights, data) is read and checked before the run
    directory is created, so a bad input leaves nothing behind; the directory is claimed first
    (:func:`hqrun.rundir.claim`), so a finished run is never written over.
    """
    import torch
    from omegaconf import OmegaConf

    from hqrun import atomic
    from hqrun.data import load_dataset
    from hqrun.data.datasets import check_data_config
    from hqrun.modelfile import load_model_file, save_model_file
    from hqrun.rundir import claimed_dir
    from hqrun.train.plots import plot_roc
    from hqrun.train.runner import build_from_plan, check_trainer_config, fit_and_evaluate, load_initial_state

    check_data_config(cfg.data)  # every value checked before any file is read
    check_trainer_config(cfg.trainer)
    initial_path = initial_weights(cfg.get("checkpoint"))  # a wrong path fails now, not after loading data
    threads = int(cfg.get("threads", 1) or 1)
    torch.set_num_threads(threads)
    seed = int(cfg.get("seed", 0))
    with claimed_dir(output_dir(cfg, "train"), "train", what="the training run directory") as claimed:
        run_dir = claimed.path

        plan = resolve_plan(cfg)  # a bad plan fails before the data are read
        # Starting weights are read as data (weights_only) and checked against the model now.
        initial_state = load_model_file(initial_path, "checkpoint").state if initial_path else None
        splits = load_dataset(cfg.data, seed)
        model_cfg, changed = fit_model_to_data(OmegaConf.to_container(cfg.model, resolve=True), splits)
        probe = build_from_plan(model_cfg, plan)   # the plan fits the model, the weights fit both
        load_initial_state(probe, initial_state)
        del probe
        for line in changed:
            print(f"hqrun train: {line} (from the data)")
        summary = splits.summary()
        data_name = cfg.data.get("path") or cfg.data.get("name", "?")   # the file when one is given
        print(f"hqrun train: data {data_name} ({summary['n_train']} train / {summary['n_val']} "
              f"val / {summary['n_test']} test), model {model_cfg.get('name')}, plan {plan.name}, run dir {run_dir}")

        claimed.create()
        resolved = OmegaConf.to_container(cfg, resolve=True)
        resolved["model"] = model_cfg
        atomic.write_text(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(resolved)))
        plan.to_yaml(run_dir / "plan.yaml")
        splits.scaler.save(run_dir / "scaler.json")

        record = {"model": model_cfg, "plan": plan.to_dict(), "class_names": list(splits.class_names),
                  "feature_names": list(splits.feature_names)[:64], "data": str(cfg.data.get("name"))}
        result = fit_and_evaluate(splits, cfg.trainer, model_cfg=model_cfg, plan=plan, seed=training_seed(cfg),
                                  run_dir=run_dir, threads=threads, record=record, initial_state=initial_state)
        save_model_file(run_dir / "model.pt", result.model.state_dict(), record)
        if cfg.trainer.get("roc_plot", True) and result.test_probs is not None:
            plot_roc(result.test_probs, splits.y_test, splits.class_names, run_dir / "roc.png",
                     title=f"ROC, test split ({model_cfg.get('name')}, {plan.name})")
        metrics = {"model": model_cfg.get("name"), "plan": plan.name, "data": summary,
                   **result.metrics, "history": result.history,
                   "checkpoint": Path(result.checkpoint).name if result.checkpoint else None}
        if cfg.get("cost") is not None:  # the trained model's deployed cost (one cost per model)
            from hqrun.cost.deployed import deployed_cost

            deployed_cost(result.model, cfg.cost, cfg.get("firmware")).to_json(run_dir / "cost.json")
        # metrics.json last: its presence marks a finished training (hqrun.rundir, the study)
        atomic.write_json(run_dir / "metrics.json", _json_safe(metrics), indent=1)
        test = result.metrics["test"]
        aucs = ", ".join(f"{k} {v:.3f}" for k, v in test["roc_auc"].items())
        print(f"hqrun train: best epoch {result.metrics['best_epoch'] + 1} of "
              f"{result.metrics['epochs_run']}; test accuracy {test['accuracy']:.4f}; ROC AUC {aucs}")
        if "ebops" in result.metrics:  # a plan with a cost penalty (learned bit widths)
            print(f"hqrun train: {result.metrics['ebops']:,.0f} EBOPs, {result.metrics['pruned_weights']} "
                  f"of {result.metrics['weights']} weights pruned")
        if result.metrics.get("diverged"):
            print("hqrun train: the training loss became non-finite; training stopped and the best "
                  "earlier epoch was kept (metrics.json: diverged).")
        if result.metrics.get("still_improving"):
            print(f"hqrun train: the last epoch was the best: still improving when "
                  f"trainer.max_epochs={result.metrics['max_epochs']} ended it; more epochs may help")
        print(f"hqrun train: wrote {run_dir}")
        if not cfg.get("out_dir"):   # a study prints its own next steps
            _print_next(run_dir, result.model, plan.name)
        return metrics


def _print_next(run_dir: Path, model: Any, plan_name: str) -> None:
    """The next commands that work on this run: firmware only for a model the firmware accepts
    (a float model gets quantization-aware training from its weights instead)."""
    from hqrun.firmware.convert import precheck
    from hqrun.hints import Hint, cost_hint, firmware_hint, hint_word, next_line, trained_run

    hints = [cost_hint(run_dir)]
    if not precheck(model):
        hints.insert(0, firmware_hint(run_dir, _backend_needed(model)))
    elif plan_name == "float":
        model_file = trained_run(run_dir) or run_dir / "model.pt"
        hints.insert(0, Hint(f"hqrun train quant=q6 checkpoint={hint_word(run_dir)}", (model_file,)))
    line = next_line(hints, "hqrun train: ")
    if line:
        print(line)


def _backend_needed(model: Any) -> str | None:
    """None when the default firmware backend (hls4ml) takes the model, else ``"rtl"`` when
    that one does (per-element learned activation formats, which hls4ml refuses)."""
    from hqrun.errors import FirmwareError, HqrunError
    from hqrun.firmware import build_ir, get_backend

    try:
        ir = build_ir(model, tuple(model.input_shape))
    except HqrunError:  # the firmware command will say what is wrong
        return None
    try:
        get_backend("hls4ml").check(ir, None)
    except FirmwareError:
        return "rtl"
    return None


def _json_safe(obj: Any) -> Any:
    """NaN/inf → None so metrics.json is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj
