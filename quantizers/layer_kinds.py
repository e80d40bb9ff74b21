"""What a layer computes, asked of the layer itself: the dispatch key of type inference and firmware.

hqrun's layers carry a ``type_kind`` attribute (:class:`~hqrun.quantizers.layers.QLayer`); plain
``torch.nn`` layers that a model may also contain are recognised here by ``isinstance`` against
their torch classes (not by name, so subclasses work too). A new hqrun layer therefore sets its
``type_kind`` and needs no edit here.
"""

from __future__ import annotations

from torch import nn

__all__ = ["LAYER_KINDS", "MAC_KINDS", "layer_kind"]

#: Layer kinds with a multiply-accumulate datapath.
MAC_KINDS = ("dense", "conv1d", "conv2d", "depthwise_conv2d")

#: Every kind the type inference and the firmware know.
LAYER_KINDS = MAC_KINDS + ("activation", "batchnorm", "avgpool2d", "input", "flatten",
                           "passthrough", "maxpool")

#: Plain torch layers and the kind each computes (checked in order, with isinstance).
_TORCH_KINDS: tuple[tuple[type, str], ...] = (
    (nn.Linear, "dense"),
    (nn.Conv1d, "conv1d"),
    (nn.Conv2d, "conv2d"),
    (nn.ReLU, "activation"),
    (nn.Softmax, "activation"),
    (nn.Sigmoid, "activation"),
    (nn.Tanh, "activation"),
    (nn.modules.batchnorm._BatchNorm, "batchnorm"),
    (nn.AvgPool2d, "avgpool2d"),
    (nn.Flatten, "flatten"),
    (nn.MaxPool1d, "maxpool"),
    (nn.MaxPool2d, "maxpool"),
    (nn.Identity, "passthrough"),
    (nn.Dropout, "passthrough"),
)


def layer_kind(module: nn.Module) -> str | None:
    """The layer's kind (one of :data:`LAYER_KINDS`), or None when hqrun does not know it."""
    kind = getattr(module, "type_kind", None)
    if isinstance(kind, str):
        return kind
    for cls, name in _TORCH_KINDS:
        if isinstance(module, cls):
            return name
    return None
