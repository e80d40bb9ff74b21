"""The cost penalty a plan carries: ``beta * EBOPs`` added to the training loss, and its schedule.

Why on the plan: the strength of the hardware-cost term decides which widths a learned-bits model
ends up with, so it belongs to the description of that model just like its quantizer specs — a
search writes it into the winner's YAML and ``hqrun train plan=winner.yaml`` trains the same
thing again. The plan keeps it as plain data (``beta``, ``beta_schedule``, ``beta_start``,
``beta_ramp_epochs``); the trainer asks :meth:`BetaSchedule.at` for each epoch's value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from hqrun.errors import PlanError
from hqrun.quantizers.learned_chain import fused_ebops

__all__ = ["BetaSchedule", "EbopsPenalty", "SCHEDULES", "PENALTY_KEYS", "width_lr_scale"]

SCHEDULES = ("constant", "ramp")
#: Plan keys that describe how learned widths train: the penalty and the widths' learning rate.
PENALTY_KEYS = ("beta", "beta_schedule", "beta_start", "beta_ramp_epochs", "width_lr_scale")


def width_lr_scale(plan: str, value: Any) -> float:
    """The plan's ``width_lr_scale`` (default 1): the learned bit widths' learning rate is
    ``trainer.lr`` times this. Adam moves each parameter by about its learning rate per step
    whatever the gradient's size, so this — not beta — sets how fast widths can fall."""
    if value is None:
        return 1.0
    return _number(plan, "width_lr_scale", value, minimum=0.0)


def _number(plan: str, key: str, value: Any, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < minimum:
        why = ("beta weighs EBOPs in the loss: 0 turns the penalty off, larger values give "
               "cheaper models" if key.startswith("beta") else "it multiplies trainer.lr")
        raise PlanError(f"plan {plan!r}: {key}={value!r} must be a finite number >= {minimum:g} "
                        f"({why}).")
    return float(value)


@dataclass(frozen=True)
class BetaSchedule:
    """``beta`` per epoch.

    * ``constant``: ``beta`` from the first epoch.
    * ``ramp``: ``beta_start`` (default ``beta / 1000``) at epoch 0, growing log-linearly to
      ``beta`` at epoch ``ramp_epochs``, then constant — the cost pressure arrives once the
      network has learned something, as in HGQ's schedules. Until then the trainer neither keeps
      a "best" epoch nor stops early, since the loss it compares is still changing.
    """

    beta: float = 0.0
    schedule: str = "constant"
    start: float | None = None
    ramp_epochs: int = 0

    @classmethod
    def from_plan_dict(cls, plan: str, data: Mapping[str, Any]) -> "BetaSchedule | None":
        """The schedule from a plan mapping's penalty keys; None when ``beta`` is absent/null."""
        if data.get("beta") is None:
            extra = [k for k in PENALTY_KEYS[1:4] if data.get(k) is not None]
            if extra:
                raise PlanError(f"plan {plan!r} sets {', '.join(extra)} but no beta; add beta=... "
                                "(the weight of EBOPs in the loss) or remove them.")
            return None
        beta = _number(plan, "beta", data["beta"])
        schedule = str(data.get("beta_schedule") or "constant")
        if schedule not in SCHEDULES:
            raise PlanError(f"plan {plan!r}: beta_schedule={schedule!r} is unknown; use "
                            f"{' or '.join(SCHEDULES)}.")
        start = data.get("beta_start")
        start = None if start is None else _number(plan, "beta_start", start)
        ramp = data.get("beta_ramp_epochs") or 0
        if isinstance(ramp, bool) or not isinstance(ramp, int) or ramp < 0:
            raise PlanError(f"plan {plan!r}: beta_ramp_epochs={ramp!r} must be a whole number of "
                            "epochs >= 0.")
        if schedule == "ramp" and ramp == 0:
            raise PlanError(f"plan {plan!r}: beta_schedule=ramp needs beta_ramp_epochs >= 1 (the "
                            "epochs over which beta grows to its final value).")
        return cls(beta, schedule, start, int(ramp))

    def to_plan_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"beta": self.beta, "beta_schedule": self.schedule}
        if self.schedule == "ramp":
            d["beta_start"] = self.start
            d["beta_ramp_epochs"] = self.ramp_epochs
        return d

    @property
    def settled_epoch(self) -> int:
        """First epoch at which beta has its final value."""
        return self.ramp_epochs if self.schedule == "ramp" else 0

    def at(self, epoch: int) -> float:
        """beta during ``epoch`` (0-based)."""
        if self.schedule == "constant" or epoch >= self.ramp_epochs or self.beta == 0.0:
            return self.beta
        start = self.start if self.start is not None else self.beta * 1e-3
        if start <= 0.0:
            return self.beta * epoch / self.ramp_epochs
        return start * (self.beta / start) ** (epoch / self.ramp_epochs)


class EbopsPenalty:
    """``beta(epoch) * EBOPs(model)``: the loss term the trainer adds for a plan with ``beta``.

    The trainer's generic hook (``ClassifierModule(penalty=...)``) needs only ``beta_at``,
    ``settled_epoch``, ``__call__`` (the differentiable EBOPs, right after a training forward)
    and ``report`` (exact eval-mode numbers for the epoch's history row). The model's per-layer
    shapes are traced once here, so a training step runs no dry pass.
    """

    def __init__(self, model: Any, schedule: BetaSchedule, input_bits: float | None = None) -> None:
        from hqrun.quantizers.ebops import DEFAULT_INPUT_BITS, EbopsProgram

        self.schedule = schedule
        self.input_bits = DEFAULT_INPUT_BITS if input_bits is None else float(input_bits)
        self.program = EbopsProgram(model)

    def beta_at(self, epoch: int) -> float:
        return self.schedule.at(epoch)

    @property
    def settled_epoch(self) -> int:
        return self.schedule.settled_epoch

    def __call__(self, model: Any) -> Any:
        """The differentiable EBOPs of ``model`` (the one the program was prepared for)."""
        fused = fused_ebops(model, self.input_bits)  # counted by the fused training forward
        return fused if fused is not None else self.program.total(self.input_bits)

    def report(self, model: Any) -> dict[str, Any]:
        """``{"ebops", "ebops_layers", "pruned_weights", "weights"}`` of the model as it is now
        (call in eval mode for the deployed widths), in float64."""
        import torch

        with torch.no_grad():
            return self.program(self.input_bits, torch.float64).as_dict()
