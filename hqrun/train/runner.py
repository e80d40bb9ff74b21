"""``fit_and_evaluate``: build (or take) a model, train it with Lightning, evaluate it.

This is the one training routine: ``hqrun train`` calls it with a run directory, the search calls
it per trial without one (no files, best weights kept in memory) and passes an ``epoch_callback``
to report each epoch to its scheduler. Seeding happens here, before the model is built, so the
same seed gives the same initial weights, the same batches and the same metrics.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from hqrun.errors import ConfigError

SCHEDULERS = ("plateau", "cosine", "none")
MONITORS = ("val_loss", "val_acc")


@dataclass
class FitResult:
    """What a training run produced."""

    model: nn.Module  # with the best weights loaded, in eval mode
    metrics: dict  # {"val": {...}, "test": {...}, "best_epoch", "epochs_run", "train_time_s", ...}
    history: list[dict] = field(default_factory=list)  # one row per epoch
    checkpoint: str | None = None  # best.ckpt path when a run dir was given
    test_probs: np.ndarray | None = None


def _get(cfg: Any, key: str, default=None):
    if cfg is None:
        return default
    if isinstance(cfg, dict) or hasattr(cfg, "get"):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def check_trainer_config(trainer_cfg: Any) -> None:
    """Refuse invalid choices up front (the dataclass schema checks types, this checks values)."""
    scheduler = str(_get(trainer_cfg, "scheduler", "plateau"))
    monitor = str(_get(trainer_cfg, "monitor", "val_loss"))
    if scheduler not in SCHEDULERS:
        raise ConfigError(f"trainer.scheduler={scheduler!r} is not valid; use one of {', '.join(SCHEDULERS)}.")
    if monitor not in MONITORS:
        raise ConfigError(f"trainer.monitor={monitor!r} is not valid; use one of {', '.join(MONITORS)}.")
    for key, minimum in (("max_epochs", 1), ("batch_size", 1), ("eval_batch_size", 1), ("patience", 0),
                         ("batches_per_step", 1)):
        value = int(_get(trainer_cfg, key, minimum))
        if value < minimum:
            raise ConfigError(f"trainer.{key}={value} must be at least {minimum}.")
    seed = _get(trainer_cfg, "seed", None)
    if seed is not None and not 0 <= int(seed) < 2**32:
        raise ConfigError(f"trainer.seed={seed} must be null or an integer in [0, 2**32).")
    if not float(_get(trainer_cfg, "lr", 1e-3)) > 0:
        raise ConfigError(f"trainer.lr={_get(trainer_cfg, 'lr')} must be positive.")
    progress = str(_get(trainer_cfg, "progress_bar", "auto")).lower()
    if progress not in ("auto", "true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"trainer.progress_bar={_get(trainer_cfg, 'progress_bar')!r} is not valid; "
                          "use auto (a bar when a person watches a terminal), true or false.")
    accelerator = str(_get(trainer_cfg, "accelerator", "cpu"))
    if accelerator not in ("cpu", "gpu", "cuda", "mps", "auto"):
        raise ConfigError(f"trainer.accelerator={accelerator!r} is not valid; use cpu (default), gpu or auto.")


def show_progress(setting: Any = "auto") -> bool:
    """Progress bar only for a person watching: stdout is a TTY and not under CI."""
    from hqrun.progress import wanted

    return wanted(setting)


def quiet_lightning() -> None:
    """Silence Lightning's banner lines and the warnings that do not apply to in-memory batches."""
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric",
                 "pytorch_lightning.utilities.rank_zero", "pytorch_lightning.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*smaller than the logging interval.*",
                    ".*LightningModule.*has parameters that were not used.*",
                    ".*Total length of .* across ranks is zero.*", ".*GPU available.*",
                    ".*TPU available.*", ".*`isinstance\\(treespec, LeafSpec\\)`.*",
                    ".*does not have a `__len__`.*", ".*Experiment logs directory .* exists and is not empty.*",
                    ".*overridden `transfer_batch_to_device`.*", ".*Checkpoint directory .* exists and is not empty.*"):
        warnings.filterwarnings("ignore", message=pattern)


def build_from_plan(model_cfg: Any, plan: Any) -> nn.Module:
    """``hqrun.models.build_model`` (imported lazily so plain-module callers need no models package)."""
    from hqrun.models import build_model

    return build_model(model_cfg, plan)


def load_initial_state(model: nn.Module, initial_state: Any) -> None:
    """Copy weights (a state dict, a module or a file) into ``model``; shapes must agree.

    Quantizers may add buffers the source lacks; those are left as built. A *parameter* the source
    lacks or a shape mismatch is an error: the transfer would silently start from random weights.
    """
    if initial_state is None:
        return
    if isinstance(initial_state, nn.Module):
        state = initial_state.state_dict()
    elif isinstance(initial_state, (str, os.PathLike)):
        from hqrun.modelfile import load_model_file

        state = load_model_file(initial_state, "checkpoint").state   # data only, never code
    else:
        state = initial_state
    params = dict(model.named_parameters())
    # Learned bit widths start from their initial values when the source has none (e.g. a
    # learned-bits training that starts from a float model's weights).
    from hqrun.models.state import learned_state_keys

    fresh = set(learned_state_keys(model))
    missing_params = [k for k in params if k not in state and k not in fresh]
    if missing_params:
        raise ConfigError(
            f"the initial weights lack the parameter(s) {missing_params[:6]}; they come from a "
            "model with a different layer structure. Transfer weights only between models built "
            "from the same model config."
        )
    own = model.state_dict()
    mismatched = [k for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    if mismatched:
        raise ConfigError(
            f"the initial weights do not fit: shape mismatch for {mismatched[:6]} (e.g. "
            f"{tuple(state[mismatched[0]].shape)} vs {tuple(own[mismatched[0]].shape)}). Width "
            "tuning changes shapes; train such models from scratch."
        )
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


@torch.no_grad()
def predict_proba(model: nn.Module, X: np.ndarray | torch.Tensor, batch_size: int = 16384) -> np.ndarray:
    """Softmax of the logits, in eval mode, in large batches."""
    model.eval()
    X = torch.as_tensor(X, dtype=torch.float32)
    parts = [torch.softmax(model(X[i : i + batch_size]), dim=1) for i in range(0, len(X), batch_size)]
    return torch.cat(parts).double().numpy() if parts else np.zeros((0, 0))


def fit_and_evaluate(
    splits: Any,
    trainer_cfg: Any,
    *,
    model: nn.Module | None = None,
    model_cfg: Any = None,
    plan: Any = None,
    seed: int = 0,
    run_dir: str | os.PathLike | None = None,
    initial_state: Any = None,
    epoch_callback: Callable[[dict], None] | None = None,
    callbacks: Sequence[Any] = (),
    threads: int | None = None,
    record: dict | None = None,
    evaluate_test: bool = True,
    penalty: Any = None,
    evaluate_val: bool = True,
) -> FitResult:
    """Train on ``splits`` (a :class:`hqrun.data.Splits`), keep the best epoch, evaluate.

    Either pass a built ``model`` or ``model_cfg`` + ``plan`` (built here, after seeding).
    ``initial_state`` (state dict, module or file) seeds the weights, e.g. the float reference
    a quantization-aware trial starts from. ``epoch_callback`` receives each epoch's row
    (``epoch, train_loss, val_loss, val_acc, lr``); raising from it stops training.
    With ``run_dir``, Lightning writes ``best.ckpt`` and CSV logs there.
    ``penalty``: a cost term for the loss (see ``ClassifierModule``); by default the plan's
    (``beta``: :class:`hqrun.models.penalty.EbopsPenalty`), none for a plan without ``beta``.
    A run whose training loss becomes non-finite stops and is marked ``diverged`` in the metrics.
    ``evaluate_val=False`` / ``evaluate_test=False`` skip the final metrics of that split (a
    search trial reads its epochs' rows instead: the validation pass and five ROC AUCs cost
    ~40 ms, 5 % of a lone jet trial).
    """
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

    from hqrun.train.datamodule import ArrayDataModule
    from hqrun.train.metrics import classification_metrics
    from hqrun.train.module import ClassifierModule

    check_trainer_config(trainer_cfg)
    scheduler = str(_get(trainer_cfg, "scheduler", "plateau"))
    monitor = str(_get(trainer_cfg, "monitor", "val_loss"))
    max_epochs = int(_get(trainer_cfg, "max_epochs", 30))
    if threads:
        torch.set_num_threads(int(threads))
    quiet_lightning()
    pl.seed_everything(int(seed), workers=False, verbose=False)
    if model is None:
        if model_cfg is None:
            raise ConfigError("fit_and_evaluate needs a model or a model config to build one from.")
        model = build_from_plan(model_cfg, plan)
    load_initial_state(model, initial_state)
    lr_scales = None
    if plan is not None:
        from hqrun.models import load_plan
        from hqrun.models.state import learned_state_keys

        loaded = load_plan(plan)
        penalty = penalty if penalty is not None else plan_penalty(model, loaded)
        if loaded.width_lr_scale != 1.0:
            lr_scales = dict.fromkeys(learned_state_keys(model), loaded.width_lr_scale)

    module = ClassifierModule(
        model,
        lr=float(_get(trainer_cfg, "lr", 1e-3)),
        weight_decay=float(_get(trainer_cfg, "weight_decay", 0.0)),
        scheduler=scheduler,
        plateau_factor=float(_get(trainer_cfg, "plateau_factor", 0.5)),
        plateau_patience=int(_get(trainer_cfg, "plateau_patience", 3)),
        min_lr=float(_get(trainer_cfg, "min_lr", 1e-5)),
        max_epochs=max_epochs,
        monitor=monitor,
        record=record or {},
        batch_size=int(_get(trainer_cfg, "batch_size", 1024)),
        penalty=penalty,
        lr_scales=lr_scales,
        compile=bool(_get(trainer_cfg, "compile", False)),
    )
    data = ArrayDataModule(splits, batch_size=int(_get(trainer_cfg, "batch_size", 1024)),
                           eval_batch_size=int(_get(trainer_cfg, "eval_batch_size", 16384)), seed=int(seed),
                           batches_per_step=int(_get(trainer_cfg, "batches_per_step", 8)))
    mode = "min" if monitor == "val_loss" else "max"
    start_epoch = 0
    if penalty is not None:  # compare the penalised score, once the beta schedule has settled
        from hqrun.train.module import SCORE_METRIC

        monitor, mode, start_epoch = SCORE_METRIC, "min", int(penalty.settled_epoch)
    cbs: list[Any] = list(callbacks)
    if _get(trainer_cfg, "early_stopping", True):
        cbs.append(_settled_early_stopping(start_epoch, monitor=monitor, mode=mode,
                                           patience=int(_get(trainer_cfg, "patience", 8)),
                                           min_delta=float(_get(trainer_cfg, "min_delta", 0.0))))
    if epoch_callback is not None:
        cbs.append(_EpochReporter(epoch_callback))
    if show_progress(_get(trainer_cfg, "progress_bar", "auto")):
        from hqrun.train.progress import epoch_bar

        name = plan.get("name") if isinstance(plan, dict) else getattr(plan, "name", None)
        cbs.append(epoch_bar(max_epochs, f"[train] {name or 'model'}"))
    checkpoint_cb = None
    logger: Any = False
    plugins: list[Any] = []
    if run_dir is not None:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        if _get(trainer_cfg, "checkpoint", True):
            checkpoint_cb = ModelCheckpoint(dirpath=run_dir, filename="best", monitor=monitor, mode=mode,
                                            save_top_k=1, enable_version_counter=False,
                                            auto_insert_metric_name=False)
            cbs.append(checkpoint_cb)
            from hqrun.train.checkpointio import AtomicCheckpointIO

            plugins.append(AtomicCheckpointIO())   # best.ckpt renamed into place, never torn
        if _get(trainer_cfg, "csv_log", True):
            from pytorch_lightning.loggers import CSVLogger

            logger = CSVLogger(save_dir=str(run_dir), name="", version="logs")
    trainer = pl.Trainer(
        max_epochs=max_epochs,
        accelerator=str(_get(trainer_cfg, "accelerator", "cpu")),
        devices=1,
        logger=logger,
        callbacks=cbs,
        plugins=plugins or None,
        enable_checkpointing=checkpoint_cb is not None,
        enable_progress_bar=False,   # hqrun's epoch bar instead (hqrun/train/progress.py)
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=bool(_get(trainer_cfg, "deterministic", True)),
        log_every_n_steps=1_000_000,
        default_root_dir=str(run_dir) if run_dir is not None else None,
    )
    started, started_cpu = time.perf_counter(), time.process_time()
    trainer.fit(module, datamodule=data)
    train_time = time.perf_counter() - started
    train_cpu = time.process_time() - started_cpu
    if module.best_state is not None:
        model.load_state_dict(module.best_state)
    model.eval()
    eval_bs = int(_get(trainer_cfg, "eval_batch_size", 16384))
    metrics: dict = {
        "best_epoch": module.best_epoch,        # index into history (0 = first epoch)
        "epochs_run": len(module.history),
        "max_epochs": max_epochs,
        # the best epoch was the last one the budget allowed: more epochs may still help
        "still_improving": bool(module.history) and len(module.history) == max_epochs
        and module.best_epoch == len(module.history) - 1,
        "train_time_s": round(train_time, 3),
        "train_cpu_s": round(train_cpu, 3),  # this process's CPU time: steadier on a shared machine
        "train_samples_per_s": round(len(splits.y_train) * len(module.history) / train_time, 1)
        if train_time > 0 else math.nan,
        "seed": int(seed),
    }
    if evaluate_val:
        val_probs = predict_proba(model, splits.X_val, eval_bs)
        metrics["val"] = classification_metrics(val_probs, splits.y_val, splits.class_names)
    test_probs = None
    if evaluate_test:
        test_probs = predict_proba(model, splits.X_test, eval_bs)
        metrics["test"] = classification_metrics(test_probs, splits.y_test, splits.class_names)
    if penalty is not None:
        metrics.update(penalty.report(model))
    if module.diverged or (module.history and not all(math.isfinite(r["train_loss"]) for r in module.history)):
        metrics["diverged"] = True
    return FitResult(model=model, metrics=metrics, history=list(module.history),
                     checkpoint=str(checkpoint_cb.best_model_path) if checkpoint_cb and checkpoint_cb.best_model_path else None,
                     test_probs=test_probs)


def plan_penalty(model: nn.Module, plan: Any) -> Any:
    """The plan's cost penalty for ``model`` (None when the plan sets no ``beta``)."""
    from hqrun.models import load_plan
    from hqrun.models.penalty import EbopsPenalty

    schedule = load_plan(plan).penalty
    return None if schedule is None else EbopsPenalty(model, schedule)


def _settled_early_stopping(start_epoch: int, **kwargs: Any) -> Any:
    """Lightning's EarlyStopping that starts watching at ``start_epoch`` (a beta ramp's end)."""
    from pytorch_lightning.callbacks import EarlyStopping

    class SettledEarlyStopping(EarlyStopping):
        def _run_early_stopping_check(self, trainer: Any) -> None:
            if trainer.current_epoch >= start_epoch:
                super()._run_early_stopping_check(trainer)

    return SettledEarlyStopping(**kwargs)


class _EpochReporter:
    """Adapter: call a plain function with each finished epoch's row."""

    def __new__(cls, fn: Callable[[dict], None]):
        import pytorch_lightning as pl

        class Reporter(pl.Callback):
            # on_train_epoch_end runs after this epoch's validation (and after the module's
            # own validation hook, which callbacks' validation hooks would precede).
            def on_train_epoch_end(self, trainer, module) -> None:
                if module.history and module.history[-1]["epoch"] == trainer.current_epoch:
                    fn(dict(module.history[-1]))

        return Reporter()
