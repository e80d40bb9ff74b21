"""The LightningModule: cross-entropy on logits, Adam with a schedule, epoch-level metrics.

A training "batch" may be a chunk of several mini-batches (``trainer.batches_per_step``); the
step loops over them, one optimiser step each, so Lightning's per-step cost is paid once per chunk.

Per-step ``self.log`` calls cost Lightning bookkeeping on every batch; with a 16→64→32→32→5 model
that bookkeeping is a visible share of the step. So the training loss is summed in a tensor and
logged once per epoch, and validation runs on a few large batches. The module also remembers the
best weights in memory (by the monitored metric), so a search trial gets them back without
reading a checkpoint file.

A cost penalty (``penalty=``, e.g. :class:`hqrun.models.penalty.EbopsPenalty` for a plan with
``beta``) adds ``beta(epoch) * cost(model)`` to every step's loss; the module asks it nothing else
per step, so ordinary plans (no penalty) run the same code as before. With a penalty, each epoch's
row also records beta, the model's EBOPs and pruned weights, ``val_objective = val_loss + beta *
EBOPs`` is what ``monitor=val_loss`` compares, and epochs before the schedule has settled (a beta
ramp) are never kept as "best". A non-finite training loss stops the run and marks it diverged.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from hqrun.train.flat_adam import FlatAdam
from hqrun.train.losses import cross_entropy

#: Logged with a cost penalty: the monitored quantity in "min" form (``val_loss + beta * EBOPs``
#: or ``-val_acc``), infinite while the beta schedule is still ramping.
SCORE_METRIC = "val_score"


def make_optimizer(params, lr: float = 1e-3, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam, fused into one kernel per step over flat parameter buffers
    (:class:`~hqrun.train.flat_adam.FlatAdam`) where this torch build supports it on CPU.

    The unfused CPU Adam loops over parameters in Python; for a small model that loop costs as
    much as the forward pass, and even the fused one pays per parameter tensor around its kernel.
    """
    params = list(params)
    try:
        return FlatAdam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def param_groups(model: nn.Module, lr: float, lr_scales: dict[str, float] | None = None) -> Any:
    """All parameters, or groups by learning-rate multiplier when ``lr_scales`` (parameter name
    -> multiplier, e.g. learned widths' ``width_lr_scale``) names some."""
    if not lr_scales:
        return model.parameters()
    groups: dict[float, list] = {}
    for name, p in model.named_parameters():
        groups.setdefault(float(lr_scales.get(name, 1.0)), []).append(p)
    return [{"params": ps, "lr": lr * scale} for scale, ps in groups.items()]


class ClassifierModule(pl.LightningModule):
    """Wraps any ``nn.Module`` whose ``forward`` returns class logits."""

    def __init__(
        self,
        model: nn.Module,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        scheduler: str = "plateau",
        plateau_factor: float = 0.5,
        plateau_patience: int = 3,
        min_lr: float = 1e-5,
        max_epochs: int = 30,
        monitor: str = "val_loss",
        record: dict | None = None,
        batch_size: int = 0,
        penalty: Any = None,
        lr_scales: dict[str, float] | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        # ``record`` (plan, model config, class names) makes best.ckpt self-describing.
        self.save_hyperparameters(ignore=["model", "penalty", "lr_scales", "population", "member_epoch_callback"])
        # parameter name -> learning-rate multiplier (e.g. learned bit widths: plan.width_lr_scale)
        self.lr_scales = dict(lr_scales or {})
        self.penalty = penalty
        self._beta = 0.0
        self.diverged = False
        # Manual optimisation: the step is zero_grad/backward/step on the torch optimiser, without
        # Lightning's closure and precision wrappers around every batch (see docs/data_and_training.md).
        self.automatic_optimization = False
        self.monitor = monitor
        self.minibatch = int(batch_size)  # > 0: a training batch is a chunk of such mini-batches
        self.history: list[dict[str, float]] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_score = math.inf
        self.best_epoch = -1
        # [summed loss tensor, sample count]: mutated in place, because assigning attributes on an
        # nn.Module goes through its slow __setattr__ on every step.
        self._train_acc: list = [torch.zeros(()), 0]
        self._val: list[tuple[float, int, int]] = []
        self._optimizer: torch.optim.Optimizer | None = None
        self._scheduler = None
        self._step_progress = None
        self._lightning_optimizer = None
        from hqrun.train.compiled import training_loss

        # cross-entropy of the model's logits, optionally torch.compile-d (trainer.compile)
        self._loss = training_loss(model, bool(compile))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    # training --------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        # summed where the losses are (a GPU run's loss on the CPU would cost a sync per step)
        self._train_acc[0] = torch.zeros((), device=self.device)
        self._train_acc[1] = 0
        if self.penalty is not None:
            self._beta = float(self.penalty.beta_at(int(self.current_epoch)))

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # The batches are already CPU tensor views; skip Lightning's generic collection walk.
        if device.type == "cpu":
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        b = self.minibatch if 0 < self.minibatch < len(y) else len(y)
        optimizer = self._optimizer
        progress = self._step_progress
        acc = self._train_acc
        penalty = self.penalty if self._beta > 0.0 else None
        for start in range(0, len(y), b):
            xb, yb = x[start : start + b], y[start : start + b]
            optimizer.zero_grad(set_to_none=True)
            loss = self._loss(xb, yb)
            if penalty is not None:
                loss = loss + self._beta * penalty(self.model)
            loss.backward()
            if progress is not None:
                optimizer.step()
                progress.increment_ready()  # keeps trainer.global_step counting optimiser steps,
                progress.increment_completed()  # which checkpointing and logging key on
            else:
                self._lightning_optimizer.step()
            acc[0] += loss.detach() * len(yb)
            acc[1] += len(yb)
        return None

    def on_train_start(self) -> None:
        optimizer = self.optimizers()
        self._lightning_optimizer = optimizer
        self._optimizer = getattr(optimizer, "optimizer", optimizer)  # the raw torch optimiser
        # Lightning's own optimiser wrapper costs ~30% of a small model's step; stepping the raw
        # optimiser and advancing Lightning's step counter directly avoids it. If a future
        # Lightning moves that counter, fall back to the wrapper (correct, just slower).
        try:
            self._step_progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        except AttributeError:
            self._step_progress = None
        schedulers = self.lr_schedulers()
        self._scheduler = schedulers[0] if isinstance(schedulers, list) else schedulers

    # validation ------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val = []

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self.model(x)
        loss = cross_entropy(logits, y, reduction="sum")
        correct = (logits.argmax(dim=1) == y).sum()
        self._val.append((float(loss), int(correct), len(y)))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        n = sum(c for _, _, c in self._val)
        val_loss = sum(v for v, _, _ in self._val) / n
        val_acc = sum(c for _, c, _ in self._val) / n
        self.log("val_loss", val_loss, prog_bar=True)
        self.log("val_acc", val_acc, prog_bar=True)
        if self.trainer.sanity_checking:
            return
        train_loss = float(self._train_acc[0]) / self._train_acc[1] if self._train_acc[1] else float("nan")
        self.log("train_loss", train_loss, prog_bar=True)
        lr = self.trainer.optimizers[0].param_groups[0]["lr"] if self.trainer.optimizers else float("nan")
        row = {"epoch": int(self.current_epoch), "train_loss": train_loss,
               "val_loss": float(val_loss), "val_acc": float(val_acc), "lr": float(lr)}
        score = val_loss if self.monitor == "val_loss" else -val_acc
        eligible = True
        if self.penalty is not None:
            cost = self.penalty.report(self.model)  # validation runs in eval mode: deployed widths
            objective = float(val_loss) + self._beta * cost["ebops"]
            row.update(beta=self._beta, ebops=cost["ebops"], pruned_weights=cost["pruned_weights"],
                       val_objective=objective)
            self.log("ebops", cost["ebops"])  # also in logs/metrics.csv
            self.log("beta", self._beta)
            eligible = int(self.current_epoch) >= int(self.penalty.settled_epoch)
            if self.monitor == "val_loss":
                score = objective
            # What checkpointing and early stopping compare (mode "min"). Before beta has settled
            # the objective still moves with the schedule: never better, so neither keys on it.
            self.log(SCORE_METRIC, score if eligible else math.inf)
        self.history.append(row)
        if not math.isfinite(train_loss):
            self.diverged = True
            self.trainer.should_stop = True  # the weights are gone; keep the best earlier epoch
        # Manual optimisation leaves the schedule to us: one step per epoch, after validation
        # (a plateau schedule only once the cost penalty has settled: the loss it watches rises
        # with a beta ramp by design).
        if self._scheduler is not None:
            if isinstance(self._scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                if eligible:
                    self._scheduler.step(score if self.monitor == "val_loss" else val_acc)
            else:
                self._scheduler.step()
        if eligible and score < self.best_score:
            self.best_score = score
            self.best_epoch = int(self.current_epoch)
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    # optimiser -------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        optimizer = make_optimizer(param_groups(self.model, hp.lr, self.lr_scales), lr=hp.lr,
                                   weight_decay=hp.weight_decay)
        # QKeras clips every quantized kernel/bias to its quantizer's range after each update
        # (Keras constraints); without it binary/ternary shadow weights drift far from zero and
        # stop flipping. The search's trials clip too, so a retrained winner sees the same rule.
        from hqrun.models import attach_weight_constraints

        attach_weight_constraints(self.model, optimizer)
        if hp.scheduler == "none":
            return optimizer
        if hp.scheduler == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=max(1, hp.max_epochs), eta_min=hp.min_lr
            )
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
        mode = "min" if self.monitor == "val_loss" else "max"
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=mode, factor=hp.plateau_factor, patience=hp.plateau_patience, min_lr=hp.min_lr
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
