"""The `Quantizer` base class: the contract every quantizer fulfils.

A quantizer is a stateless ``torch.nn.Module`` described completely by its QKeras-style
constructor arguments. That description (its *spec*) is what plans, result tables and firmware
reports store, so the base class derives everything spec-related from the subclass's
``__init__`` signature: ``str(q)`` (parsed back by :func:`hqrun.quantizers.get`), ``get_config()``
(QKeras's dict form), and equality.

Equality vs hashing: ``q1 == q2`` compares specs, but ``hash(q)`` stays identity-based. PyTorch
de-duplicates children with a ``set`` (``Module.named_children``), so a spec-based hash would make
``model.eval()``/``.to()`` skip the second of two equal quantizers in a layer (e.g. identical
kernel and bias quantizers). Use :attr:`Quantizer.key` (or ``str(q)``) as a dict key instead.

Modes: in training mode the forward reproduces QKeras 0.9.0's float32 graph bit for bit
(``x + stop_gradient(xq - x)``, stochastic rounding where requested). In eval mode it follows
QKeras's inference branch (deterministic) and returns the exact grid value ``xq``; the two differ
only where QKeras's float32 residue ``x + (xq - x)`` is not exactly ``xq`` (|x| >= 2**24 LSB).
"""

from __future__ import annotations

import inspect
import math
from typing import Any, ClassVar

import torch
from torch import nn

from hqrun.errors import CostModelError, FirmwareError, QuantizerSpecError

from .fixedpoint import FixedPointType
from .grid import FixedPointGrid
from .lowering import Lowering
from .operand import Operand

__all__ = ["Quantizer", "registry", "format_value"]

_REGISTRY: dict[str, type["Quantizer"]] = {}
_SIGNATURES: dict[type, dict[str, Any]] = {}


def registry() -> dict[str, type["Quantizer"]]:
    """Name -> class of every registered quantizer (a copy)."""
    return dict(_REGISTRY)


def format_value(value: Any) -> str:
    """Spec text for one argument value, parseable by ``ast.literal_eval``."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)


def _normalize(value: Any) -> Any:
    """Hashable, comparison-friendly form of a config value (1 == 1.0 == True stays equal)."""
    if isinstance(value, (list, tuple)):
        return tuple(_normalize(v) for v in value)
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


class Quantizer(nn.Module):
    """Base of all quantizers (forward with QKeras's straight-through gradients).

    Subclasses set ``name`` (the QKeras name, also the spec name), ``positional`` (how many
    leading arguments ``str()`` writes without keywords) and implement ``forward``. Attributes
    named like the ``__init__`` arguments hold the configuration. Treat a quantizer as immutable
    (constants are cached at construction): to change a setting, build a new one with ``get``.
    """

    name: ClassVar[str] = ""
    positional: ClassVar[int] = 0
    #: True when each output element depends on its own input element only (no data-dependent
    #: per-channel scale): layers then hand such quantizers the PyTorch-layout kernel directly,
    #: skipping the transposes into Keras layout (``layers_core.is_elementwise``).
    elementwise: ClassVar[bool] = False
    #: The float activation this quantizer stands for in an activation layer (relu, sigmoid,
    #: tanh) or None; a plan's default activation applies to layers whose function is relu.
    float_function: ClassVar[str | None] = None
    bits: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            _REGISTRY[cls.name] = cls

    def __init__(self) -> None:
        super().__init__()
        # Last per-channel scale used (alpha="auto"/"auto_po2"), as QKeras's ``quantizer.scale``.
        self.scale: torch.Tensor | float | None = None

    # ---------------------------------------------------------------- spec
    @classmethod
    def arg_defaults(cls) -> dict[str, Any]:
        """Constructor arguments and their defaults, in QKeras's order (cached per class)."""
        cached = _SIGNATURES.get(cls)
        if cached is None:
            params = list(inspect.signature(cls.__init__).parameters.values())[1:]
            cached = {p.name: p.default for p in params if p.kind is p.POSITIONAL_OR_KEYWORD}
            _SIGNATURES[cls] = cached
        return dict(cached)

    @classmethod
    def arg_names(cls) -> list[str]:
        """Constructor argument names in QKeras's order."""
        return list(cls.arg_defaults())

    def get_config(self) -> dict[str, Any]:
        """All constructor arguments, QKeras ``get_config`` style (``cls(**config)`` rebuilds)."""
        return {name: getattr(self, name) for name in self.arg_names()}

    def to_dict(self) -> dict[str, Any]:
        """``{"class_name": ..., "config": {...}}``, the dict form :func:`get` accepts."""
        return {"class_name": self.name, "config": self.get_config()}

    @property
    def key(self) -> tuple:
        """Hashable identity of the spec (use as a dict key; see module docstring)."""
        cfg = self.get_config()
        return (self.name,) + tuple((k, _normalize(cfg[k])) for k in self.arg_names())

    def __str__(self) -> str:
        cfg = self.get_config()
        defaults = self.arg_defaults()
        names = self.arg_names()
        parts = [format_value(cfg[n]) for n in names[: self.positional]]
        for n in names[self.positional :]:
            value, default = cfg[n], defaults[n]
            same = isinstance(value, str) == isinstance(default, str) and (
                _normalize(value) == _normalize(default)
            )
            if not same:
                parts.append(f"{n}={format_value(value)}")
        return f"{self.name}({','.join(parts)})"

    def __repr__(self) -> str:
        return str(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Quantizer):
            return NotImplemented
        return self.key == other.key

    def __hash__(self) -> int:  # identity: see module docstring
        return object.__hash__(self)

    # ---------------------------------------------------------- properties
    @property
    def is_stochastic(self) -> bool:
        """True when training-mode outputs depend on random draws (seed with torch.manual_seed)."""
        return False

    @property
    def inference_cacheable(self) -> bool:
        """Whether a layer may reuse this quantizer's inference output for unchanged parameter
        bits (``inference_cache``): deterministic quantizers, unless recomputing is cheaper."""
        return not self.is_stochastic

    @property
    def straight_through(self) -> bool:
        """True when the training gradient with respect to the input is exactly the incoming
        gradient (QKeras's ``x + stop_gradient(xq - x)`` with ``use_ste``, no partial
        quantization, no random draws): a fused training chain (``qkeras_chain``) may then take
        :meth:`training_value` and pass gradients through without an autograd node."""
        return False

    def training_value(self, x: torch.Tensor) -> torch.Tensor:
        """The training forward's value of ``x`` without a graph, bit for bit what ``self(x)``
        returns with gradients on (subclasses with a faster exact route override it)."""
        with torch.no_grad():
            return self(x)

    @property
    def emulate_residue(self) -> bool:
        """Whether forward reproduces QKeras's float32 ``x + (xq - x)`` residue: in training
        mode for deterministic quantizers only (stochastic draws stay exactly on the grid)."""
        return self.training and not self.is_stochastic

    @property
    def grid_from_values(self) -> bool:
        """True when the output grid is chosen from the data (``alpha="auto_po2"``: a power-of-two
        scale per channel). The values then lie on a fixed-point grid that only the quantized
        values themselves reveal, so cost model and firmware read the type off them."""
        return getattr(self, "alpha", None) == "auto_po2"

    @property
    def is_identity(self) -> bool:
        """True for the no-op ``linear`` quantizer."""
        return False

    def fixed_point_type(self) -> FixedPointType | None:
        """The fixed-point type holding every output value, or None when outputs are not on one
        fixed grid (data-dependent scales such as alpha="auto", non-power-of-two alpha)."""
        return None

    def fixed_point_grid(self) -> FixedPointGrid | None:
        """Per-element formats of the outputs (``None`` when not on fixed-point grids).

        Uniform quantizers return their one type as a grid of scalars (it broadcasts to any
        tensor); quantizers whose elements have their own widths return arrays in the layout of
        the tensor they quantize, and :meth:`fixed_point_type` is then the grid's union.
        """
        t = self.fixed_point_type()
        return None if t is None else FixedPointGrid.uniform(t)

    def for_slot(self, slot: str) -> "Quantizer":
        """The quantizer to place into a layer's plan ``slot`` (``kernel``, ``bias``,
        ``activation``, ...). Layers call it for every quantizer they receive, so a quantizer
        whose behaviour depends on what it quantizes (a weight or a stream of activations) can
        take that role, or refuse a slot it cannot serve. QKeras's quantizers serve any slot."""
        return self

    def for_slot(self, slot: str) -> "Quantizer":
        """The quantizer to place into a layer's plan ``slot`` (``kernel``, ``bias``,
        ``activation``, ...). Layers call it for every quantizer they receive, so a quantizer
        whose behaviour depends on what it quantizes (a weight or a stream of activations) can
        take that role, or refuse a slot it cannot serve. QKeras's quantizers serve any slot."""
        return self

    def operand(self) -> Operand:
        """What the cost models need to know about the outputs (kind, bits, integer bits, sign).

        The default describes a plain fixed-point value from the QKeras-style ``bits`` /
        ``integer`` / ``keep_negative`` arguments and :meth:`fixed_point_type`; quantizers with
        other arithmetic (powers of two, binary, ternary) override it.
        """
        t = self.fixed_point_type()
        bits = int(getattr(self, "bits", 0) or 0) or (t.width if t is not None else 0)
        integer = getattr(self, "integer", None)
        signed = getattr(self, "keep_negative", None)
        if t is not None:
            signed = t.signed if signed is None else signed
            integer = t.integer - int(t.signed) if integer is None else integer
        if not bits:
            raise CostModelError(
                f"quantizer {self} has no bit width; the cost model needs quantizers that expose "
                "`bits` (QKeras-style) or a fixed_point_type()."
            )
        grid = self.fixed_point_grid()
        return Operand("fixed", bits, int(integer or 0), bool(True if signed is None else signed), t,
                       grid=None if grid is None or grid.is_uniform else grid)

    def lowering(self) -> Lowering:
        """The exact firmware operation of this quantizer in an activation slot.

        Raises :class:`~hqrun.errors.FirmwareError` (one paragraph: why, and what to use) when it
        has none; that is the default, so a new quantizer is refused until it says otherwise.
        """
        raise FirmwareError(
            f"the activation quantizer {self} has no exact fixed-point implementation (hls4ml "
            "would use lookup tables or cannot express it), so the firmware would not be "
            "bit-exact. Use quantized_relu(bits,integer) or quantized_bits(bits,integer) here."
        )

    def max_value(self) -> float | None:
        """Largest output value (QKeras's ``max()``), None when data dependent."""
        return None

    def min_value(self) -> float | None:
        """Smallest output value (QKeras's ``min()``), None when data dependent."""
        return None

    # QKeras spellings.
    def max(self) -> float | None:  # noqa: A003 - QKeras API name
        return self.max_value()

    def min(self) -> float | None:  # noqa: A003 - QKeras API name
        return self.min_value()

    def for_kernel(self) -> "Quantizer":
        """The quantizer QKeras actually uses when this one is a layer's kernel quantizer.

        QKeras 0.9.0's QDense/QConv*/QDepthwiseConv2D call ``_set_trainable_parameter()`` on the
        kernel quantizer, which turns ``alpha=None`` into ``alpha="auto_po2"`` for quantized_bits,
        binary, stochastic_binary, ternary, stochastic_ternary and bernoulli. Layers call this to
        reproduce that; quantizers without the quirk return themselves.
        """
        return self

    def extra_repr(self) -> str:
        return str(self)


#: The widest quantizer hqrun builds. Why a limit: quantizers compute in float32/float64, whose
#: exponent cannot hold 2**bits for thousands of bits (``bits=4096`` ended in an OverflowError),
#: and no FPGA datapath of this kind is wider; 32 bits already exceeds float32's 24-bit mantissa.
MAX_BITS = 32


def check_int(qname: str, arg: str, value: Any, minimum: int | None = None) -> int:
    """Validate an integer argument, naming quantizer and argument in the error (a ``bits``
    argument is also at most :data:`MAX_BITS`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
        isinstance(value, float) and not value.is_integer()
    ):
        raise QuantizerSpecError(
            f"{qname}: argument {arg}={value!r} must be an integer number of bits."
        )
    value = int(value)
    if minimum is not None and value < minimum:
        raise QuantizerSpecError(
            f"{qname}: argument {arg}={value} must be at least {minimum}; "
            f"a quantizer needs {arg} >= {minimum}."
        )
    if arg == "bits" and value > MAX_BITS:
        raise QuantizerSpecError(
            f"{qname}: argument bits={value} is more than {MAX_BITS}, the widest quantizer hqrun "
            f"builds (its arithmetic is float32); use at most {MAX_BITS} bits, or quant=float for "
            "an unquantized layer."
        )
    return value


def check_bits_integer(qname: str, bits: Any, integer: Any, integer_meaning: str) -> tuple[int, int]:
    """Validate ``bits`` (>= 1) and ``integer`` (<= bits); ``integer_meaning`` ends the error."""
    bits = check_int(qname, "bits", bits, 1)
    integer = check_int(qname, "integer", integer)
    if integer < -MAX_BITS:
        raise QuantizerSpecError(
            f"{qname}: argument integer={integer} puts the binary point more than {MAX_BITS} bits "
            f"left of the word; use integer >= {-MAX_BITS}."
        )
    if integer > bits:
        raise QuantizerSpecError(
            f"{qname}: argument integer={integer} exceeds bits={bits}; {integer_meaning}"
        )
    return bits, integer


def check_alpha(qname: str, alpha: Any) -> Any:
    """alpha is None, a positive number, "auto" or "auto_po2"."""
    if alpha is None:
        return None
    if isinstance(alpha, str):
        if alpha not in ("auto", "auto_po2"):
            raise QuantizerSpecError(
                f"{qname}: argument alpha={alpha!r} is not supported; use None, a positive "
                "number, 'auto' or 'auto_po2' (quote the string in a spec)."
            )
        return alpha
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise QuantizerSpecError(
            f"{qname}: argument alpha={alpha!r} must be None, a positive number, 'auto' or "
            "'auto_po2'."
        )
    return alpha


def check_negative_slope(qname: str, slope: Any) -> Any:
    """negative_slope is 0 or a positive power of two (QKeras asserts the same)."""
    if isinstance(slope, bool) or not isinstance(slope, (int, float)):
        raise QuantizerSpecError(f"{qname}: argument negative_slope={slope!r} must be a number.")
    if slope < 0 or (slope != 0 and not math.log2(slope).is_integer()):
        raise QuantizerSpecError(
            f"{qname}: argument negative_slope={slope!r} must be 0 or a power of two "
            "(0.5, 0.25, 0.125, ...) so the negative branch stays a shift in hardware."
        )
    return slope


def check_number(qname: str, arg: str, value: Any, allow_none: bool = True) -> Any:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise QuantizerSpecError(f"{qname}: argument {arg}={value!r} must be a number.")
    return value


def alpha_max_value(alpha: Any) -> float:
    """QKeras's ``max()`` of the alpha-scaled quantizers (binary, ternary, bernoulli).

    1 for ``alpha`` None, "auto" or "auto_po2", else ``max(1, alpha)``.
    """
    if alpha is None or isinstance(alpha, str):
        return 1.0
    return max(1.0, float(alpha))


def with_auto_po2_alpha(quantizer: Quantizer, cls: type | None = None) -> Quantizer:
    """:meth:`Quantizer.for_kernel` of the alpha-scaled quantizers.

    ``quantizer`` itself when it has an alpha, else a ``cls`` (default: its own class) built from
    its config with ``alpha="auto_po2"``.
    """
    if quantizer.alpha is not None:  # type: ignore[attr-defined]
        return quantizer
    return (cls or type(quantizer))(**{**quantizer.get_config(), "alpha": "auto_po2"})


def po2_exponent(value: float) -> int | None:
    """k when value == 2**k exactly, else None."""
    if value <= 0:
        return None
    mantissa, exponent = math.frexp(value)
    return exponent - 1 if mantissa == 0.5 else None
