"""QDense: QKeras's quantized fully connected layer, in PyTorch.

The kernel and bias are quantized on every forward pass (QKeras's QAT: float shadow weights,
quantized values used in the computation, straight-through gradients supplied by the quantizer).
``weight`` is stored as PyTorch does, ``(units, in_features)``; the kernel quantizer sees its
Keras-layout transpose ``(in_features, units)`` so per-output-channel scales match QKeras.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from hqrun.quantizers.inference_cache import inference_value
from hqrun.quantizers.layers_core import (
    QLayer,
    apply_output_activation,
    is_elementwise,
    keras_init_,
    resolve_activation,
    resolve_kernel_quantizer,
    resolve_quantizer,
)


class QDense(QLayer):
    """``y = activation(x @ Q_k(kernel) + Q_b(bias))`` on inputs of shape ``(N, in_features)``.

    Args mirror ``qkeras.QDense`` (``units``, ``kernel_quantizer``, ``bias_quantizer``,
    ``activation``, ``use_bias``, ``kernel_initializer``) plus ``in_features`` because PyTorch
    builds weights eagerly. Quantizers may be spec strings, dicts, quantizer objects or None.
    """

    plan_slots = {"kernel": "kernel_quantizer", "bias": "bias_quantizer", "activation": "activation"}
    type_kind = "dense"
    keras_class = "Dense"
    constrained_params = {"kernel": "weight", "bias": "bias"}

    def __init__(
        self,
        in_features: int,
        units: int,
        kernel_quantizer: Any = None,
        bias_quantizer: Any = None,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: str = "glorot_uniform",
    ) -> None:
        super().__init__()
        self.in_features = int(in_features)
        self.units = int(units)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.weight = nn.Parameter(torch.empty(self.units, self.in_features))
        self.bias = nn.Parameter(torch.zeros(self.units)) if self.use_bias else None
        self.kernel_quantizer = resolve_kernel_quantizer(kernel_quantizer, "kernel")
        self.bias_quantizer = resolve_quantizer(bias_quantizer, "bias")
        self.activation = resolve_activation(activation)
        self.reset_parameters()

    @property
    def out_features(self) -> int:
        return self.units

    def reset_parameters(self) -> None:
        """Keras initialisation: the chosen kernel initialiser, zero bias."""
        keras_init_(self.weight, self.kernel_initializer, (self.in_features, self.units))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def slots(self) -> tuple[str, ...]:
        return tuple(s for s in self.plan_slots if s != "bias" or self.use_bias)

    def quantized_kernel(self) -> torch.Tensor:
        """The kernel as used in the forward pass, PyTorch layout ``(units, in_features)``."""
        q = self.kernel_quantizer
        if q is None:
            return self.weight
        return inference_value(self, "kernel", q, self.weight, lambda: q(self.weight) if is_elementwise(q)
                               else q(self.weight.t()).t())

    def quantized_bias(self) -> torch.Tensor | None:
        """The bias as used in the forward pass (None without bias)."""
        if self.bias is None:
            return None
        q = self.bias_quantizer
        return self.bias if q is None else inference_value(self, "bias", q, self.bias, lambda: q(self.bias))

    def mac(self, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        """The multiply-accumulate without bias, ``x @ kernel.T``; the EBOPs count
        (``hqrun.quantizers.ebops``) evaluates it on bit widths instead of values."""
        return F.linear(x, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kq = self._modules.get("kernel_quantizer")  # absent (None) for a float kernel
        # a kernel quantizer may compute the whole product itself (learned widths fuse the
        # weights' rounding and the product into one autograd node); None: the ordinary path
        fused = getattr(type(kq), "quantized_linear", None)
        y = None if fused is None else fused(kq, x, self.weight, self.bias,
                                               self._modules.get("bias_quantizer"))
        if y is None:
            y = F.linear(x, self.quantized_kernel(), self.quantized_bias())
        return apply_output_activation(self, y)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, units={self.units}, use_bias={self.use_bias}"
