"""One trial: plan -> model -> float weights transferred -> QAT for E epochs -> per-epoch report.

The trial is plain Python so it can be timed and tested without Ray; ``runner`` wraps it for
Ray Tune. Everything model-specific (building a model from a plan, weight transfer, pricing)
goes through a :class:`Backend`, so the search logic does not care whether it searches the jet
model of hqrun.models or a test's toy network.

Training uses a lean loop over in-memory tensors sliced by index (no DataLoader, no Lightning
Trainer): a trial is a few seconds long, and the fixed per-fit overhead of a full trainer would
otherwise be a large part of it (the throughput target is >= 1,000 trials/hour/core).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

import torch
from torch import nn

from hqrun.errors import SearchError
from hqrun.search.objectives import ForgivingFactor, cost_of
from hqrun.train.losses import cross_entropy


class TrialFailed(RuntimeError):
    """A trial produced NaN/inf or could not be built; it is recorded as failed."""


@dataclass
class Split:
    x: torch.Tensor
    y: torch.Tensor  # int64 class indices


@dataclass
class TrialData:
    train: Split
    val: Split
    test: Split | None = None


@dataclass
class CostInfo:
    totals: dict[str, float]                       # bits, energy, ebops (those available)
    layers: dict[str, dict[str, float]] = field(default_factory=dict)  # per-layer totals


class Backend(Protocol):
    """What the search needs from the model and cost packages."""

    def describe(self) -> list:  # list[LayerInfo]
        ...

    def build(self, plan: Mapping[str, Any], widths: Mapping[str, float]) -> nn.Module:
        ...

    def transfer(self, src: nn.Module, dst: nn.Module) -> None:
        ...

    def cost(self, model: nn.Module) -> CostInfo:
        ...

    def reference_cost(self, model: nn.Module) -> CostInfo:
        ...


@dataclass
class TrialSettings:
    epochs: int
    batch_size: int
    learning_rate: float
    goal: str
    forgiving: ForgivingFactor
    reference_cost: float
    threads: int = 1
    seed: int = 0
    patience: int = 0          # early stopping on val loss (0: off)
    trainer: str = "lightning"  # lightning (hqrun.train's fit_and_evaluate) | lean (hand-written in-memory loop)


class LeanAdam:
    """Adam (Kingma & Ba, torch's defaults) in a few tensor ops.

    ``torch.optim.Adam``'s constructor imports ``torch._dynamo`` on first use, which takes
    3-8 s in every fresh Ray worker: more than a whole trial of the jet model. Same update rule
    as torch's Adam with default arguments (no weight decay, no amsgrad).
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0
        self._post_hooks: list[Callable] = []

    def register_step_post_hook(self, hook: Callable) -> Any:
        """Same contract as torch's: ``hook(optimizer, args, kwargs)`` after every step
        (``hqrun.models.attach_weight_constraints`` uses it for QKeras's Clip constraints)."""
        self._post_hooks.append(hook)
        return hook

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        c1 = 1 - self.b1 ** self.t
        c2 = 1 - self.b2 ** self.t
        step = self.lr / c1
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            g = p.grad
            m.mul_(self.b1).add_(g, alpha=1 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            denom = (v / c2).sqrt_().add_(self.eps)
            p.addcdiv_(m, denom, value=-step)
        for hook in self._post_hooks:
            hook(self, (), {})


def train_epoch(model: nn.Module, opt: "LeanAdam | torch.optim.Optimizer", data: Split, batch_size: int,
                gen: torch.Generator) -> float:
    """One epoch of minibatch training; returns the mean loss (NaN propagates)."""
    model.train()
    n = data.x.shape[0]
    perm = torch.randperm(n, generator=gen)
    loss_fn = cross_entropy
    total, count = 0.0, 0
    for start in range(0, n, batch_size):
        idx = perm[start:start + batch_size]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(data.x[idx]), data.y[idx])
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(idx)
        count += len(idx)
    return total / max(count, 1)


@torch.no_grad()
def evaluate(model: nn.Module, data: Split, batch_size: int = 65536) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) in eval mode; NaN when the logits are not finite."""
    model.eval()
    correct, loss = 0, 0.0
    for start in range(0, data.x.shape[0], batch_size):
        logits = model(data.x[start:start + batch_size])
        y = data.y[start:start + batch_size]
        if not torch.isfinite(logits).all():
            return float("nan"), float("nan")
        correct += int((logits.argmax(1) == y).sum())
        loss += float(cross_entropy(logits, y, reduction="sum"))
    n = max(data.x.shape[0], 1)
    return correct / n, loss / n


def accuracy(model: nn.Module, data: Split, batch_size: int = 65536) -> float:
    return evaluate(model, data, batch_size)[0]


def train_model(model: nn.Module, data: TrialData, epochs: int, batch_size: int,
                learning_rate: float, seed: int,
                on_epoch: Callable[[int, float, float], None] | None = None,
                attach: Callable[[nn.Module, Any], Any] | None = None,
                patience: int = 0) -> float:
    """Train up to ``epochs`` epochs; call ``on_epoch(epoch, loss, val_acc)``; return the last
    val accuracy.

    ``attach(model, optimizer)`` lets the backend hook into the optimizer (QKeras's weight
    constraints after each step). ``patience`` > 0 stops as Keras's
    ``EarlyStopping("val_loss", patience)`` does (AutoQKeras adds one with
    ``patience=min(20, epochs // 5)`` to every trial).
    """
    gen = torch.Generator().manual_seed(seed)
    opt = LeanAdam(model.parameters(), lr=learning_rate)
    if attach is not None:
        attach(model, opt)
    acc, best, wait = float("nan"), math.inf, 0
    for epoch in range(1, epochs + 1):
        loss = train_epoch(model, opt, data.train, batch_size, gen)
        acc, val_loss = evaluate(model, data.val)
        if patience > 0:
            if val_loss < best:
                best, wait = val_loss, 0
            else:
                wait += 1
        stop = patience > 0 and wait >= patience and epoch < epochs
        if on_epoch is not None:
            on_epoch(epoch, loss, acc, stop) if _takes_stop(on_epoch) else on_epoch(epoch, loss, acc)
        if stop:
            break
    return acc


def _takes_stop(fn: Callable) -> bool:
    import inspect

    try:
        return len(inspect.signature(fn).parameters) >= 4
    except (TypeError, ValueError):
        return False


def run_trial(config: Mapping[str, Any], space, backend: Backend, data: TrialData,
              reference_state: Mapping[str, torch.Tensor] | None, settings: TrialSettings,
              report: Callable[[dict], None]) -> dict:
    """Run one trial and ``report`` a metrics dict after every epoch; return the last one.

    Raises :class:`TrialFailed` on NaN/inf so that the runner records the trial as failed.
    """
    torch.set_num_threads(max(1, int(settings.threads)))
    torch.manual_seed(settings.seed)
    model, on_epoch, last_report = prepare_trial(config, space, backend, reference_state, settings, report)
    if settings.trainer == "lightning":
        _train_lightning(model, data, settings, on_epoch)
    else:
        train_model(model, data, settings.epochs, settings.batch_size, settings.learning_rate,
                    settings.seed, on_epoch, getattr(backend, "attach_optimizer", None),
                    settings.patience)
    last = last_report()
    if not last:
        raise SearchError("search.epochs must be >= 1")
    return last


def failure_metrics(err: BaseException, epochs_reported: int, attempts: int) -> dict:
    """The final result of a failed trial: NaN metrics, the error's one line, how far it got."""
    nan = float("nan")
    return {"failed": 1, "error": f"{type(err).__name__}: {err}"[:500], "accuracy": nan,
            "cost": nan, "score": nan, "epoch": epochs_reported, "attempts": attempts}


def run_trial_with_retries(config: Mapping[str, Any], space, backend: Backend, data: TrialData,
                           reference_state: Mapping[str, torch.Tensor] | None,
                           settings: TrialSettings, report: Callable[[dict], None],
                           retries: int) -> dict:
    """:func:`run_trial`, retrying a trial that failed before reporting any epoch.

    Returns the last epoch's metrics, or :func:`failure_metrics` (not reported: the caller
    decides where a failure goes). A trial that already reported epochs is not retried: a
    scheduler or the journal has seen them. Why retry at all: a Python error inside a Ray worker
    is answered here, in the same process, instead of Ray restarting the worker (seconds of
    imports) — the lone Ray trial and a population's fallback members share this rule.
    """
    for attempt in range(retries + 1):
        reported: list[dict] = []

        def collect(metrics: dict) -> None:
            reported.append(metrics)
            report(metrics)

        try:
            return run_trial(config, space, backend, data, reference_state, settings, collect)
        except Exception as err:  # noqa: BLE001 - any trial error is recorded, not fatal
            if reported or attempt == retries:
                return failure_metrics(err, len(reported), attempt + 1)
    raise AssertionError("unreachable")  # pragma: no cover


def prepare_trial(config: Mapping[str, Any], space, backend: Backend,
                  reference_state: Mapping[str, torch.Tensor] | None, settings: TrialSettings,
                  report: Callable[[dict], None]) -> tuple[nn.Module, Callable[..., None], Callable[[], dict]]:
    """A trial's model (built, reference weights transferred) and its per-epoch scorer.

    Returns ``(model, on_epoch, last_report)``: the trainer calls ``on_epoch(epoch, loss, acc,
    stop)`` after each epoch (it scores, reports, and raises :class:`TrialFailed` on NaN/inf);
    ``last_report()`` is the latest report. Shared by :func:`run_trial` and population trials
    (hqrun.search.population_trials), so both score and report epochs identically.
    """
    t0 = time.perf_counter()
    plan = space.plan(config)
    widths = space.widths(config)
    model = backend.build(plan, widths)
    if not widths:
        start_from_reference(backend, model, reference_state)
    info = backend.cost(model)
    cost = cost_of(info.totals, settings.goal)
    last: dict = {}
    best: dict = {}

    def on_epoch(epoch: int, loss: float, acc: float, stop: bool = False) -> None:
        # A trial's accuracy and score are those of its best epoch so far, as in Keras Tuner
        # (trial score = best value of the objective over epochs), which AutoQKeras runs on: a
        # 10-epoch QAT curve of a 1-2 bit model swings by points from epoch to epoch, and the
        # last epoch alone ranks trials by that noise.
        nonlocal last, best
        if not (math.isfinite(loss) and math.isfinite(acc)):
            raise TrialFailed(f"epoch {epoch}: loss={loss} val_accuracy={acc} (not finite)")
        score = settings.forgiving.score(acc, settings.reference_cost, cost)
        if not best or score > best["score"]:
            best = {"epoch": epoch, "accuracy": acc, "score": score}
        last = {
            "epoch": epoch,
            "loss": loss,
            "accuracy": best["accuracy"],
            "last_accuracy": acc,
            "best_epoch": best["epoch"],
            "cost": cost,
            "score": best["score"],
            "trial_time": time.perf_counter() - t0,
            "early_stopped": int(stop),
            **{f"cost_{k}": float(v) for k, v in info.totals.items()},
        }
        report(dict(last))

    return model, on_epoch, lambda: last


def _train_lightning(model: nn.Module, data: TrialData, settings: TrialSettings,
                     on_epoch: Callable[..., None]) -> None:
    """QAT through hqrun.train's Lightning ``fit_and_evaluate`` (same epochs, lr, batches,
    early stopping); every epoch goes to ``on_epoch`` like the lean loop's."""
    from hqrun.train.runner import fit_and_evaluate

    splits = lightning_splits(data)
    trainer = lightning_trainer_settings(settings)
    state = {"best": math.inf, "wait": 0}

    def row(r: dict) -> None:
        if r["val_loss"] < state["best"]:
            state["best"], state["wait"] = r["val_loss"], 0
        else:
            state["wait"] += 1
        stop = settings.patience > 0 and state["wait"] >= settings.patience
        epoch = int(r["epoch"]) + 1          # Lightning counts epochs from 0
        on_epoch(epoch, float(r["train_loss"]), float(r["val_acc"]), stop and epoch < settings.epochs)

    fit_and_evaluate(splits, trainer, model=model, seed=settings.seed, epoch_callback=row,
                     threads=settings.threads, evaluate_test=False, evaluate_val=False)


def start_from_reference(backend: Backend, model: nn.Module,
                         reference_state: Mapping[str, torch.Tensor] | None,
                         reference: nn.Module | None = None) -> None:
    """Copy the float reference's weights into ``model`` (a trial starts from them, and its cost
    is priced on them: EBOPs and LUTs depend on the weights). ``reference``: the float model
    already built with ``reference_state`` (saves a build when pricing many configurations)."""
    if reference_state is None and reference is None:
        return
    if reference is None:
        reference = backend.build(_float_plan(), {})
        reference.load_state_dict(reference_state)
    backend.transfer(reference, model)
def lightning_trainer_settings(settings: TrialSettings) -> dict:
    """A search trial's trainer settings in hqrun.train's keys (same epochs, lr, batches and
    early stopping as the lean loop); lone Lightning trials and populations both use them."""
    return {"max_epochs": settings.epochs, "batch_size": settings.batch_size,
            "lr": settings.learning_rate, "scheduler": "none",
            "early_stopping": settings.patience > 0, "patience": max(settings.patience, 1),
            "monitor": "val_loss", "checkpoint": False, "csv_log": False,
            "progress_bar": "false", "deterministic": False}


def lightning_splits(data: TrialData) -> Any:
    """TrialData as the attribute view ``fit_and_evaluate`` reads (X_train, y_val, ...). The
    test split is a one-row stand-in: search trainings never evaluate on test."""
    from types import SimpleNamespace

    n_classes = int(max(int(data.train.y.max()), int(data.val.y.max())) + 1)
    return SimpleNamespace(
        X_train=data.train.x.numpy(), y_train=data.train.y.numpy(),
        X_val=data.val.x.numpy(), y_val=data.val.y.numpy(),
        X_test=data.val.x[:1].numpy(), y_test=data.val.y[:1].numpy(),
        class_names=[str(i) for i in range(n_classes)])


def _float_plan() -> dict:
    return {"name": "float", "input": None,
            "default": {"kernel": None, "bias": None, "activation": None}, "layers": {}}


float_plan = _float_plan
