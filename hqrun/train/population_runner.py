"""``fit_population``: train K member models of one architecture at once, with Lightning.

The counterpart of :func:`hqrun.train.runner.fit_and_evaluate` for a population (see
:mod:`hqrun.train.population`): same trainer config keys, same data module and batches (so a
member sees exactly the batches it would see alone with the same seed), one
:class:`~hqrun.train.runner.FitResult` per member with that member's best weights loaded into
its own model, its per-epoch history and its validation (and optionally test) metrics.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

from torch import nn

from hqrun.train.population import PopulationError, PopulationModel, PopulationModule
from hqrun.train.runner import FitResult, _get, check_trainer_config, predict_proba, quiet_lightning


def fit_population(splits: Any, trainer_cfg: Any, members: Sequence[nn.Module], seed: int = 0,
                   evaluate_test: bool = False, callbacks: Sequence[Any] = (),
                   member_epoch_callback: Callable[[int, dict, bool], None] | None = None) -> list[FitResult]:
    """Train ``members`` (built, initialised models) together; one result per member, in order.

    ``member_epoch_callback(k, row, stopping)`` sees each member's epochs; an exception from it
    fails member k only (``metrics["error"]`` holds it, its model keeps its best weights).
    Training time is shared: each result's ``train_time_s`` is the population's wall time divided
    by K, ``population_size`` and ``population_train_time_s`` say how it was obtained.
    """
    import pytorch_lightning as pl

    from hqrun.train.datamodule import ArrayDataModule
    from hqrun.train.metrics import classification_metrics

    check_trainer_config(trainer_cfg)
    if str(_get(trainer_cfg, "monitor", "val_loss")) != "val_loss":
        raise PopulationError("population training monitors val_loss only; set trainer.monitor=val_loss "
                              "or search.population=1.")
    quiet_lightning()
    pl.seed_everything(int(seed), workers=False, verbose=False)
    max_epochs = int(_get(trainer_cfg, "max_epochs", 30))
    batch_size = int(_get(trainer_cfg, "batch_size", 1024))
    population = PopulationModel(members)
    module = PopulationModule(
        population, lr=float(_get(trainer_cfg, "lr", 1e-3)),
        scheduler=str(_get(trainer_cfg, "scheduler", "plateau")),
        plateau_factor=float(_get(trainer_cfg, "plateau_factor", 0.5)),
        plateau_patience=int(_get(trainer_cfg, "plateau_patience", 3)),
        min_lr=float(_get(trainer_cfg, "min_lr", 1e-5)),
        early_stopping=bool(_get(trainer_cfg, "early_stopping", True)),
        patience=int(_get(trainer_cfg, "patience", 10)), min_delta=float(_get(trainer_cfg, "min_delta", 0.0)),
        batch_size=batch_size, max_epochs=max_epochs, member_epoch_callback=member_epoch_callback)
    data = ArrayDataModule(splits, batch_size=batch_size,
                           eval_batch_size=int(_get(trainer_cfg, "eval_batch_size", 16384)), seed=int(seed),
                           batches_per_step=int(_get(trainer_cfg, "batches_per_step", 8)))
    trainer = pl.Trainer(max_epochs=max_epochs, accelerator=str(_get(trainer_cfg, "accelerator", "cpu")),
                         devices=1, logger=False, callbacks=list(callbacks), enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         deterministic=bool(_get(trainer_cfg, "deterministic", True)),
                         log_every_n_steps=1_000_000)
    started = time.perf_counter()
    trainer.fit(module, datamodule=data)
    wall = time.perf_counter() - started
    eval_bs = int(_get(trainer_cfg, "eval_batch_size", 16384))
    results = []
    k_total = population.size
    for k, model in enumerate(members):
        best = module.member_best_state[k]
        if best is not None:
            for p_solo, p_best in zip(model.parameters(), best):
                p_solo.data.copy_(p_best)
        else:
            population.load_member_into(k, model)
        model.eval()
        history = module.member_history[k]
        epochs = len(history)
        metrics: dict = {
            "best_epoch": module.member_best_epoch[k], "epochs_run": epochs, "max_epochs": max_epochs,
            "still_improving": epochs == max_epochs and module.member_best_epoch[k] == epochs - 1,
            "train_time_s": round(wall / k_total, 3), "population_size": k_total,
            "population_train_time_s": round(wall, 3), "seed": int(seed),
        }
        metrics["val"] = classification_metrics(predict_proba(model, splits.X_val, eval_bs), splits.y_val,
                                                splits.class_names)
        test_probs = None
        if evaluate_test:
            test_probs = predict_proba(model, splits.X_test, eval_bs)
            metrics["test"] = classification_metrics(test_probs, splits.y_test, splits.class_names)
        if module.member_errors[k] is not None:
            metrics["error"] = module.member_errors[k]
        if history and not all(math.isfinite(r["train_loss"]) for r in history):
            metrics["diverged"] = True
        results.append(FitResult(model=model, metrics=metrics, history=list(history), test_probs=test_probs))
    return results
