"""Numbers of a search that must lie in a range: budgets, rates, caps, Ray resources.

Why a module of its own: the schema (:mod:`hqrun.search.config`) only checks types, so a zero
or negative budget used to reach Ray Tune or PyTorch (``search.ray.cpus_per_trial=0`` reserved
no CPU, ``search.goal.max_cost=-5`` admitted no configuration after minutes of pricing,
``search.asha.reduction_factor=1`` divided by zero inside Ray). Each is refused here, before the
float reference trains, with the key and the range in one sentence.
"""

from __future__ import annotations

from typing import Any, Mapping

from hqrun.errors import SearchError

#: key (dotted, below ``search``) -> (smallest allowed value, whether null is allowed, why)
_MINIMA: dict[str, tuple[float, bool, str]] = {
    "reference_epochs": (1, False, "the float reference trains at least one epoch"),
    "final_epochs": (1, False, "the winner is retrained at least one epoch"),
    "patience": (0, True, "0 turns early stopping off, null is AutoQKeras's default"),
    "retries": (0, False, "0 records a failed trial at once"),
    "train_samples": (1, True, "null uses every training row"),
    "ray.cpus_per_trial": (1, False, "each trial needs a CPU (also its torch threads)"),
    "ray.num_cpus": (1, True, "null lets the local Ray use every CPU"),
    "asha.grace_period": (1, False, "ASHA judges a trial after at least one epoch"),
    "asha.reduction_factor": (2, False, "ASHA keeps 1/reduction_factor of the trials per rung"),
    "bayesian.n_startup_trials": (0, False, "the random trials before TPE models the scores"),
}


def _get(cfg: Any, dotted: str) -> Any:
    node = cfg
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, Mapping) or hasattr(node, "get") \
            else getattr(node, part, None)
        if node is None:
            return None
    return node


def check_budgets(cfg: Any) -> None:
    """Refuse out-of-range numbers of the ``search`` config (one paragraph each)."""
    for key, (minimum, nullable, why) in _MINIMA.items():
        value = _get(cfg, key)
        if value is None:
            if nullable:
                continue
            raise SearchError(f"search.{key} must be set ({why}).")
        if float(value) < minimum:
            raise SearchError(f"search.{key}={value} must be at least {minimum:g}{' or null' if nullable else ''} "
                              f"({why}).")
    rate = _get(cfg, "learning_rate")
    if rate is not None and not float(rate) > 0:
        raise SearchError(f"search.learning_rate={rate} must be positive (e.g. 0.001, AutoQKeras's).")
    cap = _get(cfg, "goal.max_cost")
    if cap is not None and not float(cap) > 0:
        raise SearchError(f"search.goal.max_cost={cap} must be a positive cost in the goal's unit "
                          "(pJ for energy, bits, EBOPs), or null for no cap.")
