"""K search trials trained at once as one population (hqrun.train.population), through Lightning.

Each configuration is prepared exactly as a lone trial (:func:`hqrun.search.trial.prepare_trial`:
plan, model, float weights transferred, cost) and scored and reported per epoch by the same
scorer, so a configuration's reports and final metrics are those its lone trial would give up to
float reassociation. Only the training is shared: one Lightning Trainer runs the population.
A configuration that fails (cannot be built, NaN/inf) fails alone; the others go on. One the
population cannot batch (a quantizer outside its menu) is handed back as a
:class:`~hqrun.train.population.PopulationError`, untrained, for the caller to train alone.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from hqrun.search.trial import (Backend, TrialData, TrialSettings, lightning_splits,
                                lightning_trainer_settings, prepare_trial)


def run_population_trials(configs: Sequence[Mapping[str, Any]], space, backend: Backend, data: TrialData,
                          reference_state: Mapping[str, torch.Tensor] | None, settings: TrialSettings,
                          reports: Sequence[Callable[[dict], None]]) -> list[dict | BaseException]:
    """Train ``configs`` together; ``reports[k]`` gets configuration k's per-epoch metrics.

    Returns, per configuration, its last report, or the exception that failed it (a
    :class:`hqrun.search.trial.TrialFailed` or a build error the runner records as a failed
    trial), or the :class:`~hqrun.train.population.PopulationError` saying why it was not
    batched (not trained; nothing reported). Configurations whose models differ in shape (width
    search) train as separate populations, one per shape.
    """
    from hqrun.train.population import PopulationError, PopulationModel

    torch.set_num_threads(max(1, int(settings.threads)))
    out: list[dict | BaseException | None] = [None] * len(configs)
    prepared: dict[int, tuple] = {}
    for k, (config, report) in enumerate(zip(configs, reports)):
        torch.manual_seed(settings.seed)       # each member starts as its lone trial would
        try:
            member = prepare_trial(config, space, backend, reference_state, settings, report)
            PopulationModel([member[0]])          # can this member be batched at all?
        except PopulationError as err:
            out[k] = err
            continue
        except Exception as err:  # noqa: BLE001 - a configuration that cannot be built fails alone
            out[k] = err
            continue
        prepared[k] = member
    groups: dict[tuple, list[int]] = {}
    for k, (model, _, _) in prepared.items():
        groups.setdefault(_shape_key(model), []).append(k)
    for members in groups.values():
        for k, result in zip(members, _fit_group([prepared[k] for k in members], data, settings)):
            out[k] = result
    return out  # type: ignore[return-value]


def _shape_key(model: nn.Module) -> tuple:
    return tuple(tuple(p.shape) for p in model.parameters())


def _fit_group(prepared: Sequence[tuple], data: TrialData, settings: TrialSettings) -> list[dict | BaseException]:
    """One Lightning population of prepared members; each member's last report or its error."""
    from hqrun.train.population_runner import fit_population

    def member_epoch(k: int, row: dict, stop: bool) -> None:
        epoch = int(row["epoch"]) + 1  # Lightning counts epochs from 0, the trial reports from 1
        prepared[k][1](epoch, float(row["train_loss"]), float(row["val_acc"]), stop and epoch < settings.epochs)

    splits = lightning_splits(data)
    trainer = lightning_trainer_settings(settings)
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
