"""Model builders: architectures as functions of (model config, quantization plan).

Each builder returns a float :class:`QSequential` with stable child names; ``build_model`` then
applies the plan. Building float first and quantizing second is deliberate: the search reuses
one float architecture for many plans (``apply_plan`` on a copy, ``transfer_weights``).

Widths can be scaled (the search tunes them): ``width_multiplier`` is one float for every
hidden layer, a list (one per hidden layer, in order) or a mapping layer name -> float.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from typing import Any, Callable, Mapping, Sequence

from torch import nn

from hqrun.errors import ConfigError
from hqrun.models.layer_list import layers
from hqrun.models.plan import Plan, apply_plan, load_plan
from hqrun.models.sequential import QSequential
from hqrun.quantizers.layers import (
    Flatten,
    QActivation,
    QAveragePooling2D,
    QBatchNormalization,
    QConv2D,
    QDense,
    QDenseBatchnorm,
    QInput,
)

_BN_FLOAT = dict(gamma_quantizer=None, beta_quantizer=None, mean_quantizer=None,
                 variance_quantizer=None)


def _width(base: int, index: int, name: str, multiplier: Any) -> int:
    """Scaled width of hidden layer ``index`` (0-based) called ``name``; at least 1.

    A configured width below 1 is refused rather than clamped: ``hidden: [0, -3]`` used to build
    a 16→1→1→5 network without a word.
    """
    if int(base) < 1:
        raise ConfigError(
            f"layer {name} would have {base} units: every width in the model config (model.hidden, "
            "model.filters, model.dense) must be at least 1, e.g. model.hidden=[64,32,32].")
    if multiplier is None:
        m = 1.0
    elif isinstance(multiplier, (int, float)):
        m = float(multiplier)
    elif isinstance(multiplier, Mapping):
        m = float(multiplier.get(name, 1.0))
    elif isinstance(multiplier, Sequence) and not isinstance(multiplier, str):
        if index >= len(multiplier):
            raise ConfigError(
                f"width_multiplier has {len(multiplier)} entries but the model has more hidden "
                "layers; give one float per hidden layer, one float for all, or {layer: float}."
            )
        m = float(multiplier[index])
    else:
        raise ConfigError(f"width_multiplier={multiplier!r} must be a float, a list or a mapping.")
    if m <= 0:
        raise ConfigError(f"width_multiplier for {name} is {m}; it must be > 0.")
    return max(1, int(round(base * m)))


def mlp(n_inputs: int = 16, n_classes: int = 5, hidden: Sequence[int] = (64, 32, 32),
        batchnorm: bool = False, fold_batchnorm: bool = False, width_multiplier: Any = None,
        kernel_initializer: str = "glorot_uniform") -> QSequential:
    """Fully connected ReLU network: input, (dense_i, [bn_i], relu_i)*, dense_out, softmax.

    With ``fold_batchnorm`` each dense+bn pair is one ``QDenseBatchnorm`` named ``dense_i``
    (QKeras's folded form, what the firmware deploys).
    """
    if int(n_inputs) < 1 or int(n_classes) < 2:
        raise ConfigError(f"mlp needs n_inputs >= 1 and n_classes >= 2 (got {n_inputs}, {n_classes}).")
    layers: "OrderedDict[str, nn.Module]" = OrderedDict(input=QInput())
    width = int(n_inputs)
    for i, h in enumerate(hidden, start=1):
        units = _width(int(h), i - 1, f"dense_{i}", width_multiplier)
        if batchnorm and fold_batchnorm:
            layers[f"dense_{i}"] = QDenseBatchnorm(width, units, kernel_initializer=kernel_initializer)
        else:
            layers[f"dense_{i}"] = QDense(width, units, kernel_initializer=kernel_initializer)
            if batchnorm:
                layers[f"bn_{i}"] = QBatchNormalization(units, **_BN_FLOAT)
        layers[f"relu_{i}"] = QActivation("relu")
        width = units
    out = len(hidden) + 1
    layers[f"dense_{out}"] = QDense(width, int(n_classes), kernel_initializer=kernel_initializer)
    layers["softmax"] = QActivation("softmax")
    return QSequential(layers, input_shape=(int(n_inputs),))


def jet_dnn(n_inputs: int = 16, n_classes: int = 5, hidden: Sequence[int] = (64, 32, 32),
            **kwargs: Any) -> QSequential:
    """The jet-tagging model of the paper: 16 -> 64 -> 32 -> 32 -> 5, ReLU, softmax.

    Children: input, dense_1, relu_1, dense_2, relu_2, dense_3, relu_3, dense_4, softmax (with
    ``batchnorm``: bn_1, bn_2, bn_3 after each hidden dense) — the QKeras model's structure.
    """
    return mlp(n_inputs=n_inputs, n_classes=n_classes, hidden=hidden, **kwargs)


def cnn(input_shape: Sequence[int] = (1, 28, 28), n_classes: int = 10,
        filters: Sequence[int] = (8, 16), kernel_size: int = 3, dense: Sequence[int] = (32,),
        pool_size: int = 2, padding: str = "valid", width_multiplier: Any = None,
        kernel_initializer: str = "glorot_uniform") -> QSequential:
    """Small image CNN (channels-first input, default 1x28x28 as MNIST/Fashion-MNIST).

    Children: input, (conv_i, relu_i, pool_i)*, flatten, (dense_j, relu_k)*, dense_out, softmax.
    ReLU layers are numbered across the whole network (relu_1, relu_2 after convs, relu_3 after
    the first dense...). ``flatten`` uses Keras's channels-last order so dense weights line up
    with a QKeras model's.
    """
    c, h, w = (int(v) for v in input_shape)
    layers: "OrderedDict[str, nn.Module]" = OrderedDict(input=QInput())
    relu = 0
    hidden_index = 0
    for i, f in enumerate(filters, start=1):
        out_c = _width(int(f), hidden_index, f"conv_{i}", width_multiplier)
        hidden_index += 1
        layers[f"conv_{i}"] = QConv2D(c, out_c, kernel_size, padding=padding,
                                      kernel_initializer=kernel_initializer)
        relu += 1
        layers[f"relu_{relu}"] = QActivation("relu")
        layers[f"pool_{i}"] = QAveragePooling2D(pool_size)
        if padding == "valid":
            h, w = h - kernel_size + 1, w - kernel_size + 1
        h, w, c = h // pool_size, w // pool_size, out_c
        if h < 1 or w < 1:
            raise ConfigError(
                f"cnn: the image {tuple(input_shape)} shrinks to nothing after conv_{i}/pool_{i}; "
                "use fewer conv layers, a smaller kernel_size/pool_size or padding: same."
            )
    layers["flatten"] = Flatten()
    width = c * h * w
    for j, units in enumerate(dense, start=1):
        u = _width(int(units), hidden_index, f"dense_{j}", width_multiplier)
        hidden_index += 1
        layers[f"dense_{j}"] = QDense(width, u, kernel_initializer=kernel_initializer)
        relu += 1
        layers[f"relu_{relu}"] = QActivation("relu")
        width = u
    layers[f"dense_{len(dense) + 1}"] = QDense(width, int(n_classes),
                                               kernel_initializer=kernel_initializer)
    layers["softmax"] = QActivation("softmax")
    return QSequential(layers, input_shape=tuple(int(v) for v in input_shape))


#: Model name (``cfg.model.name``) -> builder.
BUILDERS: dict[str, Callable[..., QSequential]] = {"jet_dnn": jet_dnn, "mlp": mlp, "cnn": cnn,
                                                   "layers": layers}


def build_model(model_cfg: Mapping[str, Any], plan: "Plan | Mapping[str, Any] | str | None" = None,
                seed: int | None = None) -> QSequential:
    """Build ``cfg.model`` (e.g. ``{name: jet_dnn, hidden: [64, 32, 32]}``) and apply ``plan``.

    ``seed`` (optional) seeds the weight initialisation so equal seeds give equal models.
    """
    from hqrun.models.plan import _plain

    cfg = dict(_plain(model_cfg) or {})
    name = cfg.pop("name", None)
    if name not in BUILDERS:
        raise ConfigError(
            f"unknown model name {name!r} in the model config; available: {', '.join(BUILDERS)} "
            "(e.g. `model=jet_dnn` or `model.name=mlp`)."
        )
    if seed is not None:
        import torch

        torch.manual_seed(int(seed))
    builder = BUILDERS[name]
    accepted = set(inspect.signature(mlp if builder is jet_dnn else builder).parameters) | \
        set(inspect.signature(builder).parameters)
    accepted.discard("kwargs")
    unknown = sorted(set(cfg) - accepted)
    if unknown:
        raise ConfigError(
            f"model {name!r} has no option(s) {', '.join(unknown)}; its options are "
            f"{', '.join(sorted(accepted))}. Check the spelling of the model.* override."
        )
    model = builder(**cfg)
    model.model_name = name
    return apply_plan(model, load_plan(plan))
