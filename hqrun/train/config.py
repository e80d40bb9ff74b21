"""Schema of the ``trainer`` config group (merged by :mod:`hqrun.config` before any work starts).

The keys here are exactly those of ``conf/trainer/default.yaml``; a typo such as
``trainer.max_epoch=5`` is refused with the list of valid keys instead of being ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class TrainerConfig:
    """Optimiser, schedule, stopping and logging of one training run."""

    max_epochs: int = 100
    batch_size: int = 1024
    batches_per_step: int = 8  # mini-batches per Lightning step (1: one each); results identical
    eval_batch_size: int = 16384  # validation/test forward passes (memory, not results)
    lr: float = 1e-3  # Adam learning rate
    weight_decay: float = 0.0
    scheduler: str = "plateau"  # plateau | cosine | none
    plateau_factor: float = 0.5
    plateau_patience: int = 3
    min_lr: float = 1e-5
    early_stopping: bool = True
    patience: int = 10  # epochs without val_loss improvement before stopping
    min_delta: float = 0.0
    monitor: str = "val_loss"  # val_loss | val_acc
    checkpoint: bool = True  # write best.ckpt (Lightning) in the run dir
    csv_log: bool = True  # metrics per epoch in <run dir>/logs/.../metrics.csv
    progress_bar: str = "auto"  # auto (TTY and not CI) | true | false
    deterministic: bool = True
    roc_plot: bool = True
    accelerator: str = "cpu"
    # torch.compile the loss (model + cross-entropy); off by default: measured slower on CPU here
    compile: bool = False
    # Seed of the initial weights and the batch order; null: the run's `seed`, which also splits
    # the data. A separate key lets restarts of one model differ in training only, on one split.
    seed: Optional[int] = None
