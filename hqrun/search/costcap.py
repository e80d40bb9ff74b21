"""Trials under a cost cap: draw only configurations whose cost is within ``search.goal.max_cost``.

A trigger designer rarely asks "the best accuracy-per-cost trade-off"; they ask "the most
accurate model that fits in X" (a latency, LUT or energy budget fixed by the system). The cost
of a configuration is known before any training (QTools prices a model from its quantizers
alone; EBOPs and LUTs from its quantizers and the float reference's weights, which every trial
starts from), so a search with a cap need not spend trials on configurations it would reject: this
module draws random configurations, prices each in milliseconds and keeps those within the cap.
Every trial then explores the feasible region, which in AutoQKeras's default menu is only a few
per cent of the space (the forgiving factor alone, with 40 random trials, lands one or two
trials there).
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

from hqrun.errors import SearchError
from hqrun.search.objectives import cost_of
from hqrun.search.space import SearchSpace
from hqrun.search.trial import Backend, float_plan, start_from_reference


@dataclass
class CappedDraw:
    """What :func:`draw_under_cap` found: the configurations and how hard it was to find them."""

    configs: list[dict]
    draws: int             # distinct configurations priced
    cheapest: float        # lowest cost seen (tells the user how far the cap is from the space)
    seconds: float


def config_key(config: Mapping[str, Any]) -> str:
    """A canonical text form of a sampled configuration (for de-duplication)."""
    return json.dumps({k: config[k] for k in sorted(config)}, sort_keys=True, default=str)


def fresh_configs(space: SearchSpace, rng: random.Random, seen: set[str],
                  max_misses: int) -> Iterator[dict]:
    """Uniformly drawn configurations never seen before (``seen`` is updated), until the space
    is exhausted or ``max_misses`` draws in all hit configurations already seen."""
    size = math.prod(len(c.options) for c in space.choices)
    misses = 0
    while len(seen) < size and misses < max_misses:
        config = {c.key: rng.choice(c.options) for c in space.choices}
        key = config_key(config)
        if key in seen:
            misses += 1
            continue
        seen.add(key)
        yield config


def price(space: SearchSpace, backend: Backend, config: Mapping[str, Any], goal: str,
          reference_state: Mapping[str, Any] | None = None) -> float:
    """The goal's cost of one configuration, from the cost model alone (no training)."""
    return Pricer(space, backend, goal, reference_state)(config)


@dataclass
class Pricer:
    """Prices configurations as their trials will be priced: with the float reference's weights
    (``reference_state``; a trial starts from them, and EBOPs and LUTs depend on the weights),
    or the model's initial weights when no reference is given or widths change."""

    space: SearchSpace
    backend: Backend
    goal: str
    reference_state: Mapping[str, Any] | None = None
    _reference: Any = field(default=None, init=False, repr=False)

    def __call__(self, config: Mapping[str, Any]) -> float:
        widths = self.space.widths(config)
        model = self.backend.build(self.space.plan(config), widths)
        if self.reference_state is not None and not widths:
            if self._reference is None:
                self._reference = self.backend.build(float_plan(), {})
                self._reference.load_state_dict(self.reference_state)
            start_from_reference(self.backend, model, None, self._reference)
        return cost_of(self.backend.cost(model).totals, self.goal)


def draw_under_cap(space: SearchSpace, backend: Backend, goal: str, max_cost: float, n: int,
                   seed: int, exclude: Iterable[Mapping[str, Any]] = (),
                   max_draws: int | None = None,
                   reference_state: Mapping[str, Any] | None = None) -> CappedDraw:
    """Up to ``n`` distinct random configurations costing at most ``max_cost``.

    ``reference_state``: the float reference's weights, which every trial starts from; with it a
    configuration is priced exactly as its trial will be (the weights matter for EBOPs and LUTs).

    Configurations in ``exclude`` (the trials a resumed search already ran) are never drawn
    again. Drawing stops after ``max_draws`` distinct priced configurations (default
    ``max(2000, 200 n)``, about a minute for the jet model); fewer than ``n`` may come back when
    the cap leaves few configurations. Raises :class:`SearchError` when none is found.
    """
    if not (max_cost > 0 and math.isfinite(max_cost)):
        raise SearchError(f"search.goal.max_cost={max_cost} must be a positive number in the "
                          f"goal's unit ({goal}), or null for no cap.")
    rng = random.Random(seed)
    seen = {config_key(c) for c in exclude}
    limit = max_draws if max_draws is not None else max(2000, 200 * n)
    found: list[dict] = []
    draws, cheapest = 0, math.inf
    start = time.perf_counter()
    pricer = Pricer(space, backend, goal, reference_state)
    for config in fresh_configs(space, rng, seen, max_misses=50 * limit):
        if len(found) >= n or draws >= limit:
            break
        draws += 1
        cost = pricer(config)
        cheapest = min(cheapest, cost)
        if cost <= max_cost:
            found.append(config)
    if not found and draws:
        raise SearchError(
            f"no configuration of the search space costs at most search.goal.max_cost="
            f"{max_cost:g} ({goal}): the cheapest of {draws} priced was {cheapest:g}. Raise "
            "the cap, or add cheaper quantizers to the space's menu (search/space=...).")
    return CappedDraw(found, draws, cheapest, time.perf_counter() - start)


def fill_to_cap(config: Mapping[str, Any], space: SearchSpace,
                accept: Callable[[dict], bool], slots: tuple[str, ...] = ("kernel", "bias")
                ) -> dict:
    """``config`` with its parameter quantizers raised, layer by layer, to the most precise
    option of the menu that ``accept`` (the cost cap) still takes.

    Why: under QTools's energy model weights cost almost nothing next to the activations' memory
    traffic (8-bit instead of ternary kernels in a hidden layer adds about 100 pJ of 18,000), so
    a search trial that fits the cap often leaves precision unbought, and a ten-epoch trial
    cannot see what it is worth. Trained to the end it is: on the Pythia jet set the energy
    search's 2/3/2-bit ReLU winner (6-bit, 8-bit, ternary and 4-bit power-of-two kernels) reached
    0.6979 test accuracy over eight trainings, the same ReLUs with every kernel and bias at 8 bits
    0.6995, for 159 pJ more. Only strictly wider options are taken (more menu bits), so the
    activations, which set the family and most of the cost, are left as the search chose them.
    """
    out = dict(config)
    for choice in space.choices:
        if not choice.bits or any(slot not in slots for _, slot in choice.targets):
            continue
        current = choice.bits.get(out[choice.key])
        if current is None:
            continue
        wider = sorted((o for o in choice.options if choice.bits.get(o, 0) > current),
                       key=lambda o: -choice.bits[o])
        for option in wider:
            candidate = dict(out)
            candidate[choice.key] = option
            if accept(candidate):
                out = candidate
                break
    return out
