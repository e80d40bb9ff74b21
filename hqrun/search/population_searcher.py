"""Ray Tune searcher that hands out populations: K configurations per Ray trial.

Why a wrapper and not a new algorithm: every way hqrun proposes configurations (configurations
given up front — cost-capped draws, evolution's children, lost trials run again —, uniform random
draws, Optuna's TPE through Ray's ``OptunaSearch``) proposes one at a time. :class:`PopulationSearcher`
asks its member source K times per Ray trial and tells the source each member's own result when
the population finishes, so TPE learns from every configuration as in lone mode. Configurations
already journaled or already proposed are skipped (asked again), so a resumed search does not
train them twice; when a small space leaves nothing new, a repeat is accepted rather than
stopping early, as lone trials would.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Mapping, Protocol, Sequence

from ray.tune.search import Searcher

from hqrun.search.costcap import config_key, fresh_configs
from hqrun.search.journal import member_trial_id

#: Key of a population trial's config holding its issue index (0, 1, ...).
ISSUE_KEY = "population_index"

#: How often a member source asks again for a configuration it has not proposed before.
DRAWS_PER_MEMBER = 64


class MemberSource(Protocol):
    """Proposes member configurations one at a time and hears each one's result."""

    def propose(self, member_id: str) -> dict | None:
        """A configuration for ``member_id``, or None when there is nothing more to propose."""

    def complete(self, member_id: str, result: Mapping[str, Any] | None, error: bool) -> None:
        """The final result of ``member_id`` (None and ``error`` when the trial was lost)."""


class _Untried:
    """Keys of configurations already journaled or proposed."""

    def __init__(self, tried: Sequence[Mapping[str, Any]]) -> None:
        self.keys = {config_key(c) for c in tried}

    def is_new(self, config: Mapping[str, Any]) -> bool:
        return config_key(config) not in self.keys

    def add(self, config: Mapping[str, Any]) -> None:
        self.keys.add(config_key(config))


class RandomMembers:
    """``points`` first (as given), then uniform random draws over ``space``'s choices."""

    def __init__(self, space: Any, seed: int, points: Sequence[Mapping[str, Any]] | None,
                 tried: Sequence[Mapping[str, Any]]) -> None:
        self.space, self.rng = space, random.Random(seed)
        self.points = [dict(p) for p in points or []]
        self.untried = _Untried(tried)

    def propose(self, member_id: str) -> dict | None:
        if self.points:
            config = self.points.pop(0)
            self.untried.add(config)
            return config
        fresh = next(fresh_configs(self.space, self.rng, self.untried.keys, DRAWS_PER_MEMBER), None)
        return fresh if fresh is not None else {c.key: self.rng.choice(c.options) for c in self.space.choices}

    def complete(self, member_id: str, result: Mapping[str, Any] | None, error: bool) -> None:
        """Random draws learn nothing from results."""


class SearcherMembers:
    """A Ray Tune :class:`Searcher` (e.g. ``OptunaSearch``) asked once per member."""

    def __init__(self, searcher: Searcher, tried: Sequence[Mapping[str, Any]]) -> None:
        self.searcher = searcher
        self.untried = _Untried(tried)
        self.asked_as: dict[str, str] = {}    # member id -> the id its configuration was asked under

    def propose(self, member_id: str) -> dict | None:
        config = None
        for attempt in range(DRAWS_PER_MEMBER):
            ask_id = member_id if attempt == 0 else f"{member_id}.redraw{attempt}"
            config = self.searcher.suggest(ask_id)
            if config is None or config == Searcher.FINISHED:
                return None
            if self.untried.is_new(config) or attempt == DRAWS_PER_MEMBER - 1:
                self.asked_as[member_id] = ask_id
                break
            # a repeat: tell the searcher it was not run, then ask again
            self.searcher.on_trial_complete(ask_id, None, error=True)
        self.untried.add(config)
        return dict(config)

    def complete(self, member_id: str, result: Mapping[str, Any] | None, error: bool) -> None:
        ask_id = self.asked_as.pop(member_id, member_id)
        self.searcher.on_trial_complete(ask_id, dict(result) if result else None, error=error)


class PopulationSearcher(Searcher):
    """Ray trials of up to ``size`` configurations each, ``total`` configurations in all.

    A population trial's config is ``{key: [member configs], ISSUE_KEY: n}`` (n: the n-th Ray
    trial handed out, as Ray's own trial ids count lone trials); its final result carries
    ``{key: [member outcomes]}`` in the same order (:func:`hqrun.search.runner._trainable`).
    ``refusal(config)`` says why a configuration cannot join a population (None: it can). Such a
    configuration, and a population that would hold a single member, is handed out as a lone
    trial (its config plus ``ISSUE_KEY``), so it trains in parallel with the rest instead of
    after the other members inside one Ray trial; ``on_refusal(reason)`` hears each refusal.
    """

    def __init__(self, source: MemberSource, size: int, total: int, key: str,
                 refusal: Callable[[dict], str | None] = lambda config: None,
                 on_refusal: Callable[[str], None] = lambda reason: None) -> None:
        super().__init__(metric=None, mode=None)
        self.source, self.size, self.total, self.key = source, int(size), int(total), key
        self.refusal, self.on_refusal = refusal, on_refusal
        self.issued = 0         # configurations handed to the source's proposals so far
        self.count = 0          # Ray trials handed out: their order, kept in the journal's ids
        self.lone: list[tuple[str, dict]] = []     # (member id, config) waiting for a lone trial
        self.members: dict[str, tuple[bool, list[str]]] = {}   # Ray trial -> (population?, ids)

    def suggest(self, trial_id: str) -> dict | str | None:
        if self.lone:
            return self._lone(trial_id)
        drawn: list[tuple[str, dict]] = []
        for k in range(max(0, min(self.size, self.total - self.issued))):
            member_id = member_trial_id(trial_id, k)
            config = self.source.propose(member_id)
            if config is None:
                self.total = self.issued + len(drawn)   # the source ran dry
                break
            drawn.append((member_id, config))
        self.issued += len(drawn)
        batch = []
        for member_id, config in drawn:
            reason = self.refusal(config)
            if reason is None:
                batch.append((member_id, config))
            else:
                self.on_refusal(reason)
                self.lone.append((member_id, config))
        if len(batch) >= 2:
            self.members[trial_id] = (True, [m for m, _ in batch])
            return {self.key: [c for _, c in batch], ISSUE_KEY: self._next()}
        self.lone[:0] = batch
        return self._lone(trial_id) if self.lone else Searcher.FINISHED

    def _lone(self, trial_id: str) -> dict:
        member_id, config = self.lone.pop(0)
        self.members[trial_id] = (False, [member_id])
        return {**config, ISSUE_KEY: self._next()}

    def _next(self) -> int:
        index, self.count = self.count, self.count + 1
        return index

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        population, ids = self.members.pop(trial_id, (False, []))
        if error or not result:
            outcomes = None
        else:
            outcomes = result.get(self.key) if population else [result]
        for k, member_id in enumerate(ids):
            outcome = outcomes[k] if isinstance(outcomes, list) and k < len(outcomes) else None
            self.source.complete(member_id, outcome, error or outcome is None)

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: a resumed search rebuilds its state from the journal, not from Ray's
        experiment state (writing no file tells Tune there is no searcher checkpoint)."""

    def restore(self, checkpoint_path: str) -> None:
        """See :meth:`save`."""
