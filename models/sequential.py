"""QSequential: the container every hqrun model is, plus name-based layer lookups.

Plans, the cost model and the firmware all address layers by the child names (``dense_1``,
``relu_1``, ...), so the container is an ordered ``nn.Sequential`` with those names, and the
lookups here are the shared way to ask "which layers carry weights / activations".
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterable

import torch
from torch import nn

from hqrun.quantizers.layers import WEIGHT_LAYERS, QActivation
from hqrun.quantizers.chain_walk import training_chain_for


def _is_softmax(module: nn.Module) -> bool:
    if isinstance(module, nn.Softmax):
        return True
    return isinstance(module, QActivation) and module.float_function == "softmax"


class QSequential(nn.Sequential):
    """Named children run in order; ``forward`` returns logits, ``predict_proba`` probabilities.

    A trailing softmax child is skipped in ``forward`` so training can use a numerically stable
    cross-entropy on logits while the model still *contains* the softmax (as the QKeras model
    does, so layer lists and per-layer reports line up).
    """

    def __init__(self, layers: "OrderedDict[str, nn.Module] | Iterable[tuple[str, nn.Module]]",
                 input_shape: tuple[int, ...] | None = None) -> None:
        super().__init__(OrderedDict(layers))
        #: Per-sample input shape (e.g. ``(16,)`` or ``(1, 28, 28)``) for tools that trace.
        self.input_shape = tuple(input_shape) if input_shape is not None else None

    def _body(self) -> list[nn.Module]:
        mods = list(self._modules.values())
        if mods and _is_softmax(mods[-1]):
            mods = mods[:-1]
        return mods

    #: Train a leading chain of quantized layers as one autograd node when it qualifies
    #: (``hqrun.quantizers.learned_chain`` for learned widths, ``qkeras_chain`` for QKeras's
    #: quantizers: same values and gradients, fewer per-step costs).
    fused_training = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102 - see class docstring
        body = self._body()
        if self.training and self.fused_training and torch.is_grad_enabled():
            chain = self._training_chain()
            out = chain(x) if chain is not None else None
            if out is not None:
                x, body = out, body[chain.length:]
        for module in body:
            x = module(x)
        return x

    def _training_chain(self) -> "Any":
        """The fused chain, kept while its quantizers stay in place; looked for again otherwise
        (a few type checks per step for a model that has none). None under ``torch.compile``:
        the layers are traced instead (asked here, in the frame dynamo traces, not in ``forward``,
        which dynamo may run eagerly around a graph break)."""
        if torch.compiler.is_compiling():
            return None
        chain = self.__dict__.get("_chain")
        if chain is not None and chain.intact():
            return chain
        chain = training_chain_for(self)
        self.__dict__["_chain"] = chain
        return chain

    def __getstate__(self) -> dict:
        """Pickling and ``copy.deepcopy`` leave the fused chain out: it is a cache of the layer
        walk (with C-call tables that do not pickle), rebuilt on the next training step."""
        state = dict(super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__)
        state.pop("_chain", None)
        return state

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (softmax of the logits), whatever the trailing child is."""
        return torch.softmax(self.forward(x), dim=-1)

    def layer_names(self) -> list[str]:
        return list(self._modules.keys())


def weight_layers(model: nn.Module) -> "OrderedDict[str, nn.Module]":
    """Name -> layer for every child holding a kernel (dense, conv, depthwise, folded BN)."""
    return OrderedDict((n, m) for n, m in model.named_children() if isinstance(m, WEIGHT_LAYERS))


def activation_layers(model: nn.Module) -> "OrderedDict[str, nn.Module]":
    """Name -> layer for every activation child (ReLU and softmax alike, as QActivation)."""
    return OrderedDict((n, m) for n, m in model.named_children() if isinstance(m, QActivation))
