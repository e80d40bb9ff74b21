"""Which search trials a study retrains in full: the best ones, spread over data-path families.

Why: a search trial is a few epochs from the float weights, and its accuracy is one noisy draw;
under a cost cap the top trials of a search are often variants of one configuration (same
activation widths, different biases or one kernel changed) whose scores differ by less than that
noise. Retraining three such variants in full amounts to three restarts of one model. Measured on
the Pythia jet set under the 19,168 pJ cap (8-bit parameters, 150 epochs from the float
weights): the 2/2/3-bit ReLU stack (three bits before the output layer instead of in the middle,
same energy) reached 0.6968 validation and 0.7013 test accuracy over four trainings, the 2/3/2
stack that the evolution search put first 0.6946 and 0.6995 over eight; as ten-epoch search
trials the two differed by at most 0.003 either way over four seeds. The search cannot tell such
families apart, a full training can, so the short list should hold one trial per family before
it holds two of one.

A *family* is the tuple of activation bit widths, layer by layer: the widths of the data path
between layers, which set the firmware's datapath and, under QTools's energy model, most of the
energy. Integer bits and parameter quantizers vary inside a family.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Mapping, Sequence


def activation_widths(plan: Mapping[str, Any]) -> tuple:
    """(layer, bit width) of every activation quantizer of a plan, by layer name (None = float)."""
    from hqrun.search.space import default_spec_bits

    default = (plan.get("default") or {}).get("activation")
    widths = []
    for name in sorted((plan.get("layers") or {})):
        slots = plan["layers"][name] or {}
        if "activation" not in slots and default is None:
            continue
        spec = slots.get("activation", default)
        widths.append((name, default_spec_bits(str(spec)) if spec else None))
    return tuple(widths)


def spread_over_families(ranked: Sequence[dict], k: int,
                         family: Callable[[dict], Hashable]) -> list[dict]:
    """``k`` records from ``ranked`` (best first): the best of each family in rank order, then,
    when there are fewer than ``k`` families, the next best records whatever their family.

    The result keeps rank order within each pass, so the first record is always the search's
    winner.
    """
    firsts: list[dict] = []
    seen: set = set()
    for rec in ranked:
        key = family(rec)
        if key not in seen:
            seen.add(key)
            firsts.append(rec)
    picked = firsts[:k]
    chosen = {id(r) for r in picked}
    picked += [r for r in ranked if id(r) not in chosen][:k - len(picked)]
    return picked


def plan_family(record: Mapping[str, Any]) -> tuple:
    """A search record's family: the activation widths of its plan."""
    return activation_widths(record.get("plan") or {})
