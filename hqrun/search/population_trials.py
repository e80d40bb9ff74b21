"""K search trials trained at once as one population (hqrun.train.population), through Lightning.

Each configuration is prepared exactly as a lone trial (:func:`hqrun.search.trial.prepare_trial`:
plan, model, float weights transferred, cost) and scored and reported per epoch by the same
scorer, so a configuration's reports and final metrics are those its lone trial would give up to
float reassociation. Only the training is shared: one Lightning Trainer runs the population.
A configuration that fails (NaN/inf) fails alone; the others go on.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable, Mapping, Sequence

import torch

from hqrun.search.trial import Backend, TrialData, TrialSettings, prepare_trial


def run_population_trials(configs: Sequence[Mapping[str, Any]], space, backend: Backend, data: TrialData,
                          reference_state: Mapping[str, torch.Tensor] | None, settings: TrialSettings,
                          reports: Sequence[Callable[[dict], None]]) -> list[dict | BaseException]:
    """Train ``configs`` together; ``reports[k]`` gets configuration k's per-epoch metrics.

    Returns, per configuration, its last report, or the exception that failed it (a
    :class:`hqrun.search.trial.TrialFailed` the runner records as a failed trial).
    """
    from hqrun.train.population_runner import fit_population

    torch.set_num_threads(max(1, int(settings.threads)))
    torch.manual_seed(settings.seed)
    prepared = [prepare_trial(c, space, backend, reference_state, settings, r) for c, r in zip(configs, reports)]

    def member_epoch(k: int, row: dict, stop: bool) -> None:
        epoch = int(row["epoch"]) + 1  # Lightning counts epochs from 0, the trial reports from 1
        prepared[k][1](epoch, float(row["train_loss"]), float(row["val_acc"]), stop and epoch < settings.epochs)

    n_classes = int(max(int(data.train.y.max()), int(data.val.y.max())) + 1)
    splits = SimpleNamespace(
        X_train=data.train.x.numpy(), y_train=data.train.y.numpy(),
        X_val=data.val.x.numpy(), y_val=data.val.y.numpy(),
        X_test=data.val.x[:1].numpy(), y_test=data.val.y[:1].numpy(),
        class_names=[str(i) for i in range(n_classes)])
    trainer = {"max_epochs": settings.epochs, "batch_size": settings.batch_size,
               "lr": settings.learning_rate, "scheduler": "none",
               "early_stopping": settings.patience > 0, "patience": max(settings.patience, 1),
               "monitor": "val_loss", "progress_bar": "false", "deterministic": False}
    results = fit_population(splits, trainer, [p[0] for p in prepared], seed=settings.seed,
                             member_epoch_callback=member_epoch)
    out: list[dict | BaseException] = []
    for (_, _, last_report), result in zip(prepared, results):
        error = result.metrics.get("error")
        last = last_report()
        if error is None and not last:
            error = RuntimeError("no epoch was reported")
        out.append(error if error is not None else last)
    return out
