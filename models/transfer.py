"""Copy trained float weights into a (quantized) model of the same architecture.

The search trains one float model and then fine-tunes many quantized variants from it (as
AutoQKeras does); quantizers hold no weights of their own that should travel, so only each
layer's own parameters and buffers (kernel, bias, batch-norm statistics) are copied, matched by
child name and attribute name, and shapes must agree exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from hqrun.errors import PlanError


def _own_tensors(layer: nn.Module) -> dict[str, torch.Tensor]:
    """A layer's parameters and buffers without recursing into its quantizer submodules."""
    out = {k: v for k, v in layer._parameters.items() if v is not None}
    out.update({k: v for k, v in layer._buffers.items() if v is not None})
    return out


def transfer_weights(src: nn.Module, dst: nn.Module, strict: bool = True) -> list[str]:
    """Copy ``src``'s layer weights into ``dst`` (in place); returns the copied ``layer.attr`` names.

    With ``strict`` every weight of ``dst`` must be found in ``src`` with the same shape
    (widths differ → PlanError naming the layer); otherwise unmatched tensors keep their values.
    """
    src_children = dict(src.named_children())
    copied: list[str] = []
    with torch.no_grad():
        for name, layer in dst.named_children():
            theirs = _own_tensors(src_children[name]) if name in src_children else {}
            for attr, tensor in _own_tensors(layer).items():
                other = theirs.get(attr)
                if other is None or other.shape != tensor.shape:
                    if not strict:
                        continue
                    what = ("is missing" if other is None else
                            f"has shape {tuple(other.shape)}, not {tuple(tensor.shape)}")
                    raise PlanError(
                        f"transfer_weights: {name}.{attr} {what} in the source model. Both models "
                        "must come from the same architecture and widths (build the source with "
                        "the same model config), or pass strict=False to copy what matches."
                    )
                tensor.copy_(other)
                copied.append(f"{name}.{attr}")
    return copied
