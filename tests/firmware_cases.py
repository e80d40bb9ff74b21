"""Models the firmware tests export: named cases from the issue plus a seeded random generator.

Kept in one helper module so the C-simulation test can compile every case in one hls4ml project
(one g++ run instead of ~25) while the cheap emulation tests reuse the very same models.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import numpy as np
import torch

from hqrun.models import QSequential, build_model
from hqrun.quantizers.layers import (
    Flatten,
    QActivation,
    QAveragePooling2D,
    QConv1D,
    QConv2D,
    QDense,
    QInput,
)

Q6 = {"name": "q6", "input": None,
      "default": {"kernel": "quantized_bits(6,0,alpha=1)", "bias": "quantized_bits(6,0,alpha=1)",
                  "activation": "quantized_relu(6,0)"}, "layers": {}}

HETERO = {"name": "hetero", "input": "quantized_bits(10,3,alpha=1)",
          "default": {"kernel": "quantized_bits(6,0,alpha=1)", "bias": "quantized_bits(6,0,alpha=1)",
                      "activation": "quantized_relu(6,0)"},
          "layers": {"dense_1": {"kernel": "quantized_bits(4,0,alpha=1)", "bias": "quantized_bits(8,3,alpha=1)"},
                     "relu_1": {"activation": "quantized_relu(3,1)"},
                     "dense_2": {"kernel": "quantized_bits(3,0,alpha=1)"},
                     "relu_2": {"activation": "quantized_relu(8,2)"},
                     "dense_3": {"kernel": "quantized_bits(8,1,alpha=1)", "bias": "quantized_bits(4,1,alpha=1)"},
                     "relu_3": {"activation": "quantized_relu(4,0)"},
                     "dense_4": {"kernel": "quantized_bits(5,1,alpha=1)"}}}

EXOTIC = {"name": "exotic", "input": "quantized_bits(8,2,alpha=1)",
          "default": {"kernel": "quantized_bits(6,0,alpha=1)", "bias": "quantized_bits(6,0,alpha=1)",
                      "activation": "quantized_relu(4,1)"},
          "layers": {"dense_1": {"kernel": "binary(alpha=1)"},
                     "dense_2": {"kernel": "ternary(alpha=1)"},
                     "dense_3": {"kernel": "quantized_po2(4,1)"},
                     "dense_4": {"kernel": "quantized_bits(4,0,alpha=\"auto_po2\")"}}}


def _randomise(model: torch.nn.Module, gen: torch.Generator, scale: float = 1.0) -> torch.nn.Module:
    """Non-zero biases and batch-norm statistics, so every path of the arithmetic is exercised."""
    with torch.no_grad():
        for mod in model.modules():
            if getattr(mod, "bias", None) is not None and isinstance(mod.bias, torch.nn.Parameter):
                mod.bias.copy_(torch.randn(mod.bias.shape, generator=gen) * 0.5 * scale)
            if hasattr(mod, "moving_mean") and isinstance(mod.moving_mean, torch.Tensor):
                mod.moving_mean.copy_(torch.randn(mod.moving_mean.shape, generator=gen) * 0.3)
                mod.moving_variance.copy_(torch.rand(mod.moving_variance.shape, generator=gen) + 0.5)
                if getattr(mod, "gamma", None) is not None:
                    mod.gamma.copy_(torch.rand(mod.gamma.shape, generator=gen) + 0.5)
                if getattr(mod, "beta", None) is not None:
                    mod.beta.copy_(torch.randn(mod.beta.shape, generator=gen) * 0.2)
    return model.eval()


def jet_q6(seed: int = 0) -> QSequential:
    return _randomise(build_model({"name": "jet_dnn"}, Q6, seed=seed), torch.Generator().manual_seed(seed))


def jet_hetero(seed: int = 1) -> QSequential:
    return _randomise(build_model({"name": "jet_dnn"}, HETERO, seed=seed), torch.Generator().manual_seed(seed))


def jet_exotic(seed: int = 2) -> QSequential:
    """Binary, ternary, power-of-two and auto_po2-scaled kernels."""
    return _randomise(build_model({"name": "jet_dnn"}, EXOTIC, seed=seed), torch.Generator().manual_seed(seed))


def jet_bn_folded(seed: int = 3) -> QSequential:
    """Batch norm folded into the quantized kernel (QDenseBatchnorm), as deployed."""
    model = build_model({"name": "mlp", "n_inputs": 16, "n_classes": 5, "hidden": [32, 16],
                         "batchnorm": True, "fold_batchnorm": True}, Q6, seed=seed)
    return _randomise(model, torch.Generator().manual_seed(seed))


def small_cnn(seed: int = 4) -> QSequential:
    """Conv2D (valid and 'same' padding), average pooling, Keras-order flatten, dense."""
    torch.manual_seed(seed)
    k = "quantized_bits(4,0,alpha=1)"
    model = QSequential(OrderedDict(
        input=QInput("quantized_bits(8,2,alpha=1)"),
        conv_1=QConv2D(2, 3, 3, kernel_quantizer=k, bias_quantizer=k),
        relu_1=QActivation("quantized_relu(5,2)"),
        pool_1=QAveragePooling2D(2),
        conv_2=QConv2D(3, 4, 2, padding="same", kernel_quantizer=k, bias_quantizer=k),
        relu_2=QActivation("quantized_relu(4,1)"),
        flatten=Flatten(),
        dense_1=QDense(36, 5, kernel_quantizer=k, bias_quantizer=k),
        softmax=QActivation("softmax")), input_shape=(2, 8, 8))
    return _randomise(model, torch.Generator().manual_seed(seed))


def small_conv1d(seed: int = 5) -> QSequential:
    torch.manual_seed(seed)
    k = "quantized_bits(5,1,alpha=1)"
    model = QSequential(OrderedDict(
        input=QInput("quantized_bits(6,2,alpha=1)"),
        conv_1=QConv1D(3, 4, 3, strides=2, kernel_quantizer=k, bias_quantizer=k,
                       activation="quantized_relu(6,2)"),
        flatten=Flatten(),
        dense_1=QDense(4 * 4, 3, kernel_quantizer=k, bias_quantizer=k,
                       activation="quantized_bits(8,2)")), input_shape=(3, 10))
    return _randomise(model, torch.Generator().manual_seed(seed))


def jet_spread_logits(seed: int = 6) -> QSequential:
    """Narrow logits (2-bit last ReLU, ternary output kernel, as a QB model's) that spread over
    more than half their type's range, where hls4ml's own softmax settings wrap ``x_max - x`` and
    shrink the inverse table to uselessness (a trained QB model: 32 % argmax agreement)."""
    plan = {**Q6, "name": "spread", "layers": {
        "relu_3": {"activation": "quantized_relu(2,0)"},
        "dense_4": {"kernel": "ternary", "bias": "quantized_bits(4,0,1,alpha=1)"}}}
    model = _randomise(build_model({"name": "jet_dnn"}, plan, seed=seed), torch.Generator().manual_seed(seed))
    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed)
        model.dense_4.weight.copy_(torch.randn(model.dense_4.weight.shape, generator=gen).sign() * 0.3)
    return model


NAMED: dict[str, Callable[[], QSequential]] = {
    "jet_q6": jet_q6, "jet_hetero": jet_hetero, "jet_exotic": jet_exotic,
    "jet_bn_folded": jet_bn_folded, "cnn": small_cnn, "conv1d": small_conv1d,
    "jet_spread_logits": jet_spread_logits,
}


# ------------------------------------------------------------------------------- fuzzing
_KERNELS = ["quantized_bits({b},{i},alpha=1)", "binary(alpha=1)", "ternary(alpha=1)",
            "quantized_po2({b},1)", "quantized_bits({b},{i},alpha=\"auto_po2\")"]


def random_model(seed: int) -> QSequential:
    """A small random MLP with a random heterogeneous plan (all layers exportable)."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    n_in = int(rng.integers(2, 9))
    layers: "OrderedDict[str, torch.nn.Module]" = OrderedDict()
    if rng.random() < 0.7:
        b = int(rng.integers(4, 12))
        layers["input"] = QInput(f"quantized_bits({b},{int(rng.integers(0, 4))},alpha=1)")
    else:
        layers["input"] = QInput()
    width = n_in
    depth = int(rng.integers(1, 4))
    for d in range(1, depth + 1):
        units = int(rng.integers(2, 9))
        b, i = int(rng.integers(2, 9)), int(rng.integers(0, 3))
        kspec = _KERNELS[int(rng.integers(0, len(_KERNELS)))].format(b=b, i=min(i, b - 1))
        bspec = f"quantized_bits({int(rng.integers(3, 10))},{int(rng.integers(0, 4))},alpha=1)"
        last = d == depth
        act = None
        if last and rng.random() < 0.5:
            act = f"quantized_bits({int(rng.integers(4, 12))},{int(rng.integers(1, 5))})"
        layers[f"dense_{d}"] = QDense(width, units, kernel_quantizer=kspec, bias_quantizer=bspec,
                                      activation=act)
        if not last:
            ab, ai = int(rng.integers(2, 9)), int(rng.integers(0, 4))
            layers[f"relu_{d}"] = QActivation(f"quantized_relu({ab},{min(ai, ab)})")
        width = units
    if rng.random() < 0.5:
        layers["softmax"] = QActivation("softmax")
    model = QSequential(layers, input_shape=(n_in,))
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, QDense):
                mod.weight.mul_(float(rng.uniform(1.0, 4.0)))
    return _randomise(model, torch.Generator().manual_seed(seed), scale=float(rng.uniform(0.5, 3)))


def samples(model: QSequential, n: int, seed: int) -> np.ndarray:
    """Inputs spread wide enough to hit saturation, channels-first as the model expects."""
    rng = np.random.default_rng(seed)
    shape = tuple(model.input_shape)
    return rng.normal(0.0, 2.0, size=(n,) + shape)
