"""The ``layers`` model: an architecture written out as a list of layer specs.

Why: ``mlp`` and ``cnn`` describe families by a few numbers, which is what a search tunes, but a
model made elsewhere (an imported QONNX graph, a hand-written network) can have any sequence of
layers — a dense layer without a ReLU after it, a quantizing activation on its own, convolutions
of different kernel sizes. ``layers`` builds exactly the sequence it is given, so any model hqrun
has the layers for can be written down as a config (``hqrun import`` writes one) and rebuilt by
every command that builds models from a config (train, cost, firmware, search).

```yaml
model:
  name: layers
  n_inputs: 16              # flat inputs; images: input_shape: [1, 8, 8] (channels first)
  layers:
    - {type: input}
    - {type: dense, units: 64}
    - {type: relu}
    - {type: dense, units: 5}
    - {type: softmax}
```

Each entry has a ``type`` (below) and optionally a ``name`` (default: ``dense_1``, ``relu_1``,
``conv_1``, ``pool_1``, ``act_1`` counted per type; ``input``, ``flatten``, ``softmax``). Input
sizes (``in_features``, ``in_channels``) follow from the layers before, so only output sizes are
given. Quantizers come from the plan, by layer name, as for every model.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from hqrun.errors import ConfigError
from hqrun.models.sequential import QSequential
from hqrun.quantizers.layers import (
    Flatten,
    QActivation,
    QAveragePooling2D,
    QConv1D,
    QConv2D,
    QDense,
    QDepthwiseConv2D,
    QInput,
)

__all__ = ["layers", "LAYER_TYPES"]

Factory = Callable[[tuple[int, ...], dict[str, Any]], nn.Module]


def _channels(shape: tuple[int, ...], kind: str, nd: int) -> int:
    if len(shape) != nd + 1:
        raise ConfigError(f"a {kind} layer needs a ({'C, L' if nd == 1 else 'C, H, W'}) input "
                          f"but gets shape {list(shape)}; check the layers before it.")
    return shape[0]


def _dense(shape: tuple[int, ...], opts: dict[str, Any]) -> nn.Module:
    if len(shape) != 1:
        raise ConfigError(f"a dense layer needs a flat input but gets shape {list(shape)}; put a "
                          "{type: flatten} layer before it.")
    return QDense(shape[0], int(opts.pop("units")), **opts)


def _conv(nd: int) -> Factory:
    cls = QConv1D if nd == 1 else QConv2D

    def make(shape: tuple[int, ...], opts: dict[str, Any]) -> nn.Module:
        return cls(_channels(shape, f"conv{nd}d", nd), int(opts.pop("filters")),
                   opts.pop("kernel_size"), **opts)

    return make


def _depthwise(shape: tuple[int, ...], opts: dict[str, Any]) -> nn.Module:
    return QDepthwiseConv2D(_channels(shape, "depthwise_conv2d", 2), opts.pop("kernel_size"), **opts)


#: ``type`` -> (factory from the input shape and the options, required options).
LAYER_TYPES: dict[str, tuple[Factory, tuple[str, ...]]] = {
    "input": (lambda shape, opts: QInput(**opts), ()),
    "dense": (_dense, ("units",)),
    "conv1d": (_conv(1), ("filters", "kernel_size")),
    "conv2d": (_conv(2), ("filters", "kernel_size")),
    "depthwise_conv2d": (_depthwise, ("kernel_size",)),
    "avgpool2d": (lambda shape, opts: QAveragePooling2D(**opts), ()),
    "flatten": (lambda shape, opts: Flatten(**opts), ()),
    "relu": (lambda shape, opts: QActivation("relu", **opts), ()),
    "activation": (lambda shape, opts: QActivation(None, **opts), ()),
    "softmax": (lambda shape, opts: QActivation("softmax", **opts), ()),
}

#: Default names: a per-type counter appended to this prefix (None: the bare name, used once).
_PREFIX = {"input": None, "dense": "dense", "conv1d": "conv", "conv2d": "conv",
           "depthwise_conv2d": "conv", "avgpool2d": "pool", "flatten": None, "relu": "relu",
           "activation": "act", "softmax": None}


def _entry(index: int, spec: Any) -> tuple[str, dict[str, Any], str | None]:
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ConfigError(
            f"model layers[{index}] is {spec!r}; each layer is a mapping with a `type` "
            f"({', '.join(LAYER_TYPES)}), e.g. {{type: dense, units: 32}}."
        )
    opts = dict(spec)
    kind = str(opts.pop("type"))
    name = opts.pop("name", None)
    if kind not in LAYER_TYPES:
        raise ConfigError(f"model layers[{index}] has type {kind!r}; the layer types are "
                          f"{', '.join(LAYER_TYPES)}.")
    missing = [k for k in LAYER_TYPES[kind][1] if k not in opts]
    if missing:
        raise ConfigError(f"model layers[{index}] ({kind}) lacks {', '.join(missing)}.")
    return kind, opts, None if name is None else str(name)


def layers(layers: Sequence[Mapping[str, Any]], n_inputs: int | None = None,
           input_shape: Sequence[int] | None = None) -> QSequential:
    """Build exactly the listed layers (see the module docstring for the spec format).

    Give ``n_inputs`` for flat inputs or ``input_shape`` (channels first) for images and
    sequences, not both.
    """
    if (n_inputs is None) == (input_shape is None):
        raise ConfigError("model `layers` needs exactly one of n_inputs (flat inputs) or "
                          "input_shape (channels first, e.g. [1, 8, 8]).")
    shape = (int(n_inputs),) if n_inputs is not None else tuple(int(v) for v in input_shape)
    if not layers:
        raise ConfigError("model `layers` has an empty layer list; give at least one layer.")
    built: "OrderedDict[str, nn.Module]" = OrderedDict()
    counters: dict[str, int] = {}
    x = torch.zeros((1,) + shape)
    for index, spec in enumerate(layers):
        kind, opts, name = _entry(index, spec)
        prefix = _PREFIX[kind]
        counters[prefix or kind] = counters.get(prefix or kind, 0) + 1
        if name is None:
            name = kind if prefix is None else f"{prefix}_{counters[prefix]}"
        if name in built:
            raise ConfigError(f"model layers[{index}] is named {name!r} like an earlier layer; "
                              "give each layer its own name.")
        try:
            module = LAYER_TYPES[kind][0](tuple(x.shape[1:]), opts)
        except TypeError as err:
            raise ConfigError(f"model layers[{index}] ({kind}): {err}.") from None
        with torch.no_grad():
            x = module.eval()(x)  # the next layer's input shape
        built[name] = module.train()
    return QSequential(built, input_shape=shape)
