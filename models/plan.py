"""Quantization plans: which quantizer goes into which slot of which layer.

A plan is the object that ties hqrun's stages together (search samples them, ``models`` builds
them, the cost model prices them, the winner is written back as YAML and loaded again), so it is
plain data with a strict schema: a wrong layer or slot name must fail loudly at build time,
naming the valid choices, rather than silently leave a layer in float.

Rules (docs/architecture.md): ``default.kernel`` / ``default.bias`` apply to every layer with a
kernel (a bias only where the layer has one); ``default.activation`` applies to every activation
layer whose float function is ReLU — never to the output softmax; ``input`` is the input
quantizer; ``layers.<name>.<slot>`` overrides, and an explicit ``null`` there means "float".
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from torch import nn

from hqrun.errors import HqrunError, PlanError
from hqrun.models.learned_plan import LEARN_KEYS, expand_learned
from hqrun.models.penalty import PENALTY_KEYS, BetaSchedule, width_lr_scale
from hqrun.safenames import check_name

#: Slots the default entry may set.
DEFAULT_SLOTS = ("kernel", "bias", "activation")
#: Every slot name a layer entry may use (which ones a given layer has is the layer's business).
ALL_SLOTS = ("kernel", "bias", "activation", "gamma", "beta", "mean", "variance", "average")
_TOP_KEYS = ("name", "input", "default", "layers", "description")
#: Optional keys: the cost penalty (models/penalty.py) and the learned-bits shorthand
#: (models/learned_plan.py, consumed when the plan is read).
_OPTIONAL_KEYS = PENALTY_KEYS + LEARN_KEYS

Spec = Any  # a QKeras-style spec string, a {"class_name", "config"} dict, or None


def _plain(obj: Any) -> Any:
    """OmegaConf containers -> plain Python (plans arrive from Hydra as DictConfig)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(obj, (DictConfig, ListConfig)):
            return OmegaConf.to_container(obj, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return obj


def _check_spec(where: str, spec: Any) -> Spec:
    if spec is None or isinstance(spec, (str, nn.Module)):
        return spec
    if isinstance(spec, Mapping) and "class_name" in spec:
        return dict(spec)
    raise PlanError(
        f"{where} is {spec!r}, which is not a quantizer spec. Write a QKeras-style string such as "
        "\"quantized_bits(6,0,alpha=1)\", a dict {class_name: ..., config: {...}}, or null for float."
    )


@dataclass
class Plan:
    """A quantization plan. See the module docstring for the rules and docs/models.md for YAML."""

    name: str = "plan"
    input: Spec = None
    default: dict[str, Spec] = field(default_factory=lambda: dict.fromkeys(DEFAULT_SLOTS))
    layers: dict[str, dict[str, Spec]] = field(default_factory=dict)
    description: str | None = None
    #: ``beta * EBOPs`` in the training loss and its schedule (None: no penalty).
    penalty: BetaSchedule | None = None
    #: Learning rate of learned bit widths relative to ``trainer.lr``.
    width_lr_scale: float = 1.0

    # ------------------------------------------------------------ (de)serialisation
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Plan":
        """Build from a mapping (plain dict or Hydra's DictConfig), checking keys and slots."""
        data = _plain(data)
        if not isinstance(data, Mapping):
            raise PlanError(f"a quantization plan must be a mapping with keys {', '.join(_TOP_KEYS)}; "
                            f"got {type(data).__name__}.")
        known = _TOP_KEYS + _OPTIONAL_KEYS
        unknown = [k for k in data if k not in known]
        if unknown:
            raise PlanError(
                f"unknown key(s) {', '.join(map(repr, unknown))} in quantization plan "
                f"{data.get('name', '?')!r}; a plan has only {', '.join(known)} "
                "(per-layer quantizers go under `layers: {dense_1: {kernel: ...}}`)."
            )
        name = check_name(str(data.get("name") or "plan"), "plan name", error=PlanError)

        penalty = BetaSchedule.from_plan_dict(name, data)
        input_in, default_in = expand_learned(name, data)
        default_in = default_in or {}
        if not isinstance(default_in, Mapping):
            raise PlanError(f"plan {name!r}: `default` must map kernel/bias/activation to specs.")
        bad = [k for k in default_in if k not in DEFAULT_SLOTS]
        if bad:
            raise PlanError(
                f"plan {name!r}: `default` has slot(s) {', '.join(map(repr, bad))}; the default "
                f"entry may set only {', '.join(DEFAULT_SLOTS)} (set other slots per layer)."
            )
        default = {s: _check_spec(f"plan {name!r} default.{s}", default_in.get(s))
                   for s in DEFAULT_SLOTS}
        layers_in = data.get("layers") or {}
        if not isinstance(layers_in, Mapping):
            raise PlanError(f"plan {name!r}: `layers` must map layer names to {{slot: spec}}.")
        layers: dict[str, dict[str, Spec]] = {}
        for lname, entry in layers_in.items():
            entry = entry or {}
            if not isinstance(entry, Mapping) or "class_name" in entry:
                raise PlanError(
                    f"plan {name!r}: layer {lname!r} must map slots to specs, e.g. "
                    f"`{lname}: {{kernel: \"quantized_bits(4,0,alpha=1)\"}}`; got {entry!r}."
                )
            bad = [k for k in entry if k not in ALL_SLOTS]
            if bad:
                raise PlanError(
                    f"plan {name!r}: layer {lname!r} has unknown slot(s) {', '.join(map(repr, bad))}; "
                    f"slots are {', '.join(ALL_SLOTS)}."
                )
            layers[str(lname)] = {s: _check_spec(f"plan {name!r} layers.{lname}.{s}", v)
                                  for s, v in entry.items()}
        return cls(name=name, input=_check_spec(f"plan {name!r} input", input_in),
                   default=default, layers=layers, description=data.get("description"),
                   penalty=penalty, width_lr_scale=width_lr_scale(name, data.get("width_lr_scale")))

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML-ready mapping (quantizer objects are written as their spec strings)."""

        def out(spec: Spec) -> Any:
            return str(spec) if isinstance(spec, nn.Module) else copy.deepcopy(spec)

        d: dict[str, Any] = {"name": self.name}
        if self.description:
            d["description"] = self.description
        d["input"] = out(self.input)
        d["default"] = {s: out(self.default.get(s)) for s in DEFAULT_SLOTS}
        d["layers"] = {n: {s: out(v) for s, v in e.items()} for n, e in self.layers.items()}
        if self.penalty is not None:
            d.update(self.penalty.to_plan_dict())
        if self.width_lr_scale != 1.0:
            d["width_lr_scale"] = self.width_lr_scale
        return d

    @classmethod
    def from_yaml(cls, path_or_text: str | Path) -> "Plan":
        """Read a plan from a YAML file path (or YAML text containing a newline)."""
        import yaml

        text = str(path_or_text)
        if "\n" not in text:
            path = Path(text)
            if path.is_dir():
                raise PlanError(f"plan file {str(path)!r} is a directory; pass the path of a plan "
                                "YAML file (e.g. a search's winner.yaml) or a plan name such as q6.")
            if not path.is_file():
                raise PlanError(f"plan file {str(path)!r} does not exist; pass the path of a plan "
                                "YAML (see docs/models.md) or a plan name such as q6 or float.")
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as err:
                raise PlanError(f"plan file {str(path)!r} is not UTF-8 text ({err.reason} at byte "
                                f"{err.start}); save it as UTF-8 (plans are YAML text).") from None
            except OSError as err:
                raise PlanError(f"plan file {str(path)!r} cannot be read ({err.strerror or err}).") from None
            where = str(path)
        else:
            where = "<yaml text>"
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise PlanError(f"plan file {where!r} is not valid YAML: {err}".replace("\n", " ")) from None
        if data is None:
            raise PlanError(f"plan file {where!r} is empty; a plan needs at least `name` and `default`.")
        return cls.from_dict(data)

    def to_yaml(self, path: str | Path | None = None) -> str:
        """The plan as YAML text; also written to ``path`` when given."""
        import yaml

        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)
        if path is not None:
            from hqrun import atomic

            atomic.write_text(path, text)
        return text

    # ------------------------------------------------------------ against a model
    def assignments(self, model: nn.Module) -> dict[str, dict[str, Spec]]:
        """Layer -> {slot: spec} this plan sets on ``model`` (after validating it against it).

        Slots the defaults cover are always present (None = float); other slots (batch-norm
        statistics, pooling reciprocal, fused dense activations) only when the plan names them.
        """
        from hqrun.quantizers.layers import WEIGHT_LAYERS, QActivation, QInput

        children = dict(model.named_children())
        self.validate(model)
        out: dict[str, dict[str, Spec]] = {}
        for lname, layer in children.items():
            slots = _slots(layer)
            entry: dict[str, Spec] = {}
            if isinstance(layer, QInput):
                entry["activation"] = self.input
            elif isinstance(layer, WEIGHT_LAYERS):
                for s in ("kernel", "bias"):
                    if s in slots:
                        entry[s] = self.default.get(s)
            elif isinstance(layer, QActivation) and layer.float_function == "relu":
                entry["activation"] = self.default.get("activation")
            entry.update(self.layers.get(lname, {}))
            if entry:
                out[lname] = entry
        return out

    def validate(self, model: nn.Module) -> None:
        """Raise PlanError if the plan names a layer or slot the model lacks, or a bad spec."""
        children = dict(model.named_children())
        for lname, entry in self.layers.items():
            if lname not in children:
                raise PlanError(
                    f"plan {self.name!r} names layer {lname!r}, which the model does not have. "
                    f"Valid layer names: {', '.join(children)}. Fix the name under `layers:`."
                )
            slots = _slots(children[lname])
            for s in entry:
                if s not in slots:
                    has = ", ".join(slots) if slots else "none (it has no quantizers)"
                    raise PlanError(
                        f"plan {self.name!r} sets {s!r} on layer {lname!r} "
                        f"({type(children[lname]).__name__}), which has no {s} slot; its slots: "
                        f"{has}. Remove the entry or move it to the right layer."
                    )
        for where, spec in self._all_specs():
            _parse(self.name, where, spec)

    def _all_specs(self):
        yield "input", self.input
        for s, v in self.default.items():
            yield f"default.{s}", v
        for lname, entry in self.layers.items():
            for s, v in entry.items():
                yield f"layers.{lname}.{s}", v


def _slots(layer: nn.Module) -> tuple[str, ...]:
    fn = getattr(layer, "slots", None)
    return tuple(fn()) if callable(fn) else ()


def _parse(plan_name: str, where: str, spec: Spec) -> None:
    if spec is None or isinstance(spec, nn.Module):
        return
    from hqrun.quantizers.layers_core import resolve_activation

    try:
        resolve_activation(spec)
    except HqrunError as err:
        raise PlanError(f"plan {plan_name!r}, {where}: {err}") from None


def apply_plan(model: nn.Module, plan: "Plan | Mapping[str, Any] | str | None") -> nn.Module:
    """Put the plan's quantizers into ``model``'s layers in place; returns ``model``."""
    plan = load_plan(plan)
    children = dict(model.named_children())
    for lname, entry in plan.assignments(model).items():
        layer = children[lname]
        for slot, spec in entry.items():
            try:
                layer.set_quantizer(slot, spec)
            except HqrunError as err:
                raise PlanError(f"plan {plan.name!r}, layers.{lname}.{slot}: {err}") from None
    from hqrun.models.materialize import materialize

    return materialize(model)


def plan_from_model(model: nn.Module, name: str = "from_model") -> Plan:
    """The plan that reproduces ``model``'s quantizers when applied to a freshly built float model.

    Only quantized slots are written (float is what a fresh build has everywhere), so the YAML
    stays short enough to read and edit.
    """
    from hqrun.quantizers.layers import QInput, is_quantizer

    plan = Plan(name=name)
    for lname, layer in model.named_children():
        if not callable(getattr(layer, "slots", None)):
            continue
        entry = {s: str(layer.quantizer(s)) for s in layer.slots()
                 if is_quantizer(layer.quantizer(s))}
        if isinstance(layer, QInput):
            plan.input = entry.get("activation")
        elif entry:
            plan.layers[lname] = entry
    return plan


# ---------------------------------------------------------------- named plans
_QN = re.compile(r"^q(\d+)$")


def homogeneous_plan(bits: int, name: str | None = None) -> Plan:
    """The paper's homogeneous scheme Q<bits>: ``quantized_bits(bits,0,alpha=1)`` kernels and
    biases, ``quantized_relu(bits,0)`` activations, float input."""
    if int(bits) < 1:
        raise PlanError(f"q{bits}: a homogeneous plan needs at least 1 bit.")
    b = int(bits)
    spec = f"quantized_bits({b},0,alpha=1)"
    return Plan(name=name or f"q{b}", input=None,
                default={"kernel": spec, "bias": spec, "activation": f"quantized_relu({b},0)"})


def float_plan() -> Plan:
    """No quantizer anywhere."""
    return Plan(name="float")


def _packaged_plans() -> dict[str, Any]:
    """name -> YAML resource of the plans shipped in hqrun.conf/quant (checkout or wheel)."""
    from importlib import resources

    try:
        folder = resources.files("hqrun.conf") / "quant"
        return {p.name.rsplit(".", 1)[0]: p for p in folder.iterdir() if p.name.endswith(".yaml")}
    except (ModuleNotFoundError, FileNotFoundError):  # pragma: no cover - broken install
        return {}


def load_plan(source: "Plan | Mapping[str, Any] | str | Path | None") -> Plan:
    """A Plan from a Plan, a mapping (e.g. ``cfg.quant``), a YAML path, or a name.

    Names are the plans in ``conf/quant`` (``float``, ``q6``, ...) and any ``q<n>``. A string
    that ends in ``.yaml``/``.yml`` or names an existing file is read as a plan file: this is
    what ``quant=path/to/plan.yaml`` on the command line resolves to. ``None`` means float.
    """
    if source is None:
        return float_plan()
    if isinstance(source, Plan):
        return source
    source = _plain(source)
    if isinstance(source, Mapping):
        return Plan.from_dict(source)
    if isinstance(source, Path) or (isinstance(source, str) and (
            source.endswith((".yaml", ".yml")) or "/" in source or Path(source).is_file())):
        return Plan.from_yaml(str(source))
    if isinstance(source, str):
        packaged = _packaged_plans()
        if source in packaged:
            import yaml

            return Plan.from_dict(yaml.safe_load(packaged[source].read_text()))
        m = _QN.match(source)
        if m:
            return homogeneous_plan(int(m.group(1)))
        if source == "float":
            return float_plan()
        names = sorted(set(packaged) | {"float", "q<n>"})
        raise PlanError(
            f"unknown quantization plan {source!r}. Use a plan name ({', '.join(names)}) or the "
            "path of a plan YAML file (quant=path/to/plan.yaml)."
        )
    raise PlanError(f"cannot read a quantization plan from a {type(source).__name__}; pass a "
                    "name, a YAML path, a mapping or a Plan.")
