"""Shared machinery of the quantized layers: quantizer resolution, Keras initialisers, base class.

Why a base class: the plan applier (``hqrun.models``), the type inference and the firmware all
need to ask a layer the same three questions — which quantizer slots it has, which quantizer
sits in each, and what its quantized weights are — without knowing the concrete layer type.
``QLayer`` answers them through ``plan_slots``, ``quantizer(slot)`` / ``set_quantizer(slot, spec)``
and the ``quantized_*()`` methods of the weight layers.

Layout: activations are channels-first (PyTorch ``(N, C)``, ``(N, C, L)``, ``(N, C, H, W)``) and
weights use PyTorch's layout (``weight`` of a dense layer is ``(units, in_features)``). Kernel
quantizers, however, are always handed the kernel in **Keras layout** (output channel last),
because QKeras's per-channel scales (``alpha="auto"``) reduce over every axis but the last; the
quantized kernel is transposed back afterwards, so the numbers are QKeras's. Element-wise
quantizers (no data-dependent scale) get the PyTorch-layout tensor directly: the layout cannot
change their result and the transposes would cost time in every training step.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

from hqrun.errors import ConfigError

#: Float activation names a layer accepts in place of a quantizer spec (QKeras accepts Keras's).
FLOAT_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "softmax": lambda: nn.Softmax(dim=-1),
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
}

#: The torch class each float activation name builds (for reading a module back as a name).
_FLOAT_CLASSES: dict[type, str] = {nn.ReLU: "relu", nn.Softmax: "softmax", nn.Sigmoid: "sigmoid",
                                   nn.Tanh: "tanh"}


def float_function_of(module: Any) -> str | None:
    """The float activation name (relu, softmax, sigmoid, tanh) a torch module computes, or None."""
    for cls, name in _FLOAT_CLASSES.items():
        if isinstance(module, cls):
            return name
    return None


#: Names that mean "no activation / no quantizer".
_NOOP_NAMES = {"", "none", "linear", "identity"}


def _placed(q: Any, slot: str | None) -> Any:
    """``q`` as it serves plan slot ``slot`` (see ``Quantizer.for_slot``)."""
    fn = getattr(q, "for_slot", None)
    return fn(slot) if slot is not None and callable(fn) else q


def resolve_quantizer(spec: Any, slot: str | None = None) -> nn.Module | None:
    """Turn a spec string, dict, quantizer object or ``None`` into a quantizer module (or None).

    ``None`` (and QKeras's "linear"/empty spec) means the slot stays in float, which lets the
    layers skip the quantizer call entirely instead of running an identity op every step.
    ``slot`` names the plan slot the quantizer will serve (``Quantizer.for_slot``).
    """
    if spec is None:
        return None
    if isinstance(spec, str) and spec.strip().lower() in _NOOP_NAMES:
        return None
    if isinstance(spec, nn.Module):
        return _placed(spec, slot)
    from hqrun import quantizers as _q  # late: quantizers/__init__ may import this module

    q = _q.get(spec)
    return _placed(q, slot) if isinstance(q, nn.Module) else None


def resolve_kernel_quantizer(spec: Any, slot: str | None = None) -> nn.Module | None:
    """A quantizer for a kernel-like weight: QKeras's layers call ``_set_trainable_parameter()``
    on it, which turns ``alpha=None`` into ``"auto_po2"`` for several quantizers; the quantizer's
    ``for_kernel()`` reproduces that quirk."""
    q = resolve_quantizer(spec, slot)
    fn = getattr(q, "for_kernel", None)
    return fn() if callable(fn) else q


def is_elementwise(q: nn.Module | None) -> bool:
    """True when ``q``'s output for one element depends on that element only.

    Then the kernel layout does not matter and the layers skip the transposes into Keras
    layout (a measurable share of a QAT step on the small jet model). Each quantizer class says
    so itself (``Quantizer.elementwise``); a string alpha ("auto"/"auto_po2") or an explicit
    ``scale_axis`` makes any of them per-channel.
    """
    if q is None:
        return True
    if isinstance(getattr(q, "alpha", None), str) or getattr(q, "scale_axis", None) is not None:
        return False
    return bool(getattr(q, "elementwise", False))


def resolve_activation(spec: Any, slot: str | None = "activation") -> nn.Module | None:
    """Like :func:`resolve_quantizer` but also accepting Keras's float activation names."""
    if isinstance(spec, str) and spec.strip().lower() in FLOAT_ACTIVATIONS:
        return FLOAT_ACTIVATIONS[spec.strip().lower()]()
    return resolve_quantizer(spec, slot)


def is_quantizer(module: nn.Module | None) -> bool:
    """True when ``module`` is an hqrun quantizer (as opposed to a float activation or None)."""
    if module is None:
        return False
    from hqrun import quantizers as _q

    base = getattr(_q, "Quantizer", None)
    if base is not None and isinstance(module, base):
        return True
    return hasattr(module, "fixed_point_type") and hasattr(module, "bits")


def spec_of(module: nn.Module | None) -> str | None:
    """The spec string of a slot's content: the quantizer's ``str()``, a float name, or None."""
    if module is None:
        return None
    if is_quantizer(module):
        return str(module)
    return float_function_of(module) or type(module).__name__


# ---------------------------------------------------------------- Keras initialisers
def _fans(shape_keras: tuple[int, ...]) -> tuple[int, int]:
    """Keras's fan computation on a kernel shape given in Keras layout (receptive field first)."""
    if len(shape_keras) == 2:
        return shape_keras[0], shape_keras[1]
    receptive = math.prod(shape_keras[:-2])
    return shape_keras[-2] * receptive, shape_keras[-1] * receptive


def keras_init_(tensor: torch.Tensor, name: str, shape_keras: tuple[int, ...],
                generator: torch.Generator | None = None) -> None:
    """Initialise ``tensor`` in place as Keras's initialiser ``name`` would a kernel of ``shape_keras``.

    Fans are computed from the Keras shape so results are comparable with QKeras models
    (PyTorch's own fan rule differs for depthwise kernels).
    """
    fan_in, fan_out = _fans(shape_keras)
    key = name.lower()
    with torch.no_grad():
        if key == "glorot_uniform":
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            tensor.uniform_(-limit, limit, generator=generator)
        elif key == "lecun_uniform":
            limit = math.sqrt(3.0 / fan_in)
            tensor.uniform_(-limit, limit, generator=generator)
        elif key == "he_uniform":
            limit = math.sqrt(6.0 / fan_in)
            tensor.uniform_(-limit, limit, generator=generator)
        elif key in ("he_normal", "glorot_normal", "lecun_normal"):
            fan = {"he_normal": fan_in, "lecun_normal": fan_in,
                   "glorot_normal": (fan_in + fan_out) / 2.0}[key]
            scale = 2.0 if key == "he_normal" else 1.0
            # Keras's truncated normal: stddev corrected for the truncation at 2 sigma.
            std = math.sqrt(scale / fan) / 0.87962566103423978
            nn.init.trunc_normal_(tensor, 0.0, std, -2 * std, 2 * std, generator=generator)
        elif key == "zeros":
            tensor.zero_()
        elif key == "ones":
            tensor.fill_(1.0)
        else:
            raise ConfigError(
                f"unknown kernel_initializer {name!r}; use one of glorot_uniform (Keras's default), "
                "glorot_normal, he_uniform, he_normal, lecun_uniform, lecun_normal, zeros, ones."
            )


def conv_padding(padding: str, size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """(before, after) padding of one spatial axis, Keras style ('valid' or TF's 'same')."""
    mode = padding.lower()
    if mode == "valid":
        return 0, 0
    if mode != "same":
        raise ConfigError(f"padding={padding!r} is not supported; use 'valid' or 'same' as in Keras.")
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...],
             dilation: tuple[int, ...], padding: str) -> torch.Tensor:
    """Pad the trailing spatial axes of ``x`` like TensorFlow does (asymmetric for even totals)."""
    if padding.lower() == "valid":
        return x
    pads: list[int] = []
    n = len(kernel)
    for axis in reversed(range(n)):  # F.pad wants the last axis first
        before, after = conv_padding(padding, x.shape[-n + axis], kernel[axis], stride[axis],
                                     dilation[axis])
        pads += [before, after]
    return F.pad(x, pads) if any(pads) else x


def as_tuple(value: int | tuple[int, ...] | list[int], n: int, name: str) -> tuple[int, ...]:
    """Keras accepts ``3`` or ``(3, 3)``; normalise to an n-tuple of positive ints."""
    if isinstance(value, int):
        out = (value,) * n
    else:
        out = tuple(int(v) for v in value)
    if len(out) != n or any(v <= 0 for v in out):
        raise ConfigError(f"{name}={value!r} must be a positive int or a tuple of {n} positive ints.")
    return out


# ---------------------------------------------------------------- base class
class QLayer(nn.Module):
    """Base of hqrun's quantized layers.

    ``plan_slots`` maps a plan slot name (``kernel``, ``bias``, ``activation``, ...) to the
    attribute that holds that slot's quantizer. ``float_function`` names the float operation an
    activation layer computes when unquantized (the plan's default activation applies to "relu").
    """

    plan_slots: dict[str, str] = {}
    #: Slots whose quantizer gets QKeras's kernel treatment (see resolve_kernel_quantizer).
    kernel_like_slots: tuple[str, ...] = ("kernel",)
    #: Slot -> parameter that QKeras clips after every optimizer step when the slot is quantized.
    constrained_params: dict[str, str] = {}
    float_function: str | None = None
    #: What the layer computes, for the type inference, cost model and firmware (one of
    #: hqrun.quantizers.layer_kinds.LAYER_KINDS): they dispatch on this, never on class names.
    type_kind: str | None = None
    #: The Keras/QKeras layer class it mirrors (AutoQKeras's search-limit vocabulary).
    keras_class: str = ""

    def slots(self) -> tuple[str, ...]:
        """The plan slots this instance accepts (e.g. no ``bias`` when ``use_bias=False``)."""
        return tuple(self.plan_slots)

    def quantizer(self, slot: str) -> nn.Module | None:
        """The module currently in ``slot`` (a quantizer, a float activation, or None)."""
        return getattr(self, self.plan_slots[slot])

    def set_quantizer(self, slot: str, spec: Any) -> None:
        """Put the quantizer described by ``spec`` (string, dict, object or None) into ``slot``."""
        if slot not in self.slots():
            raise KeyError(slot)
        if slot == "activation":
            resolver = resolve_activation
        elif slot in self.kernel_like_slots:
            resolver = resolve_kernel_quantizer
        else:
            resolver = resolve_quantizer
        setattr(self, self.plan_slots[slot], resolver(spec, slot))

    def constraints(self) -> list[tuple[torch.Tensor, float]]:
        """``(parameter, m)`` for QKeras's default ``Clip`` constraint of each quantized slot:
        the parameter is clipped to ``[-m, m]`` with ``m = max(1, quantizer.max())``.

        Keras applies it after every optimizer update; it keeps float shadow weights from
        drifting far outside the quantizer's range, where their gradient would be useless.
        """
        out = []
        slots = self.slots()
        for slot, pname in self.constrained_params.items():
            if slot not in slots:
                continue
            q, p = self.quantizer(slot), getattr(self, pname, None)
            if q is None or p is None:
                continue
            top = q.max() if callable(getattr(q, "max", None)) else None
            if top is not None and math.isinf(top):
                continue  # unbounded (learned widths): no clip
            out.append((p, max(1.0, float(top)) if top is not None else 1.0))
        return out

    def constrain_(self) -> None:
        """Apply :meth:`constraints` in place (see ``hqrun.models.attach_weight_constraints``)."""
        with torch.no_grad():
            for p, m in self.constraints():
                p.clamp_(-m, m)

    def quantizer_specs(self) -> dict[str, str | None]:
        """Slot -> spec string of what is in it (None = float), e.g. for writing a plan back."""
        return {slot: spec_of(self.quantizer(slot)) for slot in self.slots()}

    def extra_repr(self) -> str:
        return ""  # the quantizers print themselves as child modules


def apply_output_activation(layer: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """Apply a layer's fused ``activation`` (QKeras's ``activation=`` argument) when present."""
    act = layer.activation
    return y if act is None else act(y)


class QActivation(QLayer):
    """QKeras's ``QActivation``: applies a quantizer (or a float activation) element-wise.

    ``activation`` may be a quantizer spec/object or a float name ("relu", "softmax", ...).
    ``float_function`` records what the layer computes unquantized, so that a plan's default
    activation quantizer can be applied to ReLU layers only (never to the output softmax). When
    not given it is inferred: ``quantized_relu*`` and "relu" mean "relu".
    """

    plan_slots = {"activation": "activation"}
    type_kind = "activation"
    keras_class = "Activation"

    def __init__(self, activation: Any, float_function: str | None = None) -> None:
        super().__init__()
        self.activation = resolve_activation(activation)
        if float_function is None:
            float_function = _infer_float_function(activation, self.activation)
        self.float_function = float_function

    def slots(self) -> tuple[str, ...]:
        """A softmax output layer takes no quantizer: replacing it would change the function
        (QKeras models keep the final softmax in float; the firmware implements it with a table)."""
        return () if self.float_function == "softmax" else ("activation",)

    def set_quantizer(self, slot: str, spec: Any) -> None:
        """A ``None`` spec restores the float function rather than removing the activation."""
        if slot not in self.slots():
            raise KeyError(slot)
        if resolve_quantizer(spec) is None and self.float_function in FLOAT_ACTIVATIONS:
            self.activation = FLOAT_ACTIVATIONS[self.float_function]()
        elif resolve_quantizer(spec) is None:
            self.activation = None
        else:
            self.activation = resolve_activation(spec, slot)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.activation is None else self.activation(x)


def _infer_float_function(spec: Any, module: nn.Module | None) -> str | None:
    """The float function an activation layer stands for: a float name, or what its quantizer
    says it approximates (``Quantizer.float_function``: relu, sigmoid, tanh or None)."""
    if isinstance(spec, str) and spec.strip().lower() in FLOAT_ACTIVATIONS:
        return spec.strip().lower()
    return getattr(module, "float_function", None) or float_function_of(module)


class QInput(QLayer):
    """Input quantizer layer: quantizes the network input (identity when the quantizer is None).

    The quantizer is stored as ``activation`` (the slot name plans use) and also reachable as
    ``quantizer_module`` for readability in firmware code.
    """

    plan_slots = {"activation": "activation"}
    type_kind = "input"
    keras_class = "Input"

    def __init__(self, quantizer: Any = None) -> None:
        super().__init__()
        self.activation = resolve_quantizer(quantizer, "activation")

    @property
    def quantizer_module(self) -> nn.Module | None:
        return self.activation

    def set_quantizer(self, slot: str, spec: Any) -> None:
        if slot != "activation":
            raise KeyError(slot)
        self.activation = resolve_quantizer(spec, slot)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.activation is None else self.activation(x)
