"""QBatchNormalization and QDenseBatchnorm: QKeras's quantized batch norm, plain and folded.

Keras's batch-norm conventions are kept (they differ from PyTorch's): ``momentum=0.99`` is the
weight of the *old* moving statistic, ``epsilon=1e-3``, and the moving variance is updated with
the biased batch variance. The channel axis is PyTorch's (dim 1).

``QBatchNormalization`` in eval mode computes ``(x - Q(mean)) / sqrt(Q(var) + eps) * Q(gamma) +
Q(beta)``, which is not a fixed-point operation (a square root and a division): deployment folds
it into the preceding layer. ``QDenseBatchnorm`` is that folded form (as QKeras's
``QConv2DBatchnorm``, for dense layers): in eval mode it is an ordinary quantized dense layer
whose kernel and bias are the quantized folded values, so its output is exact on the grid.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from hqrun.errors import ConfigError
from hqrun.quantizers.layers_core import (
    QLayer,
    apply_output_activation,
    is_elementwise,
    keras_init_,
    resolve_activation,
    resolve_kernel_quantizer,
    resolve_quantizer,
)


def _stat_shape(x: torch.Tensor) -> tuple[list[int], list[int]]:
    """Reduction dims and broadcast shape for per-channel statistics on dim 1."""
    dims = [d for d in range(x.dim()) if d != 1]
    shape = [1] * x.dim()
    shape[1] = x.shape[1]
    return dims, shape


class QBatchNormalization(QLayer):
    """``qkeras.QBatchNormalization`` over dim 1 of ``(N, C, ...)`` inputs.

    The quantizer arguments and their defaults are QKeras 0.9's (power-of-two quantizers);
    pass ``None`` for a float statistic. In training the batch statistics are used (and
    quantized with the mean/variance quantizers, as QKeras does) and the moving ones updated.
    """

    type_kind = "batchnorm"
    keras_class = "BatchNormalization"
    plan_slots = {"gamma": "gamma_quantizer", "beta": "beta_quantizer",
                  "mean": "mean_quantizer", "variance": "variance_quantizer"}
    # QKeras calls _set_trainable_parameter() on these two (see resolve_kernel_quantizer).
    kernel_like_slots = ("gamma", "variance")
    constrained_params = {"gamma": "gamma", "beta": "beta"}

    def __init__(
        self,
        num_features: int,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_quantizer: Any = "quantized_po2(5)",
        gamma_quantizer: Any = "quantized_relu_po2(6, 2048)",
        mean_quantizer: Any = "quantized_po2(5)",
        variance_quantizer: Any = "quantized_relu_po2(6, quadratic_approximation=True)",
    ) -> None:
        super().__init__()
        self.num_features = int(num_features)
        self.momentum, self.epsilon = float(momentum), float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.gamma = nn.Parameter(torch.ones(self.num_features)) if self.scale else None
        self.beta = nn.Parameter(torch.zeros(self.num_features)) if self.center else None
        self.register_buffer("moving_mean", torch.zeros(self.num_features))
        self.register_buffer("moving_variance", torch.ones(self.num_features))
        self.gamma_quantizer = resolve_kernel_quantizer(gamma_quantizer, "gamma") if self.scale else None
        self.beta_quantizer = resolve_quantizer(beta_quantizer, "beta") if self.center else None
        self.mean_quantizer = resolve_quantizer(mean_quantizer, "mean")
        self.variance_quantizer = resolve_kernel_quantizer(variance_quantizer, "variance")

    def slots(self) -> tuple[str, ...]:
        out = ["mean", "variance"]
        if self.scale:
            out.insert(0, "gamma")
        if self.center:
            out.insert(1 if self.scale else 0, "beta")
        return tuple(out)

    @staticmethod
    def _q(q: nn.Module | None, v: torch.Tensor | None) -> torch.Tensor | None:
        return v if (q is None or v is None) else q(v)

    def quantized_gamma(self) -> torch.Tensor | None:
        return self._q(self.gamma_quantizer, self.gamma)

    def quantized_beta(self) -> torch.Tensor | None:
        return self._q(self.beta_quantizer, self.beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims, shape = _stat_shape(x)
        if self.training:
            mean = x.mean(dim=dims)
            var = x.var(dim=dims, unbiased=False)
            with torch.no_grad():
                m = self.momentum
                self.moving_mean.mul_(m).add_(mean.detach(), alpha=1 - m)
                self.moving_variance.mul_(m).add_(var.detach(), alpha=1 - m)
        else:
            mean, var = self.moving_mean, self.moving_variance
        mean = self._q(self.mean_quantizer, mean)
        var = self._q(self.variance_quantizer, var)
        inv = torch.rsqrt(var + self.epsilon)
        gamma = self.quantized_gamma()
        if gamma is not None:
            inv = inv * gamma
        y = (x - mean.reshape(shape)) * inv.reshape(shape)
        beta = self.quantized_beta()
        return y if beta is None else y + beta.reshape(shape)


class QDenseBatchnorm(QLayer):
    """Dense layer with a folded batch norm, as QKeras's ``QConv2DBatchnorm`` does for convs.

    Training (``folding_mode="ema_stats_folding"``, QKeras's default): the unfolded output
    ``x @ W + b`` gives the batch statistics (and updates the moving ones); the kernel is folded
    with the moving variance, ``W' = gamma / sqrt(moving_var + eps) * W``, quantized, and the
    product is rescaled by ``sqrt(moving_var + eps) / sqrt(batch_var + eps)`` so training sees
    batch statistics; the folded bias ``gamma (b - mean) / sqrt(var + eps) + beta`` uses the
    batch statistics. ``"batch_stats_folding"`` folds with the batch statistics directly.
    ``ema_freeze_delay`` (steps) stops using batch statistics after that many training steps.
    Eval: ``y = x @ Q_k(W') + Q_b(b')`` with the moving statistics — a plain quantized dense.
    """

    type_kind = "dense"
    keras_class = "Dense"
    plan_slots = {"kernel": "kernel_quantizer", "bias": "bias_quantizer", "activation": "activation"}
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
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        ema_freeze_delay: int | None = None,
        folding_mode: str = "ema_stats_folding",
    ) -> None:
        super().__init__()
        if folding_mode not in ("ema_stats_folding", "batch_stats_folding"):
            raise ConfigError(
                f"folding_mode={folding_mode!r} is not one of QKeras's modes "
                "'ema_stats_folding' (default) and 'batch_stats_folding'."
            )
        self.in_features, self.units = int(in_features), int(units)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.momentum, self.epsilon = float(momentum), float(epsilon)
        self.ema_freeze_delay = ema_freeze_delay
        self.folding_mode = folding_mode
        self.weight = nn.Parameter(torch.empty(self.units, self.in_features))
        self.bias = nn.Parameter(torch.zeros(self.units)) if self.use_bias else None
        self.gamma = nn.Parameter(torch.ones(self.units))
        self.beta = nn.Parameter(torch.zeros(self.units))
        self.register_buffer("moving_mean", torch.zeros(self.units))
        self.register_buffer("moving_variance", torch.ones(self.units))
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))
        self.kernel_quantizer = resolve_kernel_quantizer(kernel_quantizer, "kernel")
        self.bias_quantizer = resolve_quantizer(bias_quantizer, "bias")
        self.activation = resolve_activation(activation)
        keras_init_(self.weight, kernel_initializer, (self.in_features, self.units))

    def _bn_training(self) -> bool:
        if not self.training:
            return False
        return self.ema_freeze_delay is None or self.ema_freeze_delay < 0 or \
            int(self.iteration) <= self.ema_freeze_delay

    def _fold(self, mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inv = self.gamma * torch.rsqrt(var + self.epsilon)
        b = self.bias if self.bias is not None else torch.zeros_like(self.gamma)
        return inv, inv * (b - mean) + self.beta

    def folded_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Float folded ``(W', b')`` from the moving statistics (what deployment quantizes)."""
        return self._fold_moving()

    def _fold_moving(self) -> tuple[torch.Tensor, torch.Tensor]:
        inv, bias = self._fold(self.moving_mean, self.moving_variance)
        return inv[:, None] * self.weight, bias

    def _qk(self, w: torch.Tensor) -> torch.Tensor:
        q = self.kernel_quantizer
        if q is None:
            return w
        return q(w) if is_elementwise(q) else q(w.t()).t()

    def _qb(self, b: torch.Tensor) -> torch.Tensor:
        q = self.bias_quantizer
        return b if q is None else q(b)

    def quantized_kernel(self) -> torch.Tensor:
        """Quantized folded kernel (moving statistics), PyTorch layout ``(units, in_features)``."""
        return self._qk(self._fold_moving()[0])

    def quantized_bias(self) -> torch.Tensor:
        """Quantized folded bias (moving statistics); always present after folding."""
        return self._qb(self._fold_moving()[1])

    def slots(self) -> tuple[str, ...]:
        return tuple(self.plan_slots)

    def mac(self, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        """The multiply-accumulate without bias (see ``QDense.mac``)."""
        return F.linear(x, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            y = F.linear(x, self.quantized_kernel(), self.quantized_bias())
            return apply_output_activation(self, y)
        bn_training = self._bn_training()
        self.iteration += 1
        z = F.linear(x, self.weight, self.bias)
        mean = z.mean(dim=0)
        var = z.var(dim=0, unbiased=False)
        if bn_training:
            with torch.no_grad():
                m = self.momentum
                self.moving_mean.mul_(m).add_(mean.detach(), alpha=1 - m)
                self.moving_variance.mul_(m).add_(var.detach(), alpha=1 - m)
        if self.folding_mode == "batch_stats_folding":
            inv, folded_bias = (self._fold(mean, var) if bn_training
                                else self._fold(self.moving_mean, self.moving_variance))
            y = F.linear(x, self._qk(inv[:, None] * self.weight))
        else:
            mv_inv, mv_bias = self._fold(self.moving_mean, self.moving_variance)
            y = F.linear(x, self._qk(mv_inv[:, None] * self.weight))
            if bn_training:
                _, folded_bias = self._fold(mean, var)
                corr = torch.sqrt(self.moving_variance + self.epsilon) * torch.rsqrt(var + self.epsilon)
                y = y * corr
            else:
                folded_bias = mv_bias
        return apply_output_activation(self, y + self._qb(folded_bias))
