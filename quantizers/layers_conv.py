"""QConv1D, QConv2D and QDepthwiseConv2D: QKeras's quantized convolutions in PyTorch.

Inputs are channels-first (``(N, C, L)`` / ``(N, C, H, W)``), weights in PyTorch layout. The
kernel quantizer sees the kernel in Keras layout (``(k, C_in, C_out)``, ``(kh, kw, C_in, C_out)``,
depthwise ``(kh, kw, C, multiplier)``) so QKeras's per-channel scaling axes carry over.
``padding`` is Keras's: "valid" or TensorFlow's "same" (asymmetric when the total is odd).
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
    as_tuple,
    is_elementwise,
    conv_padding,
    keras_init_,
    pad_same,
    resolve_activation,
    resolve_kernel_quantizer,
    resolve_quantizer,
)


class _QConvBase(QLayer):
    """Shared weight handling of the convolutions; subclasses define layout and the op."""

    plan_slots = {"kernel": "kernel_quantizer", "bias": "bias_quantizer", "activation": "activation"}
    constrained_params = {"kernel": "weight", "bias": "bias"}
    n_spatial = 2

    def _setup(self, weight_shape: tuple[int, ...], keras_shape: tuple[int, ...], n_out: int,
               kernel_quantizer: Any, bias_quantizer: Any, activation: Any, use_bias: bool,
               kernel_initializer: str, padding: str) -> None:
        conv_padding(padding, 1, 1, 1, 1)  # validates the mode early
        self.padding = padding.lower()
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self._keras_shape = keras_shape
        self.weight = nn.Parameter(torch.empty(weight_shape))
        self.bias = nn.Parameter(torch.zeros(n_out)) if self.use_bias else None
        self.kernel_quantizer = resolve_kernel_quantizer(kernel_quantizer, "kernel")
        self.bias_quantizer = resolve_quantizer(bias_quantizer, "bias")
        self.activation = resolve_activation(activation)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        keras = torch.empty(self._keras_shape)
        keras_init_(keras, self.kernel_initializer, self._keras_shape)
        with torch.no_grad():
            self.weight.copy_(self._from_keras(keras))
            if self.bias is not None:
                self.bias.zero_()

    def slots(self) -> tuple[str, ...]:
        return tuple(s for s in self.plan_slots if s != "bias" or self.use_bias)

    # Layout conversion between PyTorch weights and Keras kernels (views, no copies).
    def _to_keras(self, w: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _from_keras(self, k: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def quantized_kernel(self) -> torch.Tensor:
        """The kernel used in the forward pass, PyTorch layout."""
        q = self.kernel_quantizer
        if q is None:
            return self.weight
        if is_elementwise(q):
            return inference_value(self, "kernel", q, self.weight, lambda: q(self.weight))
        return inference_value(self, "kernel", q, self.weight,
                               lambda: self._from_keras(q(self._to_keras(self.weight))))

    def quantized_bias(self) -> torch.Tensor | None:
        if self.bias is None:
            return None
        q = self.bias_quantizer
        return self.bias if q is None else inference_value(self, "bias", q, self.bias, lambda: q(self.bias))

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        return pad_same(x, self.kernel_size, self.strides, self.dilation_rate, self.padding)


class QConv1D(_QConvBase):
    """``qkeras.QConv1D`` on ``(N, C_in, L)`` inputs; ``weight`` is ``(filters, C_in, k)``."""

    n_spatial = 1
    type_kind = "conv1d"
    keras_class = "Conv1D"

    def __init__(self, in_channels: int, filters: int, kernel_size: int | tuple[int],
                 strides: int | tuple[int] = 1, padding: str = "valid",
                 dilation_rate: int | tuple[int] = 1, kernel_quantizer: Any = None,
                 bias_quantizer: Any = None, activation: Any = None, use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform") -> None:
        super().__init__()
        self.in_channels, self.filters = int(in_channels), int(filters)
        self.kernel_size = as_tuple(kernel_size, 1, "kernel_size")
        self.strides = as_tuple(strides, 1, "strides")
        self.dilation_rate = as_tuple(dilation_rate, 1, "dilation_rate")
        k = self.kernel_size[0]
        self._setup((self.filters, self.in_channels, k), (k, self.in_channels, self.filters),
                    self.filters, kernel_quantizer, bias_quantizer, activation, use_bias,
                    kernel_initializer, padding)

    def _to_keras(self, w: torch.Tensor) -> torch.Tensor:
        return w.permute(2, 1, 0)

    def _from_keras(self, k: torch.Tensor) -> torch.Tensor:
        return k.permute(2, 1, 0)

    def mac(self, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        """The padded convolution without bias (see ``QDense.mac``)."""
        return F.conv1d(self._pad(x), kernel, stride=self.strides, dilation=self.dilation_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv1d(self._pad(x), self.quantized_kernel(), self.quantized_bias(),
                     stride=self.strides, dilation=self.dilation_rate)
        return apply_output_activation(self, y)


class QConv2D(_QConvBase):
    """``qkeras.QConv2D`` on ``(N, C_in, H, W)`` inputs; ``weight`` is ``(filters, C_in, kh, kw)``."""

    type_kind = "conv2d"
    keras_class = "Conv2D"

    def __init__(self, in_channels: int, filters: int, kernel_size: int | tuple[int, int],
                 strides: int | tuple[int, int] = 1, padding: str = "valid",
                 dilation_rate: int | tuple[int, int] = 1, kernel_quantizer: Any = None,
                 bias_quantizer: Any = None, activation: Any = None, use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform") -> None:
        super().__init__()
        self.in_channels, self.filters = int(in_channels), int(filters)
        self.kernel_size = as_tuple(kernel_size, 2, "kernel_size")
        self.strides = as_tuple(strides, 2, "strides")
        self.dilation_rate = as_tuple(dilation_rate, 2, "dilation_rate")
        kh, kw = self.kernel_size
        self._setup((self.filters, self.in_channels, kh, kw), (kh, kw, self.in_channels, self.filters),
                    self.filters, kernel_quantizer, bias_quantizer, activation, use_bias,
                    kernel_initializer, padding)

    def _to_keras(self, w: torch.Tensor) -> torch.Tensor:
        return w.permute(2, 3, 1, 0)

    def _from_keras(self, k: torch.Tensor) -> torch.Tensor:
        return k.permute(3, 2, 0, 1)

    def mac(self, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        """The padded convolution without bias (see ``QDense.mac``)."""
        return F.conv2d(self._pad(x), kernel, stride=self.strides, dilation=self.dilation_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(self._pad(x), self.quantized_kernel(), self.quantized_bias(),
                     stride=self.strides, dilation=self.dilation_rate)
        return apply_output_activation(self, y)


class QDepthwiseConv2D(_QConvBase):
    """``qkeras.QDepthwiseConv2D``: one (or ``depth_multiplier``) filter per input channel.

    QKeras calls the kernel quantizer ``depthwise_quantizer``; it is accepted as an alias of
    ``kernel_quantizer`` and the plan slot is ``kernel``. ``weight`` is
    ``(C * depth_multiplier, 1, kh, kw)``, output channel ``c * depth_multiplier + m``.
    QKeras quirk kept: per-channel quantizers (``alpha="auto"``) see the Keras kernel
    ``(kh, kw, C, M)`` and so scale per multiplier index ``m``, shared across input channels.
    """

    type_kind = "depthwise_conv2d"
    keras_class = "DepthwiseConv2D"

    def __init__(self, in_channels: int, kernel_size: int | tuple[int, int],
                 strides: int | tuple[int, int] = 1, padding: str = "valid",
                 depth_multiplier: int = 1, dilation_rate: int | tuple[int, int] = 1,
                 kernel_quantizer: Any = None, bias_quantizer: Any = None,
                 activation: Any = None, use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform",
                 depthwise_quantizer: Any = None) -> None:
        super().__init__()
        self.in_channels = int(in_channels)
        self.depth_multiplier = int(depth_multiplier)
        self.filters = self.in_channels * self.depth_multiplier
        self.kernel_size = as_tuple(kernel_size, 2, "kernel_size")
        self.strides = as_tuple(strides, 2, "strides")
        self.dilation_rate = as_tuple(dilation_rate, 2, "dilation_rate")
        kh, kw = self.kernel_size
        kq = depthwise_quantizer if depthwise_quantizer is not None else kernel_quantizer
        self._setup((self.filters, 1, kh, kw), (kh, kw, self.in_channels, self.depth_multiplier),
                    self.filters, kq, bias_quantizer, activation, use_bias, kernel_initializer,
                    padding)

    @property
    def depthwise_quantizer(self) -> nn.Module | None:
        return self.kernel_quantizer

    def _to_keras(self, w: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        return w.reshape(self.in_channels, self.depth_multiplier, kh, kw).permute(2, 3, 0, 1)

    def _from_keras(self, k: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        return k.permute(2, 3, 0, 1).reshape(self.filters, 1, kh, kw)

    def mac(self, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        """The padded depthwise convolution without bias (see ``QDense.mac``)."""
        return F.conv2d(self._pad(x), kernel, stride=self.strides, dilation=self.dilation_rate,
                        groups=self.in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(self._pad(x), self.quantized_kernel(), self.quantized_bias(),
                     stride=self.strides, dilation=self.dilation_rate, groups=self.in_channels)
        return apply_output_activation(self, y)
