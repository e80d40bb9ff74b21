"""hqrun's quantized layers (QKeras's constructor vocabulary, PyTorch layout).

One import point for the layer classes, which live in small modules by kind::

    from hqrun.quantizers.layers import QDense, QActivation
    layer = QDense(16, 64, kernel_quantizer="quantized_bits(6,0,alpha=1)",
                   bias_quantizer="quantized_bits(6,0,alpha=1)")

Every layer is a :class:`QLayer`: ``plan_slots`` names its quantizer slots, ``quantizer(slot)``
and ``set_quantizer(slot, spec)`` read and replace them, and weight layers expose
``quantized_kernel()`` / ``quantized_bias()`` plus the quantizers as ``kernel_quantizer``,
``bias_quantizer`` and ``activation`` attributes (None = float).
"""

from hqrun.quantizers.layers_conv import QConv1D, QConv2D, QDepthwiseConv2D
from hqrun.quantizers.layers_core import (
    FLOAT_ACTIVATIONS,
    QActivation,
    QInput,
    QLayer,
    is_elementwise,
    is_quantizer,
    resolve_activation,
    resolve_kernel_quantizer,
    resolve_quantizer,
    spec_of,
)
from hqrun.quantizers.layers_dense import QDense
from hqrun.quantizers.layers_norm import QBatchNormalization, QDenseBatchnorm
from hqrun.quantizers.layers_pool import Flatten, QAveragePooling2D

#: Layers that hold a kernel (the plan's default kernel/bias quantizers apply to these).
WEIGHT_LAYERS = (QDense, QConv1D, QConv2D, QDepthwiseConv2D, QDenseBatchnorm)

__all__ = [
    "FLOAT_ACTIVATIONS",
    "Flatten",
    "QActivation",
    "QAveragePooling2D",
    "QBatchNormalization",
    "QConv1D",
    "QConv2D",
    "QDense",
    "QDenseBatchnorm",
    "QDepthwiseConv2D",
    "QInput",
    "QLayer",
    "WEIGHT_LAYERS",
    "is_elementwise",
    "is_quantizer",
    "resolve_activation",
    "resolve_kernel_quantizer",
    "resolve_quantizer",
    "spec_of",
]
