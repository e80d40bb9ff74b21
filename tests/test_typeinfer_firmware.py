"""One type-inference pass for cost and firmware: the IR's accumulators are the type inference's,
and they are exact — every partial sum of every sample, in any order, fits them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hqrun.firmware import build_ir
from hqrun.quantizers import FixedPointType
from hqrun.quantizers.exact_types import exact_mac_types
from hqrun.quantizers.layers import QDense
from hqrun.quantizers.typeinfer import infer_types

torch.set_num_threads(1)


def _layer(rng: np.random.Generator, seed: int) -> tuple[QDense, FixedPointType]:
    wb, bb, xw = (int(v) for v in rng.integers(2, 9, size=3))
    xt = FixedPointType(xw, int(rng.integers(0, 3)), signed=bool(rng.integers(0, 2)))
    layer = QDense(int(rng.integers(1, 20)), int(rng.integers(1, 5)),
                   f"quantized_bits({wb},0,alpha=1)", f"quantized_bits({bb},0,alpha=1)")
    with torch.no_grad():
        layer.weight.uniform_(-1, 1)
        if seed % 3 == 0:
            layer.weight.abs_()  # all-positive weights: every sum >= 0 with unsigned inputs
        if seed % 4 == 0:
            layer.weight.zero_()  # a pruned layer
        layer.bias.uniform_(-1, 1)
    return layer, xt


@pytest.mark.parametrize("seed", range(12))
def test_firmware_builds_the_type_inference_accumulator(seed):
    layer, xt = _layer(np.random.default_rng(seed), seed)
    seq = torch.nn.Sequential()
    seq.add_module("d", layer)
    (lt,) = infer_types(seq, xt, "exact")
    ir = build_ir(seq, (layer.in_features,), xt)
    dense = ir.layer("d")
    assert (dense.accum_type.width, dense.accum_type.integer) == (lt.accumulator.width,
                                                                  lt.accumulator.integer)
    assert dense.weight_type == lt.weight and dense.bias_type == lt.bias


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_every_partial_sum_fits_the_accumulator(seed):
    """Property: extreme inputs on the grid, partial sums in input order and in reverse."""
    rng = np.random.default_rng(seed)
    layer, xt = _layer(rng, seed)
    k = layer.quantized_kernel().detach().double().numpy()
    b = layer.quantized_bias().detach().double().numpy()
    _, acc = exact_mac_types(k, layer.kernel_quantizer.fixed_point_type(), b,
                             layer.bias_quantizer.fixed_point_type(), xt.min_code, xt.max_code,
                             xt.fractional)
    x = rng.choice([xt.min_value, xt.max_value, 0.0], size=(64, layer.in_features))
    for order in (slice(None), slice(None, None, -1)):
        partial = np.cumsum((x[:, None, :] * k[None])[..., order], axis=-1)
        for total in (partial, partial + b[None, :, None]):
            assert acc.contains(total), (acc.hls_name, total.min(), total.max())


def test_per_element_input_formats_narrow_the_accumulator():
    """A dense layer fed by per-element formats is bounded element by element."""
    from hqrun.quantizers.grid import FixedPointGrid

    k = np.array([[0.5, -0.25, 0.75]])
    wt = FixedPointType(3, 1)
    wide = FixedPointType(8, 4, False)
    grid = FixedPointGrid(np.zeros(3, bool), np.array([4, 1, 0]), np.array([4, 2, 3]))
    _, uniform_acc = exact_mac_types(k, wt, None, None, wide.min_code, wide.max_code, wide.fractional)
    lo = np.round(np.ldexp(grid.min_values(), 4)).astype(np.int64)
    hi = np.round(np.ldexp(grid.max_values(), 4)).astype(np.int64)
    _, per_element = exact_mac_types(k, wt, None, None, lo, hi, 4)
    assert per_element.width < uniform_acc.width
    assert per_element.contains(np.array([0.5 * grid.max_values()[0] + 0.75 * grid.max_values()[2]]))
