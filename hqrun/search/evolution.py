"""Regularized evolution (Real et al., AAAI 2019) over quantization configurations.

Why: the configurations worth having are rare and clustered. Under a tight cost cap most of the
jet model's feasible plans put 1-2 bit kernels next to 2-bit activations and train badly; the good
ones share a few choices (e.g. one wider kernel in front of binary layers, 4-bit activations
after them). Random sampling finds such a cluster by luck; evolution finds it and then explores
its neighbours: after ``population`` random trials, each new trial copies the best of
``tournament`` trials drawn from the last ``population`` finished ones and changes one of its
choices ("aging": old trials leave the pool, so one lucky early trial does not dominate).
Children that break the cost cap or were already tried are redrawn, never trained.

The functions here are plain Python on the journal's records; ``runner`` runs each batch of
children as one Ray Tune run, so trials of a batch train in parallel and resume works as for the
other algorithms (the journal holds every finished trial).
"""

from __future__ import annotations

import itertools
import random
from typing import Any, Callable, Mapping, Sequence

from hqrun.search.costcap import config_key, fresh_configs
from hqrun.search.journal import scored_trials
from hqrun.search.space import SearchSpace

def mutate(config: Mapping[str, Any], space: SearchSpace, rng: random.Random) -> dict:
    """A copy of ``config`` with one choice (that has alternatives) set to another option."""
    child = dict(config)
    open_choices = [c for c in space.choices if len(c.options) > 1]
    if not open_choices:
        return child
    choice = rng.choice(open_choices)
    child[choice.key] = rng.choice([o for o in choice.options if o != config.get(choice.key)])
    return child


def random_configs(space: SearchSpace, n: int, rng: random.Random,
                   tried: set[str]) -> list[dict]:
    """Up to ``n`` distinct uniformly drawn configurations not in ``tried`` (updated in place)."""
    return list(itertools.islice(fresh_configs(space, rng, tried, max_misses=1000 * n), n))


def children(space: SearchSpace, records: Sequence[Mapping[str, Any]], n: int,
             rng: random.Random, population: int, tournament: int, tried: set[str],
             accept: Callable[[dict], bool] | None = None, max_attempts: int | None = None
             ) -> list[dict]:
    """Up to ``n`` new configurations bred from the last ``population`` scored trials
    (``records`` in the order they were issued, so that breeding is reproducible).

    Each child: draw ``tournament`` trials from the pool, take the best-scoring one, mutate one
    choice. Children already in ``tried`` (updated in place) or refused by ``accept`` (the cost
    cap) are dropped and redrawn, up to ``max_attempts`` draws in all.
    """
    pool = scored_trials(records)[-population:]
    if not pool:
        return []
    out: list[dict] = []
    attempts = 0
    limit = max_attempts if max_attempts is not None else 200 * n
    while len(out) < n and attempts < limit:
        attempts += 1
        contenders = rng.sample(pool, min(tournament, len(pool)))
        parent = max(contenders, key=lambda r: (r["score"], r.get("accuracy") or 0.0))
        child = mutate(parent["config"], space, rng)
        key = config_key(child)
        if key in tried:
            continue
        tried.add(key)
        if accept is not None and not accept(child):
            continue
        out.append(child)
    return out
