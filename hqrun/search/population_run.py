"""What one population Ray trial does: train its member configurations, batched where possible.

The members go to :func:`hqrun.search.population_trials.run_population_trials` (one Lightning
population). The driver hands configurations the population cannot batch (a quantizer outside
its menu: po2, binary, ternary, ``alpha="auto_po2"``...) out as lone Ray trials already
(:func:`batch_refusal`); any member still refused here is trained as a lone trial, after the
population, in the same worker, so the search never fails for it. A member that failed in the population before
reporting any epoch is retried as a lone trial ``retries`` times, as a lone Ray trial would be;
one that failed later is not (its epochs were seen). The outcome of each member is what a lone
trial's final Ray result would be — its last epoch's metrics or
:func:`hqrun.search.trial.failure_metrics` — plus two keys the driver reads and the journal does
not keep: ``batched`` (trained in the population) and ``fallback`` (why not, when not).
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import torch

from hqrun.search.trial import (Backend, TrialData, TrialSettings, failure_metrics,
                                run_trial_with_retries)


def train_population(members: Sequence[Mapping[str, Any]], space, backend: Backend, data: TrialData,
                     reference_state: Mapping[str, torch.Tensor] | None, settings: TrialSettings,
                     retries: int) -> list[dict]:
    """Train ``members``; one outcome per member, in order (see the module docstring).

    A batched member's ``trial_time`` is its share of the population's wall time (the wall time
    divided by the members trained together), so trial-epochs per hour summed from the journal
    count each second once.
    """
    from hqrun.search.population_trials import run_population_trials
    from hqrun.train.population import PopulationError

    rows: list[list[dict]] = [[] for _ in members]
    started = time.perf_counter()
    results = run_population_trials(members, space, backend, data, reference_state, settings,
                                    [r.append for r in rows])
    wall = time.perf_counter() - started
    batched = [k for k, r in enumerate(results) if not isinstance(r, PopulationError)]
    share = wall / max(len(batched), 1)
    outcomes: list[dict] = []
    for k, (config, result) in enumerate(zip(members, results)):
        if isinstance(result, PopulationError):
            lone = run_trial_with_retries(config, space, backend, data, reference_state, settings,
                                          _ignore, retries)
            outcomes.append({**lone, "batched": 0, "fallback": str(result)})
        elif isinstance(result, BaseException):
            outcomes.append({**_after_failure(config, result, rows[k], space, backend, data,
                                              reference_state, settings, retries), "batched": 1})
        else:
            outcomes.append({**result, "trial_time": share, "batched": 1})
    return outcomes


def batch_refusal(config: Mapping[str, Any], space, backend: Backend) -> str | None:
    """Why ``config`` cannot train in a population (None: it can), from its built model alone.

    The driver asks before handing out a population, so that such configurations run as their
    own lone Ray trials, in parallel, instead of one after the other inside a population's trial.
    A model that cannot even be built is left to its lone trial, which records the error.
    """
    from hqrun.train.population import PopulationError, PopulationModel

    try:
        PopulationModel([backend.build(space.plan(config), space.widths(config))])
    except PopulationError as err:
        return str(err)
    except Exception as err:  # noqa: BLE001 - the lone trial reports build errors properly
        return f"{type(err).__name__}: {err}"
    return None


def _after_failure(config: Mapping[str, Any], error: BaseException, rows: list[dict], space,
                   backend: Backend, data: TrialData, reference_state: Any, settings: TrialSettings,
                   retries: int) -> dict:
    """A member that failed in the population: retried alone when it reported nothing yet."""
    if rows or retries < 1:
        return failure_metrics(error, len(rows), 1)
    lone = run_trial_with_retries(config, space, backend, data, reference_state, settings, _ignore,
                                  retries - 1)
    if lone.get("failed"):
        lone["attempts"] = int(lone.get("attempts", 1)) + 1
    return lone


def _ignore(metrics: dict) -> None:
    """Lone fallbacks inside a population trial report once, with the population's result."""
