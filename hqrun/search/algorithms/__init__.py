"""Search algorithms, registered by name behind one interface.

Why a registry: the runner (``hqrun.search.runner``) is Ray plumbing and journaling only; what to
train next — random draws, Optuna's TPE, ASHA's early stopping, AutoQKeras's blocks, regularized
evolution, a learned-width β sweep — is the algorithm's business. An algorithm is one class
deriving from :class:`SearchAlgorithm`, registered with :func:`register_algorithm`; it receives a
:class:`~hqrun.search.runner.SearchRun` (the parsed config, space, journal, reference and a
``run_trials`` method that hands configurations to Ray) and decides. ``search.algorithm=<name>``
picks it; nothing else changes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from hqrun.errors import SearchError

if TYPE_CHECKING:  # pragma: no cover
    from hqrun.search.config import SearchConfig
    from hqrun.search.runner import SearchRun
    from hqrun.search.space import SearchSpace

__all__ = ["SearchAlgorithm", "register_algorithm", "get_algorithm", "algorithm_names"]


class SearchAlgorithm:
    """Base of every search algorithm (the defaults suit a plain sampler)."""

    #: ``search.algorithm`` value; set by :func:`register_algorithm`.
    name: ClassVar[str] = ""
    #: Whether configurations can be drawn under ``search.goal.max_cost`` before training.
    supports_cap: ClassVar[bool] = False

    def validate(self, cfg: "SearchConfig") -> None:
        """Refuse this algorithm's own bad settings (SearchError), before any work."""

    def check_space(self, cfg: "SearchConfig", space: "SearchSpace") -> None:
        """Refuse settings that contradict the space (e.g. block regexes), before any work."""

    def fingerprint(self, cfg: "SearchConfig") -> dict[str, Any]:
        """Settings beyond the common ones that make two runs the same search (resume check)."""
        return {}

    def run(self, run: "SearchRun") -> tuple[dict, int | None]:
        """Run (or resume) the trials; return the frozen assignment and the final block index
        (both empty/None except for block-wise algorithms)."""
        raise NotImplementedError

    def write_artefacts(self, outcome: Any, written: dict, cfg: Any) -> dict:
        """Artefacts beyond the common ones (trials.csv, pareto.png, winner.yaml, front/),
        written after them; ``written`` is what :func:`hqrun.search.results.write_results`
        returned. Default: none."""
        return {}


_REGISTRY: dict[str, type[SearchAlgorithm]] = {}

#: Algorithms shipped with hqrun, imported on first use.
_BUILT_IN = {"random": "sampling", "bayesian": "sampling", "asha": "sampling",
             "evolution": "evolution", "blocks": "blocks", "beta": "beta"}


def register_algorithm(name: str) -> Callable[[type[SearchAlgorithm]], type[SearchAlgorithm]]:
    """Class decorator: ``search.algorithm=name`` runs this algorithm."""

    def add(cls: type[SearchAlgorithm]) -> type[SearchAlgorithm]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return add


def algorithm_names() -> list[str]:
    """Every algorithm a user can choose (registered or shipped)."""
    return sorted(set(_REGISTRY) | set(_BUILT_IN))


def get_algorithm(name: Any) -> SearchAlgorithm:
    """A fresh instance of algorithm ``name``, or one paragraph listing the valid names."""
    name = str(name)
    if name not in _REGISTRY and name in _BUILT_IN:
        importlib.import_module(f"{__name__}.{_BUILT_IN[name]}")
    cls = _REGISTRY.get(name)
    if cls is None:
        raise SearchError(f"search.algorithm={name!r}; use one of {', '.join(algorithm_names())}.")
    return cls()
