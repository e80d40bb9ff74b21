"""Population training: K configurations of one dense architecture trained as one batched model.

Why: the jet model's step is dominated by per-operation overhead, not arithmetic (~25 kFLOP per
sample). Stacking K members' weights into ``(K, out, in)`` tensors and running batched matmuls
pays that overhead once for all K, so a search that trains K candidate plans at once gets close
to K times the trial-epochs per core.

Each member keeps its own quantizers, as per-member tensors (scale, clip bounds, gradient
window), so members with different widths and families (``quantized_bits`` / ``quantized_relu``
/ float) share one pass. The arithmetic is the quantizers' own fast path, term for term:

    h = clamp(x, g_lo, g_hi)                       straight-through gradient window
    xq = clamp(round(h * c), lo, hi) * inv         the quantized value (c, inv powers of two)
    y = h - (h - xq)                               QKeras's float32 value, gradient 1 inside the window

``quantized_bits`` has the window ``(-inf, inf)`` (gradient 1 everywhere), ``quantized_relu``
``[tiny, bound]`` with tiny the smallest positive float, i.e. ``0 < x <= bound`` as TensorFlow's
ReLU gradient. Each member has its own Adam state (one parameter group per member in one fused
Adam, the same kernel on the same tensors as a solo run), its own plateau learning-rate schedule
and its own early stopping (a stopped member's learning rate drops to 0, freezing it, and its
best weights are kept). A member trained here equals the member trained alone by
:func:`hqrun.train.runner.fit_and_evaluate` up to float reassociation in the batched matmuls
(tests/test_train_population.py).

Supported members: :class:`QSequential` chains of ``QInput`` (no quantizer), ``QDense`` and
``QActivation`` whose quantizers are ``quantized_bits`` with a fixed alpha of 1,
``quantized_relu`` without the leaky/sigmoid/stochastic options, or none (float ReLU /
identity). Anything else is refused with :class:`PopulationError` naming the layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hqrun.errors import HqrunError
from hqrun.train.module import ClassifierModule

#: smallest positive float32: ``clamp(x, TINY, .)`` has gradient 1 exactly where ``x > 0``
TINY = float(np.nextafter(np.float32(0), np.float32(1)))


class PopulationError(HqrunError):
    """The members cannot be trained as one population (different layers, unsupported quantizer)."""


@dataclass
class SlotTensors:
    """One quantizer slot across K members, each field a tensor with K leading entries."""

    g_lo: torch.Tensor   # gradient window (and value clamp) before rounding
    g_hi: torch.Tensor
    c: torch.Tensor      # 2**(bits - sign - integer): multiply, round
    lo: torch.Tensor     # code range
    hi: torch.Tensor
    inv: torch.Tensor    # 1 / c
    quantized: torch.Tensor  # bool: False for a float member (identity or ReLU)
    relu_float: torch.Tensor  # bool: a float member that applies ReLU
    any_float: bool
    any_relu_float: bool
    any_window: bool     # some member has a finite gradient window
    clamp_codes: bool    # some member's codes can leave [lo, hi] after the window (not a plain ReLU)
    g_lo_scalar: float | None  # the members' common lower window bound (None: they differ)
    any_upper: bool      # some member has a finite upper window bound
    neg_inv: torch.Tensor  # -inv


def _slot_row(q: Any, where: str) -> tuple:
    """(g_lo, g_hi, c, lo, hi, inv, quantized, relu_float) of one member's quantizer."""
    from hqrun.quantizers.bits import quantized_bits
    from hqrun.quantizers.relu import quantized_relu

    inf = math.inf
    if q is None or not isinstance(q, (quantized_bits, quantized_relu)):
        if q is not None and getattr(q, "float_function", None) != "relu" and not isinstance(q, nn.ReLU):
            raise PopulationError(
                f"{where}: {q!r} is not supported in population training (only quantized_bits with "
                "alpha=1, quantized_relu without leaky/sigmoid/stochastic options, ReLU or none); "
                "train this configuration alone (search.population=1).")
        relu = q is not None
        return (-inf, inf, 1.0, -inf, inf, 1.0, False, relu)
    # The quantizer's own fast-path test: same conditions, same arithmetic as below.
    if not getattr(q, "_fast", False):
        raise PopulationError(
            f"{where}: {q} uses a quantizer option population training does not batch (alpha other "
            "than 1, stochastic rounding, qnoise, leaky or sigmoid ReLU, 1-bit sign); train this "
            "configuration alone (search.population=1).")
    if isinstance(q, quantized_bits):
        return (-inf, inf, q._c, q._lo, q._hi, q._inv, True, False)
    return (TINY, q._bound, q._c, 0.0, q._m - 1.0, q._inv, True, False)


def stack_slot(quantizers: Sequence[Any], where: str, dims: int) -> SlotTensors:
    """Per-member tensors of shape ``(K,) + (1,) * dims`` for one slot."""
    rows = [_slot_row(q, where) for q in quantizers]
    shape = (len(rows),) + (1,) * dims

    def col(i: int, dtype=torch.float32) -> torch.Tensor:
        return torch.tensor([r[i] for r in rows], dtype=dtype).view(shape)

    quantized = col(6, torch.bool)
    relu_float = col(7, torch.bool)
    g_lo, g_hi = col(0), col(1)
    c, hi = col(2), col(4)
    # A ReLU window [tiny, bound] keeps round(h * c) within [0, m - 1] unless bound * c rounds up
    # (more than 20 bits, as the quantizer itself notes); anything else needs the code clamp.
    relu_window = torch.isfinite(g_hi) & (g_lo > 0)
    clamp_codes = bool((quantized & ~(relu_window & (hi < 2.0**20))).any())
    return SlotTensors(g_lo, g_hi, c, col(3), hi, col(5), quantized, relu_float,
                       any_float=not bool(quantized.all()), any_relu_float=bool(relu_float.any()),
                       any_window=bool(torch.isfinite(g_lo).any() or torch.isfinite(g_hi).any()),
                       clamp_codes=clamp_codes, neg_inv=-col(5),
                       g_lo_scalar=float(g_lo.flatten()[0]) if bool((g_lo == g_lo.flatten()[0]).all()) else None,
                       any_upper=bool(torch.isfinite(g_hi).any()))


def _window(x: torch.Tensor, s: SlotTensors) -> torch.Tensor:
    """``clamp(x, g_lo, g_hi)`` as a new tensor. A clamp with tensor bounds is ~4x slower here
    than a scalar lower clamp followed by an in-place upper clamp, so the common slot (one shared
    lower bound: all ReLU or all bits) takes that path."""
    if s.g_lo_scalar is None:
        return torch.clamp(x, s.g_lo, s.g_hi)
    h = x.clamp_min(s.g_lo_scalar) if math.isfinite(s.g_lo_scalar) else x.clone()
    return h.clamp_max_(s.g_hi) if s.any_upper else h


def _codes(h: torch.Tensor, s: SlotTensors) -> torch.Tensor:
    """``round(h * c)``, clamped to each member's code range where that can bite."""
    r = torch.mul(h, s.c).round_()
    if s.clamp_codes:
        r.clamp_min_(s.lo).clamp_max_(s.hi)
    return r


class _WindowQuant(torch.autograd.Function):
    """``h - (h - xq)`` with ``h = clamp(x, g_lo, g_hi)``: the value computed without autograd,
    the gradient passed inside the window by one fused ``hardtanh_backward`` pass.

    Inside the window ``t = x - h`` is 0; outside it is at least one float step from 0 (x above
    the upper bound), or at most ``-TINY`` (x <= 0 below a ReLU's ``TINY``), so the open interval
    ``(-TINY, TINY)`` selects exactly the window. Autograd through ``torch.clamp`` with tensor
    bounds instead costs comparisons and a ``where`` over bool masks, measured ~15x slower here on
    tensors K times a lone model's.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, s: SlotTensors) -> torch.Tensor:  # type: ignore[override]
        h = _window(x, s) if s.any_window else x
        xq = _codes(h, s)
        if s.any_float:
            d = h - torch.where(s.quantized, xq * s.inv, h)
        else:
            d = torch.addcmul(h, xq, s.neg_inv)  # h - xq: xq * inv is exact (power of two)
        ctx.window = s.any_window
        if s.any_window:
            ctx.save_for_backward(x - h)
        return h - d  # QKeras's residue form of the value (equal to xq for a ReLU)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:  # type: ignore[override]
        if not ctx.window:
            return grad, None
        (t,) = ctx.saved_tensors
        return torch.ops.aten.hardtanh_backward(grad, t, -TINY, TINY), None


def apply_slot(x: torch.Tensor, s: SlotTensors, training: bool) -> torch.Tensor:
    """Each member's quantizer on its slice ``x[k]`` (see the module docstring)."""
    if training:
        y = _WindowQuant.apply(x, s)
    else:
        with torch.no_grad():
            h = _window(x, s) if s.any_window else x
            y = _codes(h, s).mul_(s.inv)
            if s.any_float:
                y = torch.where(s.quantized, y, h)
    if s.any_relu_float:
        y = torch.where(s.relu_float, torch.relu(x), y)
    return y


class _DenseStack(nn.Module):
    """K members' ``QDense`` layers: one Parameter per member (own Adam state), stacked per pass."""

    def __init__(self, layers: Sequence[nn.Module], name: str) -> None:
        super().__init__()
        first = layers[0]
        for layer in layers:
            if (layer.in_features, layer.units, layer.use_bias) != (first.in_features, first.units,
                                                                   first.use_bias):
                raise PopulationError(f"layer {name}: members differ in shape; a population shares one "
                                      "architecture (only quantizers may differ).")
        self.weights = nn.ParameterList([nn.Parameter(layer.weight.detach().clone()) for layer in layers])
        self.biases = nn.ParameterList([nn.Parameter(layer.bias.detach().clone()) for layer in layers]) \
            if first.use_bias else None
        self.kernel = stack_slot([layer.kernel_quantizer for layer in layers], f"{name}.kernel", 2)
        self.bias = stack_slot([layer.bias_quantizer for layer in layers], f"{name}.bias", 1) \
            if first.use_bias else None
        self.activation = stack_slot([layer.activation for layer in layers], f"{name}.activation", 2) \
            if any(layer.activation is not None for layer in layers) else None
        # QKeras's Clip constraint bound per member: {"weight": [m_0..m_K-1], "bias": [...]}
        self.clip_bounds: dict[str, list[float | None]] = {"weight": [], "bias": []}
        for layer in layers:
            bounds = {id(p): m for p, m in layer.constraints()}
            self.clip_bounds["weight"].append(bounds.get(id(layer.weight)))
            self.clip_bounds["bias"].append(bounds.get(id(layer.bias)) if layer.bias is not None else None)

    def member_params(self, k: int) -> list[nn.Parameter]:
        return [self.weights[k]] + ([self.biases[k]] if self.biases is not None else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        training = self.training
        w = apply_slot(torch.stack(list(self.weights)), self.kernel, training)  # (K, out, in)
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(w.shape[0], -1, -1)
        if self.biases is None:
            y = torch.bmm(x, w.transpose(1, 2))
        else:
            b = apply_slot(torch.stack(list(self.biases)), self.bias, training)  # (K, out)
            y = torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))
        return y if self.activation is None else apply_slot(y, self.activation, training)


class _ActivationStack(nn.Module):
    def __init__(self, layers: Sequence[nn.Module], name: str) -> None:
        super().__init__()
        self.slot = stack_slot([layer.activation for layer in layers], name, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return apply_slot(x, self.slot, self.training)


class PopulationModel(nn.Module):
    """K ``QSequential`` members of one architecture as one module: ``(N, in) -> (K, N, classes)``."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        from hqrun.quantizers.layers_core import QActivation, QInput
        from hqrun.quantizers.layers_dense import QDense

        if len(members) < 1:
            raise PopulationError("a population needs at least one member.")
        bodies = [list(m._body()) if hasattr(m, "_body") else list(m.children()) for m in members]
        names = [n for n, _ in members[0].named_children()][: len(bodies[0])]
        if any(len(b) != len(bodies[0]) for b in bodies):
            raise PopulationError("members differ in their number of layers; a population shares one "
                                  "architecture (only quantizers may differ).")
        self.size = len(members)
        stages: list[nn.Module] = []
        for i, name in enumerate(names):
            layers = [b[i] for b in bodies]
            kind = type(layers[0])
            if any(type(layer) is not kind for layer in layers):
                raise PopulationError(f"layer {name}: members differ in layer type.")
            if kind is QInput:
                if any(layer.activation is not None for layer in layers):
                    stages.append(_ActivationStack(layers, f"{name}.activation"))
            elif kind is QDense:
                stages.append(_DenseStack(layers, name))
            elif kind is QActivation:
                stages.append(_ActivationStack(layers, f"{name}.activation"))
            else:
                raise PopulationError(f"layer {name} ({kind.__name__}) is not supported in population "
                                      "training (dense chains only); train these configurations alone.")
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x if x.dim() == 3 else x.unsqueeze(0).expand(self.size, -1, -1)

    def dense_stacks(self) -> list[_DenseStack]:
        return [s for s in self.stages if isinstance(s, _DenseStack)]

    def member_params(self, k: int) -> list[nn.Parameter]:
        """Member k's parameters in its solo model's ``parameters()`` order."""
        return [p for s in self.dense_stacks() for p in s.member_params(k)]

    def member_losses(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy per member, shape ``(K,)``: each the mean over the batch, as a solo run."""
        logits = self(x)  # (K, N, C)
        per_sample = F.cross_entropy(logits.transpose(1, 2), y.unsqueeze(0).expand(self.size, -1),
                                     reduction="none")
        return per_sample.mean(dim=1)

    def load_member_into(self, k: int, model: nn.Module) -> None:
        """Copy member k's current weights into its solo ``model`` (same layer order)."""
        with torch.no_grad():
            for p_solo, p_pop in zip(model.parameters(), self.member_params(k)):
                p_solo.copy_(p_pop)

    def clip_(self, active: Sequence[bool]) -> None:
        """QKeras's Clip constraint on every member's quantized weights (after each step)."""
        groups: dict[float, list[torch.Tensor]] = {}
        for s in self.dense_stacks():
            for k in range(self.size):
                if not active[k]:
                    continue
                for p, m in zip(s.member_params(k), (s.clip_bounds["weight"][k], s.clip_bounds["bias"][k])):
                    if m is not None:
                        groups.setdefault(m, []).append(p)
        with torch.no_grad():
            for m, params in groups.items():
                torch._foreach_clamp_min_(params, -m)
                torch._foreach_clamp_max_(params, m)


class _MemberPlateau:
    """ReduceLROnPlateau (mode min, relative threshold 1e-4, as torch's defaults) for one member."""

    def __init__(self, factor: float, patience: int, min_lr: float) -> None:
        self.factor, self.patience, self.min_lr = factor, patience, min_lr
        self.best = math.inf
        self.bad_epochs = 0

    def step(self, metric: float, group: dict) -> None:
        if metric < self.best * (1.0 - 1e-4):
            self.best, self.bad_epochs = metric, 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            new = max(group["lr"] * self.factor, self.min_lr)
            if group["lr"] - new > 1e-8:
                group["lr"] = new
            self.bad_epochs = 0


class PopulationModule(ClassifierModule):
    """The LightningModule holding a population; the Trainer runs its loop, callbacks and loggers.

    The training step is ClassifierModule's (chunks of mini-batches, one fused Adam step each);
    the loss it differentiates is the sum of the members' losses, so each member's gradient is
    its own loss's. Validation, schedules, early stopping and best weights are per member; the
    logged ``val_loss``/``val_acc`` are the best active member's (for checkpoint callbacks).
    """

    def __init__(self, population: PopulationModel, lr: float = 1e-3, scheduler: str = "plateau",
                 plateau_factor: float = 0.5, plateau_patience: int = 3, min_lr: float = 1e-5,
                 early_stopping: bool = True, patience: int = 10, min_delta: float = 0.0,
                 batch_size: int = 0, max_epochs: int = 30,
                 member_epoch_callback: Callable[[int, dict, bool], None] | None = None) -> None:
        super().__init__(population, lr=lr, scheduler="none", max_epochs=max_epochs, batch_size=batch_size)
        if scheduler not in ("plateau", "none"):
            raise PopulationError(f"trainer.scheduler={scheduler!r} is not available with population "
                                  "training; use plateau or none (or search.population=1).")
        self._base_lr = float(lr)
        k = population.size
        self.member_scheduler = scheduler
        self.plateaus = [_MemberPlateau(plateau_factor, plateau_patience, min_lr) for _ in range(k)]
        self.early_stopping, self.patience, self.min_delta = early_stopping, patience, min_delta
        self.active = [True] * k
        self.member_history: list[list[dict]] = [[] for _ in range(k)]
        self.member_best = [math.inf] * k
        self.member_best_epoch = [-1] * k
        self.member_best_state: list[list[torch.Tensor] | None] = [None] * k
        self._waits = [0] * k
        self._stopping_best = [math.inf] * k
        self._member_train = [torch.zeros(k), 0]
        self._loss = self._population_loss
        # (member index, epoch row, stopping now) after each of a member's epochs; an exception
        # from it (e.g. a search trial's TrialFailed) fails that member only: it is frozen, and
        # the exception is kept in member_errors.
        self.member_epoch_callback = member_epoch_callback
        self.member_errors: list[BaseException | None] = [None] * k

    @property
    def population(self) -> PopulationModel:
        return self.model

    def _population_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        losses = self.population.member_losses(x, y)
        self._member_train[0] += losses.detach() * len(y)
        self._member_train[1] += len(y)
        return losses.sum()

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._member_train[0] = torch.zeros(self.population.size)
        self._member_train[1] = 0

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self.population(x)
        losses = F.cross_entropy(logits.transpose(1, 2), y.unsqueeze(0).expand(self.population.size, -1),
                                 reduction="none").sum(dim=1)
        correct = (logits.argmax(dim=2) == y.unsqueeze(0)).sum(dim=1)
        self._val.append((losses, correct, len(y)))

    def on_validation_epoch_end(self) -> None:
        if not self._val or self.trainer.sanity_checking:
            return
        n = sum(c for _, _, c in self._val)
        val_loss = (sum(v for v, _, _ in self._val) / n).tolist()
        val_acc = (sum(c for _, c, _ in self._val).double() / n).tolist()
        seen = self._member_train[1]
        train = (self._member_train[0] / seen).tolist() if seen else [math.nan] * self.population.size
        epoch = int(self.current_epoch)
        groups = self._optimizer.param_groups if self._optimizer is not None else []
        for k in range(self.population.size):
            if not self.active[k]:
                continue
            row = {"epoch": epoch, "train_loss": train[k], "val_loss": val_loss[k], "val_acc": val_acc[k],
                   "lr": float(groups[k]["lr"]) if groups else math.nan}
            self.member_history[k].append(row)
            if val_loss[k] < self.member_best[k]:
                self.member_best[k], self.member_best_epoch[k] = val_loss[k], epoch
                self.member_best_state[k] = [p.detach().clone() for p in self.population.member_params(k)]
            # Lightning's EarlyStopping rule: improvement means beating the best by min_delta.
            if val_loss[k] < self._stopping_best[k] - self.min_delta:
                self._stopping_best[k], self._waits[k] = val_loss[k], 0
            else:
                self._waits[k] += 1
            if self.member_scheduler == "plateau" and groups:
                self.plateaus[k].step(val_loss[k], groups[k])
            stop = (self.early_stopping and self._waits[k] >= self.patience) or not math.isfinite(train[k])
            if self.member_epoch_callback is not None:
                try:
                    self.member_epoch_callback(k, dict(row), stop)
                except Exception as exc:  # noqa: BLE001 - one member's failure must not end the others
                    self.member_errors[k] = exc
                    stop = True
            if stop:
                self.active[k] = False
                if groups:
                    groups[k]["lr"] = 0.0  # frozen: Adam with lr 0 leaves the weights as they are
        active = [k for k in range(self.population.size) if self.active[k]] or list(range(self.population.size))
        best = min(active, key=lambda k: val_loss[k])
        self.log("val_loss", val_loss[best], prog_bar=True)
        self.log("val_acc", val_acc[best], prog_bar=True)
        self.log("members_active", float(sum(self.active)))
        self.history.append({"epoch": epoch, "val_loss": val_loss[best], "val_acc": val_acc[best],
                             "members_active": sum(self.active)})
        if not any(self.active):
            self.trainer.should_stop = True

    def configure_optimizers(self) -> Any:
        from hqrun.train.module import make_optimizer

        lr = self._base_lr
        groups = [{"params": self.population.member_params(k), "lr": lr} for k in range(self.population.size)]
        optimizer = make_optimizer(groups, lr=lr)
        population, active = self.population, self.active

        def clip(_opt: Any, _args: Any, _kwargs: Any) -> None:
            population.clip_(active)

        optimizer.register_step_post_hook(clip)
        return optimizer
