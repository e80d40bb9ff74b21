"""Fold each inference-mode batch norm into the dense/conv layer before it (exactly, or refuse).

The folding arithmetic is :mod:`hqrun.quantizers.bn_fold`, the same the type inference used to
type the folded layer; the accumulator built here must equal the type inference's, so the cost
model priced what is built.
"""

from __future__ import annotations

from typing import Any

from hqrun.errors import FirmwareError
from hqrun.quantizers.bn_fold import batchnorm_affine, fold_affine
from hqrun.quantizers.exact_types import exact_mac_types, input_code_bounds

from ..ir import IRLayer, to_codes


def _fold(prev: IRLayer, bn: IRLayer) -> None:
    if not prev.is_mac or prev.out_type != prev.accum_type:
        raise FirmwareError(
            f"batch norm {bn.name!r} follows {prev.name!r}; it can only be folded into a directly "
            "preceding dense/conv layer. Use QDenseBatchnorm for deployable batch norm."
        )
    w = prev.weight.astype("float64") * 2.0 ** -prev.weight_type.fractional
    b = None if prev.bias is None else prev.bias.astype("float64") * 2.0 ** -prev.bias_type.fractional
    scale, offset = batchnorm_affine(bn.attrs["module"], prev.weight.shape[0], len(prev.out_shape) - 1)
    folded = fold_affine(w, b, scale, offset)
    if folded is None:
        raise FirmwareError(f"batch norm {bn.name!r} cannot be folded exactly into {prev.name!r}; "
                            "use QDenseBatchnorm.")
    wf, bf, w_type, b_type = folded
    x_lo, x_hi = input_code_bounds(prev.in_type, prev.in_grid if prev.op == "dense" else None,
                                   prev.in_shape)
    _, acc = exact_mac_types(wf, w_type, bf, b_type, x_lo, x_hi, prev.in_type.fractional)
    if bn.out_type is None or (acc.width, acc.integer) != (bn.out_type.width, bn.out_type.integer):
        raise FirmwareError(
            f"folding {bn.name!r} into {prev.name!r} gives accumulator {acc.hls_name}, but the "
            f"shared type inference typed it {bn.out_type}; cost and firmware would disagree. "
            "Please report this as an hqrun bug."
        )
    prev.weight = to_codes(wf, w_type, f"folded kernel of {prev.name!r}")
    prev.bias = to_codes(bf, b_type, f"folded bias of {prev.name!r}")
    prev.weight_type, prev.bias_type = w_type, b_type
    prev.accum_type = prev.out_type = acc
    prev.weight_grid = None
    prev.sources.append(bn.name)


def run(ir: Any, ctx: Any) -> None:
    """Replace every ``batchnorm`` IR layer by a fold into its predecessor."""
    out: list[IRLayer] = []
    for layer in ir.layers:
        if layer.op == "batchnorm":
            _fold(out[-1], layer)
            continue
        out.append(layer)
    ir.layers[:] = out
