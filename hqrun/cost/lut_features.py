"""What an RTL (distributed-arithmetic) build of a model is made of, read off its exact types.

Why these numbers: the RTL backend (alkaid) builds ``y = W x`` with constant integer weights as
an adder graph over the weights' canonical-signed-digit (CSD) digits — no multipliers — then the
bias, the accumulator cast and the result cast. Every adder is a carry chain about as wide as the
numbers it adds, so the LUTs grow with *how many digits* the weights have and *how wide* the
operands are; alkaid shares work across the outputs an input feeds, which a column of equal
weights (a binary kernel) makes cheap. The counts here are what the calibrated estimate
(:mod:`hqrun.cost.lut_model`) weighs with coefficients fitted to Yosys.

**Widths are the values' own, as alkaid sees them.** alkaid tracks the exact interval of every
value through the model and builds each signal only as wide as its interval needs; a value that
can only be one constant costs nothing, and neither do the digits that multiply it. The same is
done here, element by element: the input type's range, then per output ``b + Σ w·[lo, hi]`` from
the actual quantized weights, then each cast (ReLU/quantizer: rounding and saturation of the
interval's ends) onto the layer's per-element grid (learned widths included). A ReLU whose
largest possible input rounds to 0 is a constant 0 — its whole column in the next layer is free.
A declared ``quantized_relu(16,8)`` whose inputs never exceed 3 costs 2 integer bits, not 8.
Intervals of non-constant values are widened to include 0, which costs a bit at most and makes
every width grow (never shrink) when a type gets wider.

All counts are per inference of the whole layer: a convolution repeats its kernel at every output
position (the RTL backend builds one constant-matrix product per position), so its counts are
multiplied by the number of positions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from hqrun.quantizers.grid import FixedPointGrid
from hqrun.quantizers.typeinfer import MAC_KINDS, LayerTypes, _quantized

__all__ = ["LayerFeatures", "Ranges", "layer_features", "model_features", "used_outputs", "csd_digit_counts",
           "centred_column_digits", "digit_span", "interval_bits", "DA_SHAPE"]

#: How alkaid's own cost of one layer's adder graph scales (``bench/calibrate_lut.py --shape``:
#: a log-linear fit of alkaid 0.8.2's cost of ``x @ W`` to the layer's counts, over 291 dense
#: layers of the calibration's fit models and of 40 more random jet plans; median error 4.3 %,
#: 90th percentile 15.7 %):
#: ``cost ≈ n_out^outputs · span^span · Σ_columns centred_digits · (input bits + 1)^width``.
DA_SHAPE = {"outputs": -0.124, "span": 0.17, "width": 0.781}


def csd_digit_counts(codes: np.ndarray) -> np.ndarray:
    """Non-zero digits of each integer's canonical signed-digit (non-adjacent) form.

    ``popcount(((3n) xor n) >> 1)`` for ``n = |code|`` is the number of non-zero NAF digits
    (e.g. 7 = 8 - 1 has 2); it equals :func:`hqrun.cost.fpga.csd_digits` element by element.
    """
    a = np.abs(np.asarray(codes, dtype=np.int64))
    x = ((3 * a) ^ a) >> 1
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int64)
    return np.array([bin(int(v)).count("1") for v in x.ravel()], dtype=np.int64).reshape(x.shape)


def _row_normalised(codes: np.ndarray) -> np.ndarray:
    """Each output row divided by the largest power of two dividing all its codes (a per-output
    power-of-two scale, as binary/ternary kernels carry, is wiring in the adder graph)."""
    a = np.abs(codes)
    every = np.bitwise_or.reduce(a, axis=1)
    low = every & -every
    return codes // np.where(low > 0, low, 1)[:, None]


def centred_column_digits(codes: np.ndarray) -> np.ndarray:
    """Per column (one input, across the outputs it feeds): the digits left after subtracting the
    column's best common value, plus one adder for that common term when it is non-zero.

    Why: alkaid's solver shares work across the outputs an input feeds; a column of equal values
    (a binary kernel's ±1 column) then costs about half its digits. ``min_v Σ_j csd(c_j − v) +
    [v ≠ 0]``, ``v`` among the column's own values and 0, rows first freed of their power-of-two
    scale, tracks alkaid's cost per layer to a median 4.3 % (``bench/calibrate_lut.py --shape``).
    Like alkaid's cost it is not monotone in the non-zero weights: a column of equal weights
    with one zero costs more than the full column.
    """
    codes = _row_normalised(np.asarray(codes, dtype=np.int64))
    out = np.zeros(codes.shape[1])
    for i in range(codes.shape[1]):
        col = codes[:, i]
        if not col.any():
            continue
        cands = np.unique(np.concatenate([col, [0]]))
        costs = csd_digit_counts(col[None, :] - cands[:, None]).sum(axis=1) + (cands != 0)
        out[i] = costs.min()
    return out


def digit_span(codes: np.ndarray) -> int:
    """Bits from the lowest to the highest set bit over a layer's non-zero codes (at least 1)."""
    a = np.abs(np.asarray(codes, dtype=np.int64))
    a = a[a != 0]
    if a.size == 0:
        return 1
    low = np.log2((a & -a).astype(np.float64))
    high = np.floor(np.log2(a.astype(np.float64)))
    return max(int(high.max() - low.min()) + 1, 1)


def _bitlen(n: np.ndarray) -> np.ndarray:
    """Bits of non-negative integers held in float64 (0 for 0)."""
    return np.where(n > 0, np.floor(np.log2(np.maximum(n, 1.0))) + 1.0, 0.0)


def interval_bits(lo: np.ndarray, hi: np.ndarray, lsb: np.ndarray) -> np.ndarray:
    """Bits of a two's-complement (signed when the interval reaches below 0) or unsigned number
    holding ``[min(lo, 0), max(hi, 0)]`` on steps of ``lsb``; 0 where ``lo == hi`` (a constant)."""
    lo, hi, lsb = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (lo, hi, lsb)))
    a = np.floor(np.minimum(lo, 0.0) / lsb)
    b = np.ceil(np.maximum(hi, 0.0) / lsb)
    signed = a < 0
    bits = np.where(signed, 1.0 + np.maximum(_bitlen(b), _bitlen(-a - 1.0)), _bitlen(b))
    return np.where(lo == hi, 0.0, bits)


@dataclass
class Ranges:
    """Per-element value intervals of one sample's tensor (channels first), and their steps."""

    lo: np.ndarray
    hi: np.ndarray
    lsb: np.ndarray

    @classmethod
    def of_grid(cls, grid: FixedPointGrid, shape: tuple) -> "Ranges":
        """Every value a (per-element) grid can hold."""
        g = grid.broadcast_to(tuple(shape))
        lsb = np.ldexp(1.0, -np.asarray(g.fractional, dtype=np.int64)) + np.zeros(g.shape)
        return cls(np.array(g.min_values(), dtype=np.float64),
                   np.array(g.max_values(), dtype=np.float64), lsb)

    @property
    def constant(self) -> np.ndarray:
        return self.lo == self.hi

    def bits(self) -> np.ndarray:
        return interval_bits(self.lo, self.hi, self.lsb)

    def reshaped(self, shape: tuple) -> "Ranges":
        return Ranges(self.lo.reshape(shape), self.hi.reshape(shape), self.lsb.reshape(shape))


def cast_ranges(r: Ranges, grid: FixedPointGrid, shape: tuple) -> Ranges:
    """The intervals after a cast onto ``grid`` (its rounding and overflow applied to both ends;
    a cast is monotone, so the ends map to the ends). WRAP that can overflow gives the full range."""
    g = grid.broadcast_to(tuple(shape))
    frac = np.asarray(g.fractional, dtype=np.int64) + np.zeros(g.shape, dtype=np.int64)
    lo_code, hi_code = g.code_range()

    def codes(v: np.ndarray) -> np.ndarray:
        y = np.ldexp(v.reshape(g.shape), frac)
        if g.rounding == "RND_CONV":
            return np.round(y)            # numpy rounds half to even
        return np.floor(y + 0.5) if g.rounding == "RND" else np.floor(y)

    n_lo, n_hi = codes(r.lo), codes(r.hi)
    if g.overflow == "WRAP":
        wraps = (n_lo < lo_code) | (n_hi > hi_code)
        n_lo, n_hi = np.where(wraps, lo_code, n_lo), np.where(wraps, hi_code, n_hi)
    else:
        n_lo, n_hi = np.clip(n_lo, lo_code, hi_code), np.clip(n_hi, lo_code, hi_code)
    return Ranges(np.ldexp(n_lo, -frac), np.ldexp(n_hi, -frac), np.ldexp(1.0, -frac))


@dataclass(frozen=True)
class LayerFeatures:
    """The counts of one layer that the calibrated LUT/FF estimate prices (widths are the
    values' own, see the module docstring).

    MAC layers (dense, conv): ``digits`` non-zero CSD digits of the weight codes that multiply a
    non-constant input; ``centred_digits`` what is left of them after each input's best common
    value is shared across the outputs it feeds (:func:`centred_column_digits`); ``span`` the
    bits from the lowest to the highest digit; ``da_cost`` the adder graph's size in alkaid's
    units, ``n_out^a · span^s · Σ_columns centred_digits · (input bits + 1)^w`` (:data:`DA_SHAPE`);
    ``acc_bits`` Σ of the outputs' sum widths. Casts (a ReLU/quantizer layer, or a MAC layer's
    own activation): ``cast_in_bits`` / ``cast_out_bits``, the widths entering and leaving.
    ``out_bits``: the width of the layer's result vector (what a register after it holds).
    ``nonzero`` counts every non-zero weight; ``in_width`` is the mean width of the non-constant
    inputs; ``weight_width`` and ``acc_width`` are the declared types' widths.
    """

    name: str
    kind: str
    n_in: int = 0
    n_out: int = 0
    positions: int = 1
    nonzero: int = 0
    digits: int = 0
    centred_digits: float = 0.0
    span: int = 0
    da_cost: float = 0.0
    acc_bits: float = 0.0
    cast_in_bits: float = 0.0
    cast_out_bits: float = 0.0
    out_bits: float = 0.0
    in_width: float = 0.0
    weight_width: int = 0
    acc_width: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def _weight_codes(lt: LayerTypes, kernel: np.ndarray) -> np.ndarray:
    """Integer codes of the quantized weights on the weight type's grid (the finest LSB)."""
    frac = lt.weight.width - lt.weight.integer
    return np.round(np.ldexp(kernel.astype(np.float64), frac)).astype(np.int64)


def _column_ranges(lt: LayerTypes, x: Ranges, k2: np.ndarray, kshape: tuple) -> tuple[np.ndarray, ...]:
    """(lo, hi, lsb) of the input each kernel entry multiplies, shaped like ``k2`` (out, cols).

    Dense: the input element itself. Convolution: a column is (channel, kernel offset) and meets
    every position of its channel, so it gets the union of that channel's intervals.
    """
    n_out, n_cols = k2.shape
    if lt.kind == "dense":
        flat = x.reshaped((-1,))
        if flat.lo.size != n_cols:   # a layout the features do not know: the hull of everything
            flat = Ranges(np.full(n_cols, flat.lo.min()), np.full(n_cols, flat.hi.max()),
                          np.full(n_cols, flat.lsb.min()))
        return tuple(np.broadcast_to(a[None, :], k2.shape) for a in (flat.lo, flat.hi, flat.lsb))
    channels = x.lo.shape[0] if x.lo.ndim > 1 else 1
    per = (x.lo.reshape(channels, -1).min(axis=1), x.hi.reshape(channels, -1).max(axis=1),
           x.lsb.reshape(channels, -1).min(axis=1))
    taps = int(np.prod(kshape[2:])) if len(kshape) > 2 else 1
    in_per_group = int(kshape[1])
    groups = max(channels // max(in_per_group, 1), 1)
    out_per_group = max(n_out // groups, 1)
    group_of_out = np.minimum(np.arange(n_out) // out_per_group, groups - 1)
    chan = group_of_out[:, None] * in_per_group + (np.arange(n_cols) // taps)[None, :]
    chan = np.minimum(chan, channels - 1)
    return tuple(a[chan] for a in per)


def _mac_features(lt: LayerTypes, x: Ranges | None,
                  used: np.ndarray | None = None) -> tuple[LayerFeatures, Ranges | None]:
    kernel = _quantized(lt.module, "kernel")
    bias = _quantized(lt.module, "bias")
    k2 = kernel.reshape(kernel.shape[0], -1).astype(np.float64)
    n_out, n_in = k2.shape
    positions = max(lt.n_outputs // max(n_out, 1), 1) if lt.kind != "dense" else 1
    empty = LayerFeatures(lt.name, lt.kind, n_in, n_out, positions)
    if lt.weight is None or lt.accumulator is None:
        return empty, None
    if x is None:
        grid = lt.grid("input")
        if grid is None:
            return empty, None
        x = Ranges.of_grid(grid, tuple(lt.input_shape) or (n_in,))
    lo, hi, lsb = _column_ranges(lt, x, k2, tuple(kernel.shape))
    in_bits = interval_bits(lo, hi, lsb)
    live = (k2 != 0) & (lo != hi)                  # a digit on a constant input is folded away
    if used is not None and lt.kind == "dense" and used.size == n_out:
        live &= used[:, None]                      # an output nothing reads is removed
    codes = np.where(live, _weight_codes(lt, k2), 0)
    digits = csd_digit_counts(codes)
    live_col = (lo != hi).any(axis=0)
    col_bits = np.where(live_col, in_bits.max(axis=0), 0.0)
    centred = centred_column_digits(codes)
    span = digit_span(codes)
    da_cost = float((centred * (col_bits + 1) ** DA_SHAPE["width"]).sum()) \
        * n_out ** DA_SHAPE["outputs"] * span ** DA_SHAPE["span"]
    b = np.zeros(n_out) if bias is None else bias.reshape(-1).astype(np.float64)
    up = b + np.maximum(k2 * lo, k2 * hi).sum(axis=1)
    down = b + np.minimum(k2 * lo, k2 * hi).sum(axis=1)
    down = np.where(live.any(axis=1), down, up)    # exact constants stay points
    acc_lsb = np.ldexp(1.0, -int(lt.accumulator.fractional))
    acc_w = interval_bits(down, up, acc_lsb)
    out_shape = (n_out,) if lt.kind == "dense" else tuple(lt.output_shape)
    acc = Ranges(down, up, np.full(n_out, acc_lsb))
    if lt.kind != "dense":
        spatial = (1,) * (len(out_shape) - 1)
        acc = Ranges(*(np.broadcast_to(a.reshape((n_out,) + spatial), out_shape).copy()
                       for a in (acc.lo, acc.hi, acc.lsb)))
    out, cast_in, cast_out = acc, 0.0, 0.0
    grid = lt.grid("output")
    if grid is not None and lt.output is not None and lt.output != lt.accumulator:
        out = cast_ranges(acc, grid, out_shape)
        cast_in, cast_out = float(acc.bits().sum()), float(out.bits().sum())
    return LayerFeatures(
        lt.name, lt.kind, n_in, n_out, positions,
        nonzero=int((k2 != 0).sum()) * positions,
        digits=int(digits.sum()) * positions,
        centred_digits=float(centred.sum()) * positions, span=span,
        da_cost=da_cost * positions,
        acc_bits=float(acc_w.sum()) * positions,
        cast_in_bits=cast_in, cast_out_bits=cast_out,
        out_bits=float(out.bits().sum()),
        in_width=float(col_bits.sum()) / max(int(live_col.sum()), 1),
        weight_width=int(lt.weight.width), acc_width=int(lt.accumulator.width),
    ), out


def _channel_union(x: Ranges, shape: tuple) -> Ranges:
    """Each channel's intervals merged, broadcast over ``shape`` (pooling, unknown reshapes)."""
    c = x.lo.shape[0] if x.lo.ndim > 1 else 1
    per = (x.lo.reshape(c, -1).min(axis=1), x.hi.reshape(c, -1).max(axis=1),
           x.lsb.reshape(c, -1).min(axis=1))
    if len(shape) > 1 and shape[0] == c:
        spatial = (1,) * (len(shape) - 1)
        return Ranges(*(np.broadcast_to(a.reshape((c,) + spatial), shape).copy() for a in per))
    return Ranges(*(np.full(shape, f(a)) for a, f in zip(per, (np.min, np.max, np.min))))


def _passthrough(lt: LayerTypes, x: Ranges | None) -> Ranges | None:
    """Ranges after a layer that moves or pools values without arithmetic of its own."""
    shape = tuple(lt.output_shape) if lt.output_shape else None
    if x is None or shape is None:
        return None
    if lt.kind == "flatten":
        keras = bool(getattr(lt.module, "keras_order", False)) and x.lo.ndim > 1
        order = (lambda a: np.moveaxis(a, 0, -1)) if keras else (lambda a: a)
        return Ranges(order(x.lo).reshape(-1), order(x.hi).reshape(-1), order(x.lsb).reshape(-1))
    if x.lo.shape == shape:
        return x
    return _channel_union(x, shape)


def _activation_features(lt: LayerTypes, x: Ranges | None,
                         used: np.ndarray | None = None) -> tuple[LayerFeatures, Ranges | None]:
    shape = tuple(lt.output_shape) if lt.output_shape else (lt.n_outputs,)
    n = int(np.prod(shape)) if shape else lt.n_outputs
    grid = lt.grid("output")
    if "float_softmax" in lt.flags or grid is None or lt.output is None:
        return LayerFeatures(lt.name, lt.kind, n, n), None   # float: not in the RTL (logits out)
    if x is None:
        in_grid = lt.grid("input")
        if in_grid is None:
            return LayerFeatures(lt.name, lt.kind, n, n), Ranges.of_grid(grid, shape)
        x = Ranges.of_grid(in_grid, shape)
    x = x.reshaped(shape) if x.lo.size == n else _channel_union(x, shape)
    if used is not None and used.size == n:        # unread elements are removed: constants
        dead = ~used.reshape(shape)
        x = Ranges(np.where(dead, x.hi, x.lo), x.hi, x.lsb)
    out = cast_ranges(x, grid, shape)
    in_bits = x.bits()
    live = ~x.constant
    return LayerFeatures(lt.name, lt.kind, n, n, cast_in_bits=float(in_bits.sum()),
                         cast_out_bits=float(out.bits().sum()), out_bits=float(out.bits().sum()),
                         in_width=float(in_bits[live].mean()) if live.any() else 0.0), out


def layer_features(lt: LayerTypes, x: Ranges | None = None,
                   used: np.ndarray | None = None) -> tuple[LayerFeatures, Ranges | None]:
    """The counts of one typed layer (policy ``exact`` types) fed by values in ``x`` (None: the
    full range of its input type), and the intervals of its result for the next layer.
    ``used``: which of its output elements a later layer reads (None: all; see
    :func:`used_outputs`); the others are removed by synthesis and cost nothing."""
    if lt.kind in MAC_KINDS:
        return _mac_features(lt, x, used)
    if lt.kind == "activation":
        return _activation_features(lt, x, used)
    grid = lt.grid("output")
    shape = tuple(lt.output_shape) if lt.output_shape else None
    if lt.kind in ("flatten", "passthrough", "maxpool"):
        return LayerFeatures(lt.name, lt.kind), _passthrough(lt, x)
    if lt.kind == "avgpool2d" and x is not None and grid is not None and shape:
        return LayerFeatures(lt.name, lt.kind), cast_ranges(_channel_union(x, shape), grid, shape)
    # the input layer, and anything else (a batch norm left to the firmware, ...): its type's range
    return LayerFeatures(lt.name, lt.kind), (Ranges.of_grid(grid, shape) if grid is not None and shape
                                             else None)


def _read_inputs(lt: LayerTypes, used: np.ndarray | None) -> np.ndarray | None:
    """Which input elements of ``lt`` matter, given which of its outputs are read (None: all or
    unknown). A dense layer reads input ``j`` when a read output has a non-zero weight on it;
    element-wise and reshaping layers read what is read of them; anything else reads all."""
    n_out = int(np.prod(lt.output_shape)) if lt.output_shape else lt.n_outputs
    if lt.kind == "dense":
        kernel = _quantized(lt.module, "kernel")
        if kernel is None or lt.weight is None:
            return None
        k2 = kernel.reshape(kernel.shape[0], -1)
        rows = used if used is not None and used.size == k2.shape[0] else np.ones(k2.shape[0], bool)
        return (k2[rows] != 0).any(axis=0)
    keras = bool(getattr(lt.module, "keras_order", False))
    if lt.kind in ("activation", "passthrough") or (lt.kind == "flatten" and not keras):
        n_in = int(np.prod(lt.input_shape)) if lt.input_shape else n_out
        return used if used is not None and used.size == n_in == n_out else None
    return None


def used_outputs(types: list[LayerTypes]) -> list[np.ndarray | None]:
    """Per layer, which of its output elements the model's result depends on (None: all).

    Why: synthesis removes logic nothing reads. A dense kernel column of zeros leaves the input it
    multiplies unread, and so the upstream neuron, its ReLU and its adder-graph rows; a last
    layer whose weights all quantize to 0 leaves the whole model a constant (0 LUTs in Yosys).
    Found backwards from the result (the last layer: everything read).
    """
    out: list[np.ndarray | None] = [None] * len(types)
    used: np.ndarray | None = None
    for i in range(len(types) - 1, -1, -1):
        out[i] = used
        used = _read_inputs(types[i], used)
    return out


def model_features(types: list[LayerTypes]) -> list[LayerFeatures]:
    """Features of every layer, in order, with the value intervals carried from layer to layer
    and the unread outputs (:func:`used_outputs`) left out."""
    types = list(types)
    out: list[LayerFeatures] = []
    x: Ranges | None = None
    for lt, used in zip(types, used_outputs(types)):
        feats, x = layer_features(lt, x, used)
        out.append(feats)
    return out
