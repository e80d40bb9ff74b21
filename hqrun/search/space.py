"""The search space: which quantizer each (layer, slot) may take, validated before any trial.

AutoQKeras describes a space with a *quantization config* (per kind: candidate spec -> bit cost)
and *limits* (per layer class or layer-name regex: a max bit count or an explicit list). hqrun
reads the same two things from YAML and turns them into a flat list of :class:`Choice` objects,
one per independent decision, which any sampler (Ray's random generator, Optuna) can draw from.
Every mistake a user can make in the YAML is found here, before Ray starts, because a bad entry
discovered inside trial 37 wastes an hour.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from hqrun.errors import SearchError

KINDS = ("kernel", "bias", "activation", "linear")
SLOTS = ("kernel", "bias", "activation")

#: AutoQKeras 0.9.0's default quantization config (kind -> {spec: bit cost}).
DEFAULT_MENU: dict[str, dict[str, int]] = {
    "kernel": {
        "binary": 1,
        "stochastic_binary": 1,
        "ternary": 2,
        "stochastic_ternary": 2,
        "quantized_bits(2,1,1,alpha=1.0)": 2,
        "quantized_bits(4,0,1)": 4,
        "quantized_bits(8,0,1)": 8,
        "quantized_po2(4,1)": 4,
    },
    "bias": {
        "quantized_bits(4,0,1)": 4,
        "quantized_bits(8,3,1)": 8,
        "quantized_po2(4,8)": 4,
    },
    "activation": {
        "binary": 1,
        "binary(alpha='auto_po2')": 1,
        "ternary": 2,
        "quantized_relu(3,1)": 3,
        "quantized_relu(4,2)": 4,
        "quantized_relu(8,2)": 8,
        "quantized_relu(8,4)": 8,
        "quantized_relu(16,8)": 16,
        "quantized_relu_po2(4,4)": 4,
    },
    "linear": {
        "binary": 1,
        "ternary": 2,
        "quantized_bits(4,1)": 4,
        "quantized_bits(8,2)": 8,
        "quantized_bits(16,10)": 16,
        "quantized_po2(6,4)": 6,
    },
}

#: Layer classes a limit key may name (AutoQKeras's vocabulary); any other key is a regex.
LAYER_CLASSES = (
    "Dense", "Conv1D", "Conv2D", "DepthwiseConv2D", "Conv2DTranspose",
    "SeparableConv1D", "SeparableConv2D", "Activation", "Input", "BatchNormalization",
)
RESIZABLE_CLASSES = ("Dense", "Conv1D", "Conv2D", "Conv2DTranspose")



@dataclass(frozen=True)
class LayerInfo:
    """What the search needs to know about one model layer."""

    name: str
    cls: str                          # AutoQKeras class vocabulary: Dense, Activation, Input...
    slots: tuple[str, ...]            # subset of kernel, bias, activation
    linear: bool = False              # its activation slot draws from the "linear" menu
    resizable: bool = False           # width tuning may scale its output size


@dataclass
class Choice:
    """One independent decision: a key, its options, and the (layer, slot)s it sets."""

    key: str
    options: list
    targets: list[tuple[str, str]]     # (layer, slot); slot "width" for width multipliers
    bits: dict[str, int] = field(default_factory=dict)
    source: str = ""                   # the limit entry that shaped it (for messages)


@dataclass
class SearchSpace:
    """Choices plus the assignments that are fixed (frozen blocks) for every trial."""

    layers: list[LayerInfo]
    choices: list[Choice]
    fixed: dict[tuple[str, str], Any] = field(default_factory=dict)

    @property
    def keys(self) -> list[str]:
        return [c.key for c in self.choices]

    def choice(self, key: str) -> Choice:
        for c in self.choices:
            if c.key == key:
                return c
        raise KeyError(key)

    def assignment(self, config: Mapping[str, Any]) -> dict[tuple[str, str], Any]:
        """Map a sampled config (key -> option) to (layer, slot) -> value, frozen ones included."""
        out = dict(self.fixed)
        for c in self.choices:
            if c.key not in config:
                raise SearchError(f"sampled config lacks the search key {c.key!r}")
            for target in c.targets:
                out[target] = config[c.key]
        return out

    def plan(self, config: Mapping[str, Any], name: str = "trial") -> dict:
        """The quantization plan (hqrun.models.Plan layout) of a sampled config."""
        return plan_from_assignment(self.assignment(config), name)

    def widths(self, config: Mapping[str, Any]) -> dict[str, float]:
        """Width multipliers of a sampled config (empty when width tuning is off)."""
        return {
            layer: float(v) for (layer, slot), v in self.assignment(config).items()
            if slot == "width" and float(v) != 1.0
        }

    def bit_cost(self, config: Mapping[str, Any]) -> int:
        """Sum of the menu bit costs of the sampled specs (a cheap size proxy for logs)."""
        return sum(c.bits.get(config[c.key], 0) for c in self.choices if c.bits)

    def restrict(self, layer_names: Iterable[str], fixed: Mapping[tuple[str, str], Any]) -> "SearchSpace":
        """The sub-space of one block: only choices touching ``layer_names``; ``fixed`` frozen."""
        names = set(layer_names)
        keep = [c for c in self.choices if any(t[0] in names for t in c.targets)]
        return SearchSpace(self.layers, copy.deepcopy(keep), dict(fixed))


def plan_from_assignment(assign: Mapping[tuple[str, str], Any], name: str) -> dict:
    """Build a Plan dict: searched layers listed explicitly, everything else float."""
    plan: dict[str, Any] = {
        "name": name,
        "input": None,
        "default": {"kernel": None, "bias": None, "activation": None},
        "layers": {},
    }
    for (layer, slot), value in assign.items():
        if slot == "width":
            continue
        if layer == "input":
            plan["input"] = value
            continue
        plan["layers"].setdefault(layer, {})[slot] = value
    plan["layers"] = {k: plan["layers"][k] for k in sorted(plan["layers"], key=_natural)}
    return plan


def _natural(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


# --------------------------------------------------------------------------- spec checking


def default_spec_bits(spec: str) -> int | None:
    """Parse ``spec`` with hqrun.quantizers and return its bit count (None if it has none).

    Raises SearchError when the spec does not parse.
    """
    from hqrun.quantizers import get as get_quantizer

    try:
        q = get_quantizer(spec)
    except Exception as err:  # noqa: BLE001 - any parse failure is the user's spec
        raise SearchError(str(err)) from None
    bits = getattr(q, "bits", None)
    return int(bits) if bits is not None else None


SpecChecker = Callable[[str], "int | None"]


# --------------------------------------------------------------------------- building


def build_space(space_cfg: Any, layers: Sequence[LayerInfo],
                check_spec: SpecChecker = default_spec_bits) -> SearchSpace:
    """Validate the space config against the model's layers and return its choices.

    ``space_cfg`` is a :class:`hqrun.search.config.SpaceConfig` or a mapping with the same keys.
    """
    cfg = _as_dict(space_cfg)
    menu = _check_menu(cfg.get("menu"), check_spec)
    searched = _searched_layers(cfg, layers)
    limits = _as_dict(cfg.get("limits") or {})
    patterns = _limit_patterns(limits, searched)

    choices: list[Choice] = []
    groups: dict[tuple[str, str], Choice] = {}
    for layer in searched:
        for slot in layer.slots:
            kind = "linear" if (slot == "activation" and layer.linear) else slot
            key_name, entry = _limit_for(layer, slots_for(layer), slot, limits, patterns)
            options, bits = _options(kind, entry, menu, check_spec,
                                     where=f"limit {key_name!r}" if key_name else "the menu",
                                     layer=layer.name, slot=slot)
            if key_name in patterns:  # regex group: one shared choice per kind
                gkey = (key_name, kind)
                if gkey in groups:
                    groups[gkey].targets.append((layer.name, slot))
                    continue
                c = Choice(f"group{list(patterns).index(key_name)}__{kind}", options,
                           [(layer.name, slot)], bits, source=key_name)
                groups[gkey] = c
            else:
                c = Choice(f"{layer.name}__{slot}", options, [(layer.name, slot)], bits,
                           source=key_name or "menu")
            choices.append(c)
    choices.extend(_width_choices(_as_dict(cfg.get("width") or {}), searched, layers))
    if not choices:
        raise SearchError(
            "the search space is empty: no searched layer has a quantizer slot. Check "
            "search.space.layers (regexes of layer names) against the model's layers: "
            + ", ".join(l.name for l in layers) + "."
        )
    return SearchSpace(list(layers), choices)


def slots_for(layer: LayerInfo) -> tuple[str, ...]:
    return layer.slots


def _as_dict(obj: Any) -> dict:
    if obj is None:
        return {}
    if isinstance(obj, Mapping):
        return {k: obj[k] for k in obj}
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(obj):
            return OmegaConf.to_container(obj, resolve=True)  # type: ignore[return-value]
        return OmegaConf.to_container(OmegaConf.structured(obj), resolve=True)  # type: ignore
    except Exception:  # noqa: BLE001
        return dict(vars(obj))


def _to_plain(obj: Any) -> Any:
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(obj):
            return OmegaConf.to_container(obj, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return obj


def _check_menu(menu: Any, check_spec: SpecChecker) -> dict[str, dict[str, int]]:
    menu = _to_plain(menu)
    if menu is None:
        menu = DEFAULT_MENU
    if not isinstance(menu, Mapping):
        raise SearchError("search.space.menu must map a kind (kernel, bias, activation, linear) "
                          "to {spec: bit cost}, or be null for AutoQKeras's default menu.")
    if not menu:    # {} used to mean AutoQKeras's whole menu without a word
        raise SearchError("search.space.menu is empty ({}), which leaves nothing to search. Give "
                          "candidates per kind (e.g. menu: {kernel: {\"quantized_bits(4,0,1)\": 4}}; "
                          "kinds left out use AutoQKeras's menu), or set menu: null to search "
                          "AutoQKeras's whole default menu on purpose.")
    out: dict[str, dict[str, int]] = {}
    for kind, entries in menu.items():
        if kind not in KINDS:
            raise SearchError(f"search.space.menu has an unknown kind {kind!r}; the kinds are "
                              f"{', '.join(KINDS)}.")
        entries = _to_plain(entries)
        if isinstance(entries, (list, tuple)):   # a list of specs: bits from the quantizer
            entries = {s: None for s in entries}
        if not isinstance(entries, Mapping) or not entries:
            raise SearchError(f"search.space.menu.{kind} must be a non-empty mapping "
                              "{spec: bit cost}.")
        out[kind] = {}
        for spec, bits in entries.items():
            parsed = _check_one(spec, check_spec, f"search.space.menu.{kind}")
            bits = parsed if bits is None else bits
            if bits is None or not isinstance(bits, (int, float)) or bits <= 0:
                raise SearchError(f"search.space.menu.{kind}: {spec!r} needs a positive bit "
                                  f"cost, got {bits!r}; write it as `{spec}: <bits>`.")
            out[kind][str(spec)] = int(bits)
    for kind in KINDS:
        out.setdefault(kind, dict(DEFAULT_MENU[kind]))
    return out


def _check_one(spec: Any, check_spec: SpecChecker, where: str) -> int | None:
    try:
        return check_spec(str(spec))
    except SearchError as err:
        raise SearchError(f"{where}: the quantizer spec {spec!r} is invalid ({err}). Use a "
                          "QKeras spec such as quantized_bits(4,0,1) or quantized_relu(3,1).") from None


def _searched_layers(cfg: Mapping, layers: Sequence[LayerInfo]) -> list[LayerInfo]:
    candidates = [l for l in layers if l.slots and (l.cls != "Input" or cfg.get("input"))]
    regexes = _to_plain(cfg.get("layers"))
    if regexes is None:
        return candidates
    if isinstance(regexes, str):
        regexes = [regexes]
    chosen: list[LayerInfo] = []
    for rx in regexes:
        pat = _compile(rx, "search.space.layers")
        hit = [l for l in candidates if pat.match(l.name)]
        if not hit:
            raise SearchError(
                f"search.space.layers: the regex '{rx}' matches no searchable layer. The model's "
                f"searchable layers are: {', '.join(l.name for l in candidates)}.")
        chosen.extend(l for l in hit if l not in chosen)
    return [l for l in candidates if l in chosen]


def _compile(rx: str, where: str) -> re.Pattern:
    try:
        return re.compile(str(rx))
    except re.error as err:
        raise SearchError(f"{where}: '{rx}' is not a valid regular expression ({err}).") from None


def _limit_patterns(limits: Mapping, searched: Sequence[LayerInfo]) -> dict[str, re.Pattern]:
    """Regex keys of ``limits`` (every key that is neither a class name nor "default")."""
    patterns: dict[str, re.Pattern] = {}
    for key in limits:
        if key == "default" or key in LAYER_CLASSES:
            continue
        pat = _compile(key, f"search.space.limits key {key!r}")
        if not any(pat.match(l.name) for l in searched):
            raise SearchError(
                f"search.space.limits: the regex '{key}' matches no searched layer (a layer "
                f"class must be one of {', '.join(LAYER_CLASSES)}). Searched layers: "
                f"{', '.join(l.name for l in searched)}.")
        patterns[key] = pat
    return patterns


def _limit_for(layer: LayerInfo, slots: tuple[str, ...], slot: str, limits: Mapping,
               patterns: Mapping[str, re.Pattern]) -> tuple[str | None, Any]:
    """The limit entry for one slot: first matching regex, else the class, else "default"."""
    key = next((k for k, p in patterns.items() if p.match(layer.name)), None)
    if key is None and layer.cls in limits:
        key = layer.cls
    default = limits.get("default")
    if key is None:
        if default is None:
            return None, None
        return "default", _slot_entry(default, slots, slot, None)
    return key, _slot_entry(limits[key], slots, slot, default)


def _slot_entry(value: Any, slots: tuple[str, ...], slot: str, default: Any) -> Any:
    """AutoQKeras's limit forms: N | [k, b, a] | {kernel:, bias:, activation:}."""
    value = _to_plain(value)
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, Mapping):
        if slot in value:
            return value[slot]
        return _slot_entry(default, slots, slot, None) if default is not None else None
    if isinstance(value, (list, tuple)):
        if slots == ("activation",):          # Activation: [a] (index -1 as AutoQKeras)
            return value[-1] if value else None
        idx = SLOTS.index(slot)
        if idx < len(value):
            return value[idx]
        return _slot_entry(default, slots, slot, None) if default is not None else None
    if isinstance(value, str):
        return [value]
    raise SearchError(f"search.space.limits: cannot read the limit {value!r}; write a max bit "
                      "count, a list [kernel, bias, activation], or {kernel: ..., bias: ...}.")


def _options(kind: str, entry: Any, menu: Mapping[str, Mapping[str, int]],
             check_spec: SpecChecker, where: str, layer: str, slot: str
             ) -> tuple[list[str], dict[str, int]]:
    table = menu[kind]
    if entry is None:
        opts = dict(table)
    elif isinstance(entry, str):
        entry = [entry]
    if isinstance(entry, (int, float)) and not isinstance(entry, bool):
        opts = {s: b for s, b in table.items() if b <= entry}
        if not opts:
            raise SearchError(
                f"search.space.{where} leaves no choice for {layer}.{slot}: no {kind} quantizer "
                f"in the menu costs <= {entry} bits (the cheapest costs {min(table.values())}). "
                "Raise the limit or add a cheaper spec to the menu.")
    elif isinstance(entry, (list, tuple)):
        if not entry:
            raise SearchError(f"search.space.{where} leaves no choice for {layer}.{slot}: its "
                              "list of quantizers is empty.")
        opts = {}
        for spec in entry:
            spec = str(spec)
            bits = table.get(spec)
            parsed = _check_one(spec, check_spec, f"search.space.{where}")
            if bits is None:
                bits = parsed
            if bits is None:
                raise SearchError(f"search.space.{where}: {spec!r} is not in the {kind} menu and "
                                  "has no bit count; add it to search.space.menu.{kind}.")
            opts[spec] = int(bits)
    elif entry is not None:
        raise SearchError(f"search.space.{where}: cannot read {entry!r} for {layer}.{slot}.")
    return list(opts), opts


def _width_choices(width: Mapping, searched: Sequence[LayerInfo],
                   layers: Sequence[LayerInfo]) -> list[Choice]:
    mode = width.get("mode", "none") or "none"
    if mode == "none":
        return []
    if mode not in ("layer", "block"):
        raise SearchError(f"search.space.width.mode={mode!r}; use none, layer or block.")
    mults = [float(m) for m in (width.get("multipliers") or [0.5, 0.75, 1.0, 1.5, 2.0])]
    if not mults or any(m <= 0 for m in mults):
        raise SearchError("search.space.width.multipliers must be positive numbers, e.g. "
                          "[0.5, 0.75, 1, 1.5, 2].")
    exc = width.get("exceptions")
    exc_pat = _compile(exc, "search.space.width.exceptions") if exc else None
    weighted = [l for l in layers if l.cls in RESIZABLE_CLASSES]
    last = weighted[-1].name if weighted else None   # the output layer keeps its size
    tunable = [l.name for l in searched if l.cls in RESIZABLE_CLASSES and l.name != last
               and not (exc_pat and exc_pat.search(l.name))]
    if not tunable:
        return []
    if mode == "block":
        return [Choice("width", mults, [(n, "width") for n in tunable], source="width")]
    return [Choice(f"width__{n}", mults, [(n, "width")], source="width") for n in tunable]
