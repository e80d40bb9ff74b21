"""Compile the hls4ml project's C simulation and run it, layer trace included.

Why trace: the bit-exact check needs the output of the last fixed-point layer (not the softmax,
which hls4ml approximates with tables) and, on a mismatch, the first layer where firmware and
emulation part. hls4ml's ``trace`` gives every layer's output from one compiled library (it
compiles the project itself, with trace hooks that are ``#ifndef __SYNTHESIS__`` and so do not
reach synthesis). Inputs go in as float64, so the bridge's double → ``ap_fixed`` cast is exact for
inputs already on the input grid, and traced outputs come back exactly for widths ≤ 53.
"""

from __future__ import annotations

import contextlib
import io
import time
from typing import Any, Sequence

import numpy as np

from hqrun.errors import FirmwareError

from ...ir import FirmwareIR
from .. import SimResult
from .writer import layer_name_map

__all__ = ["run_csim", "SIMULATOR"]

#: How reports name this simulation.
SIMULATOR = "hls4ml C simulation (g++)"


def _to_channels_first(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """hls4ml traces conv outputs channels-last; IR (like PyTorch) is channels-first."""
    if len(shape) <= 1:
        return a.reshape((a.shape[0],) + shape)
    spatial = shape[1:]
    a = a.reshape((a.shape[0],) + spatial + (shape[0],))
    return np.moveaxis(a, -1, 1)


def run_csim(hls_model: Any, irs: FirmwareIR | Sequence[FirmwareIR],
             xs: np.ndarray | Sequence[np.ndarray]) -> list[SimResult]:
    """Compile (with tracing) and run ``xs`` (one batch per IR, channels-first) through the C-sim."""
    ir_list = [irs] if isinstance(irs, FirmwareIR) else list(irs)
    x_list = [xs] if isinstance(irs, FirmwareIR) else list(xs)
    n = {int(x.shape[0]) for x in x_list}
    if len(n) != 1:
        raise FirmwareError("every model in one C simulation needs the same number of samples.")
    feed = [np.ascontiguousarray(np.asarray(x, dtype=np.float64).reshape(x.shape[0], -1))
            for x in x_list]
    log = io.StringIO()
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(log):
            preds, trace = hls_model.trace(feed[0] if len(feed) == 1 else feed)
    except Exception as err:  # noqa: BLE001 - compiler failures become one readable paragraph
        raise FirmwareError(
            f"the C simulation did not compile or run ({type(err).__name__}: {err}). Is g++ "
            f"installed? hls4ml's log ends with: {log.getvalue()[-600:]!r}"
        ) from None
    elapsed = time.perf_counter() - t0
    if len(feed) == 1:
        preds = [preds]
    n_samples = n.pop()
    results = []
    for ir, mapping, pred in zip(ir_list, layer_name_map(ir_list), preds):
        codes: dict[str, np.ndarray] = {}
        floats: dict[str, np.ndarray] = {}
        for layer in ir.layers[1:]:
            data = trace.get(mapping[layer.name])
            if data is None:
                continue
            data = np.asarray(data, dtype=np.float64).reshape(n_samples, -1)
            data = _to_channels_first(data, tuple(layer.out_shape))
            if layer.out_type is None:
                floats[layer.name] = data
                continue
            scaled = np.ldexp(data, layer.out_type.fractional)
            code = np.round(scaled).astype(np.int64)
            if not np.array_equal(code, scaled):
                raise FirmwareError(f"C-sim trace of layer {layer.name!r} is off its type's grid "
                                    f"({layer.out_type.hls_name}); the trace is unusable.")
            codes[layer.name] = code
        out = np.asarray(pred, dtype=np.float64).reshape(n_samples, -1)
        results.append(SimResult(codes, floats, out, elapsed, {"simulator": SIMULATOR}))
    return results
