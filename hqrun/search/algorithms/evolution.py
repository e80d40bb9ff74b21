"""Regularized evolution as a search algorithm: a random (or cost-capped) population, then batches
of mutated tournament winners (the breeding itself is :mod:`hqrun.search.evolution`), each batch
one Ray Tune run; resumable from the journal, reproducible from the seed (breeding follows the
order trials were issued, not the order they finished)."""

from __future__ import annotations

import random
from typing import Any, Mapping

from hqrun.errors import SearchError
from hqrun.search.algorithms import SearchAlgorithm, register_algorithm

__all__ = ["EvolutionSearch", "issue_order"]


def issue_order(record: Mapping[str, Any]) -> tuple:
    """Sort key: the order trials were handed to Ray (Tuner run, then Ray's trial index).

    The journal is in finishing order, which depends on timing when trials run in parallel;
    breeding from issue order makes an evolution search reproducible from its seed.
    """
    from hqrun.search.journal import member_index

    session, _, ray_id = str(record.get("trial_id", "")).rpartition("-")
    ray_id, member = member_index(ray_id)     # population members in the order they were asked
    index = ray_id.rsplit("_", 1)[-1]
    return (session, int(index) if index.isdigit() else -1, member, ray_id)


@register_algorithm("evolution")
class EvolutionSearch(SearchAlgorithm):
    """Regularized evolution (Real et al., AAAI 2019); see :mod:`hqrun.search.evolution`."""

    supports_cap = True

    def validate(self, cfg):  # noqa: ANN001, ANN201
        ecfg = cfg.evolution
        for key in ("population", "tournament", "batch"):
            if int(getattr(ecfg, key)) < 1:
                raise SearchError(f"search.evolution.{key}={getattr(ecfg, key)} must be >= 1.")

    def fingerprint(self, cfg):  # noqa: ANN001, ANN201
        return {"evolution": {k: getattr(cfg.evolution, k) for k in ("population", "tournament", "batch")}}

    def run(self, run):  # noqa: ANN001, ANN201
        from hqrun.search.costcap import Pricer, config_key
        from hqrun.search.evolution import children, random_configs

        cfg, space, goal = run.cfg, run.space, run.goal
        ecfg = cfg.evolution
        population, tournament, batch = int(ecfg.population), int(ecfg.tournament), int(ecfg.batch)
        max_trials, cap = int(cfg.max_trials), cfg.goal.max_cost
        pricer = Pricer(space, run.backend, goal, run.reference.state)
        accept = None if cap is None else (lambda c: pricer(c) <= float(cap))
        done = run.finished()
        progress = run.progress(max_trials, done)
        while len(done) < max_trials:
            records = sorted(run.journal.trials(), key=issue_order)
            tried = {config_key(r["config"]) for r in records}
            rng = random.Random(run.seed + len(done))
            want = max_trials - len(done)
            if len(done) < population:
                n = min(want, population - len(done))
                points = (run.capped_points(n, run.seed + len(done), [r["config"] for r in records])
                          if cap is not None else random_configs(space, n, rng, tried))
            else:
                # search.population trains K configurations per Ray trial: a round of `batch`
                # Ray trials then breeds batch x K children
                points = children(space, records, min(want, batch * int(cfg.population)), rng,
                                  population, tournament, tried, accept)
            if not points:
                print(f"[search] evolution: no untried configuration left to breed after "
                      f"{len(done)} trials")
                break
            run.run_trials(len(points), progress, previous=done, seed=run.seed + len(done),
                           points=points)
            before, done = len(done), run.finished()
            if len(done) == before:
                raise SearchError(f"a round of {len(points)} trials finished none (see "
                                  f"{run.run_dir}/ray for Ray's errors); rerun the same command to "
                                  "resume.")
        progress.close()
        return {}, None
