"""Plan shorthand for learned bit widths: ``learn: [kernel, bias, activation, input]`` and knobs.

``conf/quant/learned.yaml`` and command lines such as ``quant.learn=[activation,input]
quant.granularity=channel`` describe a learned-bits plan by a few knobs instead of spelling
``learned_bits(...)`` in every slot. :func:`expand_learned` turns the knobs into ordinary specs
in ``default``/``input`` when the plan is read, so the Plan object — and every YAML written from
it (plan.yaml of a run, a search's winner.yaml) — holds explicit specs only and loads again as is.
Slots the knobs do not name keep what the plan says (e.g. QKeras kernels beside learned
activations); naming a slot in ``learn`` that the plan also sets is a conflict, reported.
"""

from __future__ import annotations

from typing import Any, Mapping

from hqrun.errors import HqrunError, PlanError

__all__ = ["LEARN_KEYS", "LEARNABLE_SLOTS", "expand_learned"]

#: Plan keys of the shorthand (consumed when the plan is read, never written back).
LEARN_KEYS = ("learn", "granularity", "init_frac", "overflow", "range_decay", "int_bits")
#: Knobs that only activations (and the input) take.
_DATA_ONLY = ("overflow", "range_decay", "int_bits")
#: Slots ``learn`` may name, and the quantizer each gets.
LEARNABLE_SLOTS = {"kernel": "learned_bits", "bias": "learned_bits",
                   "activation": "learned_relu", "input": "learned_bits"}


def _init_frac(plan: str, value: Any, slot: str) -> Any:
    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in LEARNABLE_SLOTS]
        if unknown:
            raise PlanError(f"plan {plan!r}: init_frac has unknown slot(s) {unknown}; give one "
                            f"number, or a mapping of {', '.join(LEARNABLE_SLOTS)} to numbers.")
        return value.get(slot)
    return value


def expand_learned(plan: str, data: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """``(input spec, {default slot: spec})`` after filling the slots ``learn`` names.

    Returns the plan's own ``input`` and ``default`` when ``learn`` is empty or absent.
    """
    raw = data.get("default")
    default = dict(raw or {}) if raw is None or isinstance(raw, Mapping) else raw
    input_spec = data.get("input")
    learn = data.get("learn") or []
    if isinstance(learn, str):
        learn = [learn]
    if not isinstance(learn, (list, tuple)):
        raise PlanError(f"plan {plan!r}: learn={learn!r} must be a list of slots, e.g. "
                        "[kernel, bias, activation, input].")
    unknown = [s for s in learn if s not in LEARNABLE_SLOTS]
    if unknown:
        raise PlanError(f"plan {plan!r}: learn names unknown slot(s) {unknown}; learned bit widths "
                        f"can fill {', '.join(LEARNABLE_SLOTS)}.")
    if not learn:
        return input_spec, default
    if not isinstance(default, dict):
        raise PlanError(f"plan {plan!r}: `default` must map kernel/bias/activation to specs.")
    for slot in learn:
        args = [f"{key}={data[key]!r}" for key in ("granularity",) + _DATA_ONLY
                if data.get(key) is not None and (key == "granularity" or slot in ("activation", "input"))]
        current = input_spec if slot == "input" else default.get(slot)
        if current is not None:
            where = "input" if slot == "input" else f"default.{slot}"
            raise PlanError(
                f"plan {plan!r}: learn includes {slot!r} but {where} is already {current!r}. "
                f"Remove {slot} from learn to keep that quantizer, or set {where} to null."
            )
        frac = _init_frac(plan, data.get("init_frac"), slot)
        if frac is not None:
            args.insert(0, f"init_frac={frac!r}")
        spec = f"{LEARNABLE_SLOTS[slot]}({','.join(args)})"
        try:  # bad knob values (granularity, ...) fail here, naming the knob
            from hqrun.quantizers import get

            spec = str(get(spec))  # canonical: only the arguments that differ from defaults
        except HqrunError as err:
            raise PlanError(f"plan {plan!r}: the learned-bits settings give {spec}, which is "
                            f"invalid: {err}") from None
        if slot == "input":
            input_spec = spec
        else:
            default[slot] = spec
    return input_spec, default
