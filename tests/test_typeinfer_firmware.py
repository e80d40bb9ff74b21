"""The shared pass and the firmware agree: the firmware's own exact accumulator always fits in
the type inference's (the firmware then uses ours, so cost and hardware see the same types)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hqrun.quantizers import FixedPointType
from hqrun.quantizers.layers import QDense
from hqrun.quantizers.typeinfer import infer_types

ir = pytest.importorskip("hqrun.firmware.ir")
torch.set_num_threads(1)


@pytest.mark.parametrize("seed", range(12))
def test_firmware_exact_accumulator_fits_ours(seed):
    if not hasattr(ir, "exact_accum_type") or not hasattr(ir, "_fits"):
        pytest.skip("firmware IR has no exact_accum_type/_fits to compare with")
    rng = np.random.default_rng(seed)
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
    seq = torch.nn.Sequential()
    seq.add_module("d", layer)
    (lt,) = infer_types(seq, xt, "exact")
    k = layer.quantized_kernel().detach().double().numpy()
    b = layer.quantized_bias().detach().double().numpy()
    w_codes = np.round(k * 2.0**lt.weight.fractional).astype(np.int64)
    b_codes = np.round(b * 2.0**lt.bias.fractional).astype(np.int64)
    theirs = ir.exact_accum_type(xt, w_codes, lt.weight, b_codes, lt.bias, (1,))
    assert ir._fits(theirs, lt.accumulator), (theirs.hls_name, lt.accumulator.hls_name)
