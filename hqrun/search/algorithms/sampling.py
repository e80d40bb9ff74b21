"""Samplers that hand Ray Tune the whole budget at once: random, Bayesian (Optuna TPE), ASHA.

They differ only in Ray's search algorithm and scheduler: random draws (or configurations drawn
under the cost cap first), Optuna's TPE warm-started from the journal, and random draws with
ASHA's early stopping of weak trials.
"""

from __future__ import annotations

from typing import ClassVar

from hqrun.search.algorithms import SearchAlgorithm, register_algorithm


class _Sampler(SearchAlgorithm):
    searcher: ClassVar[str] = "random"
    scheduler: ClassVar[str | None] = None

    def run(self, run):  # noqa: ANN001, ANN201 - see SearchAlgorithm.run
        done = run.finished()
        progress = run.progress(run.cfg.max_trials, done)
        remaining = run.cfg.max_trials - len(done)
        points = None
        if remaining > 0 and run.cfg.goal.max_cost is not None:
            points = run.capped_points(remaining, run.seed + len(done),
                                       [r["config"] for r in run.journal.trials()])
            remaining = len(points)
        if remaining > 0:
            run.run_trials(remaining, progress, searcher=self.searcher, scheduler=self.scheduler,
                           previous=done, seed=run.seed + len(done), points=points)
        progress.close()
        return {}, None


@register_algorithm("random")
class RandomSearch(_Sampler):
    """Uniform random configurations (Ray's basic variant generator)."""

    supports_cap = True


@register_algorithm("bayesian")
class BayesianSearch(_Sampler):
    """Optuna's TPE, warm-started with the journal's finished trials."""

    searcher = "bayesian"


@register_algorithm("asha")
class AshaSearch(_Sampler):
    """Random configurations with ASHA stopping the weak ones early."""

    supports_cap = True
    scheduler = "asha"
