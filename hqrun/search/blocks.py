"""AutoQKeras's block scheduler: search a big network a few layers at a time.

Each block is a regex over layer names. Blocks run in the order given (``sequential``) or by
descending reference cost (``cost``); each block gets ``max(10, max_trials * block_cost /
reference_cost)`` trials, and once searched its layers are frozen with the quantizers of its
best trial while later blocks are searched (layers of blocks not searched yet stay float, as in
AutoQKeras, where they are not in the quantization dict of the current block).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from hqrun.errors import SearchError


@dataclass(frozen=True)
class Block:
    index: int          # position in the user's list
    pattern: str
    layers: tuple[str, ...]
    cost: float
    trials: int


def schedule_blocks(patterns: Sequence[str], layer_names: Sequence[str],
                    layer_costs: Mapping[str, float], reference_cost: float,
                    max_trials: int, schedule: str = "sequential",
                    min_trials: int = 10) -> list[Block]:
    """Group layers into blocks (``re.match``, as AutoQKeras) and order them.

    ``reference_cost`` is the stressed reference (AutoQKeras divides by its ``reference_size``,
    which already includes ``stress``). A pattern matching no layer is an error, found here
    before any trial runs.
    """
    if not patterns:
        raise SearchError("search.algorithm=blocks needs search.blocks.patterns: one layer-name "
                          "regex per block, e.g. ['^dense_1$|^relu_1$', '^dense_2$|^relu_2$'].")
    if schedule not in ("sequential", "cost"):
        raise SearchError(f"search.blocks.schedule={schedule!r}; use sequential or cost.")
    blocks = []
    for i, rx in enumerate(patterns):
        try:
            pat = re.compile(rx)
        except re.error as err:
            raise SearchError(f"search.blocks.patterns[{i}]='{rx}' is not a valid regular "
                              f"expression ({err}).") from None
        members = tuple(n for n in layer_names if pat.match(n))
        if not members:
            raise SearchError(f"search.blocks.patterns[{i}]='{rx}' matches no searched layer. "
                              f"Searched layers: {', '.join(layer_names)}.")
        cost = float(sum(layer_costs.get(n, 0.0) for n in members))
        trials = block_trials(max_trials, cost, reference_cost, min_trials)
        blocks.append(Block(i, rx, members, cost, trials))
    if schedule == "cost":
        blocks.sort(key=lambda b: -b.cost)   # stable: ties keep the user's order
    return blocks


def block_trials(max_trials: int, block_cost: float, reference_cost: float,
                 min_trials: int = 10) -> int:
    """AutoQKeras: ``int(max(10, max_trials * cost / reference))`` (10 = ``min_trials``)."""
    if reference_cost <= 0:
        return int(min_trials)
    return int(max(min_trials, float(max_trials) * block_cost / reference_cost))
