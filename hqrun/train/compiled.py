"""The training loss as one ``torch.compile``-d function (``trainer.compile=true``).

Why it is optional and off by default: on this project's reference machine (2-core AMD EPYC,
AVX2, torch 2.13 CPU, one thread) Inductor's fused forward/backward kernels for the quantizers
measured *slower* than the hand-written eager fast paths (Q6 jet model, batch 1024: eager
~430k samples per CPU-second, compiled ~210k; see docs/data_and_training.md). The eager step is
already a handful of in-place ATen calls per quantizer, and the generated backward kernels lose
more than the fusion wins. Machines where Inductor does better can turn it on.

Compilation is cached by Inductor's on-disk FX graph cache (``TORCHINDUCTOR_CACHE_DIR``, default
under the temp dir), so a second run of the same model pays only Dynamo's tracing. Values match
the eager step up to float reassociation inside fused kernels (tests/test_train_compiled.py).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from hqrun.train.losses import cross_entropy

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def eager_loss(model: nn.Module) -> LossFn:
    """Cross-entropy of ``model``'s logits: the step's loss, run op by op."""

    def loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return cross_entropy(model(x), y)

    return loss


def compiled_loss(model: nn.Module) -> LossFn:
    """The same loss, traced and fused by ``torch.compile`` on first call.

    ``dynamic=False``: a run sees two batch sizes at most (full and last partial batch), and
    static shapes let Inductor unroll the fixed layer widths.
    """
    return torch.compile(eager_loss(model), dynamic=False)


def training_loss(model: nn.Module, compile: bool) -> LossFn:
    """The loss function a training step calls: compiled or eager."""
    return compiled_loss(model) if compile else eager_loss(model)
