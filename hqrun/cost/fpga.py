"""FPGA resource and latency estimate for an hls4ml-style implementation.

Target: io_parallel, latency strategy, reuse factor 1 — every multiplication of a dense layer
is its own piece of hardware with the weight as a constant. Rules (all per layer, from the
"exact" types of :func:`hqrun.quantizers.typeinfer.infer_types`):

* **EBOPs** (HGQ's effective bit operations): the one definition,
  :func:`hqrun.quantizers.ebops.mac_ebops` — sum over non-zero weights of ``b_in * b_w`` plus the
  widths of the non-zero biases — on per-element width maps: each weight's and input element's
  own width where the formats vary (learned bit widths), the layer's exact type's width where
  they do not. So a trained learned-bits model costs exactly the EBOPs its trainer reported.
* **Multipliers.** A weight of 0 costs nothing; a weight ``+-2^k`` is a shift (wiring, no
  multiplier). Any other weight is a constant-coefficient multiplier: on a **DSP** when both the
  input width and the weight width are ``>= dsp_min_width`` (then ``ceil(b_in/27) *
  ceil(b_w/18)`` DSP48E2 slices), otherwise in **LUTs** as shift-and-add over the weight's
  canonical-signed-digit form: ``(nonzero CSD digits - 1) * (b_in + b_w)`` LUTs.
* **Adder tree.** An output summing ``n`` non-zero terms (products plus a non-zero bias) needs
  ``n - 1`` adders of the accumulator width, one LUT per bit (carry chain).
* **Flip-flops.** Registers after the multipliers (every product's width), after every
  ``floor(clock_period_ns / adder_delay_ns)`` levels of the adder tree (partial sums at the
  accumulator width) and at the layer output.
* **Latency** (cycles): multiplier stage (``mult_cycles_lut`` / ``mult_cycles_dsp``, 0 when all
  weights are shifts) + ``ceil(tree depth / levels per cycle)`` + 1 output register;
  activations ``activation_cycles``, softmax ``softmax_cycles``. Convolutions are costed as one
  kernel instance reused over the output positions (streaming), latency x positions.

These are first-order estimates, not synthesis: see docs/cost.md for how far they can be off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from hqrun.cost.config import FpgaConfig
from hqrun.errors import CostModelError
from hqrun.quantizers.ebops import FLOAT_BITS, mac_ebops
from hqrun.quantizers.typeinfer import MAC_KINDS, LayerTypes, _quantized


@dataclass
class LayerFpga:
    ebops: int | float = 0  # an int except for convolutions whose count is not whole
    lut: int = 0
    dsp: int = 0
    ff: int = 0
    latency_cycles: int = 0
    n_mult: int = 0  # real multipliers (not zero, not power of two)

    def as_dict(self) -> dict:
        return {"ebops": self.ebops, "lut": self.lut, "dsp": self.dsp, "ff": self.ff,
                "latency_cycles": self.latency_cycles, "n_mult": self.n_mult}


def csd_digits(code: int) -> int:
    """Number of non-zero digits of the canonical signed-digit form of an integer."""
    n, digits = abs(int(code)), 0
    while n:
        if n & 1:
            digits += 1
            n = n - 1 if (n & 3) == 1 else n + 1
        n >>= 1
    return digits


def _width_map(lt: LayerTypes, slot: str, shape: tuple[int, ...],
               values: np.ndarray | None = None) -> torch.Tensor:
    """Per-element widths of one slot over ``shape`` (float64), 0 where ``values`` is 0.

    The slot's own grid where its elements differ (learned widths), else its exact type; a slot
    with no fixed-point type (float) counts its operand's bits (32 for float32)."""
    grid = lt.grid(slot)
    if grid is not None:
        bits = np.broadcast_to(grid.bits(), shape) if grid.shape != tuple(shape) else grid.bits()
    else:
        op = lt.operands.get(slot)
        bits = np.full(shape, op.bits if op is not None else FLOAT_BITS)
    out = torch.as_tensor(np.asarray(bits, dtype=np.float64).copy())
    if values is not None:
        out = out * torch.as_tensor(np.asarray(values) != 0)
    return out


def _mac_of(lt: LayerTypes) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The layer's own linear map ``mac(x, kernel)`` (hqrun's layers have one); a dense layer
    without it is ``F.linear``. Anything else cannot be counted without guessing its geometry."""
    mac = getattr(lt.module, "mac", None)
    if callable(mac):
        return mac
    if lt.kind == "dense":
        return torch.nn.functional.linear
    raise CostModelError(
        f"layer {lt.name!r} ({lt.layer_class}) is a {lt.kind} layer without a mac(x, kernel) "
        "method, so its EBOPs cannot be counted (stride and padding unknown). Give the class a "
        "mac method (its convolution without bias), as hqrun's QConv layers have."
    )


def layer_ebops(lt: LayerTypes, kernel: np.ndarray, bias: np.ndarray | None) -> int | float:
    """EBOPs of a typed MAC layer by the one definition (:func:`~hqrun.quantizers.ebops.mac_ebops`,
    the function the trainer's cost penalty reports), on the widths the firmware builds."""
    in_bits = _width_map(lt, "input", tuple(lt.input_shape))
    k_bits = _width_map(lt, "weight", tuple(kernel.shape), kernel)
    b_bits = None if bias is None else _width_map(lt, "bias", tuple(bias.shape), bias)
    with torch.no_grad():
        value = float(mac_ebops(_mac_of(lt), in_bits, k_bits, b_bits))
    return int(value) if value.is_integer() else value


def _weight_codes(kernel: np.ndarray, frac: int) -> np.ndarray:
    return np.round(kernel * (2.0**frac)).astype(np.int64)


def _levels(cfg: FpgaConfig) -> int:
    """Adder-tree levels that fit in one clock period (at least one)."""
    return max(1, int(cfg.clock_period_ns // cfg.adder_delay_ns))


def layer_fpga(lt: LayerTypes, cfg: FpgaConfig) -> LayerFpga:
    """Resources and latency of one typed layer (exact policy types expected)."""
    r = LayerFpga()
    if lt.kind in ("activation", "input"):
        if lt.kind == "activation":
            soft = "float_softmax" in lt.flags
            r.latency_cycles = cfg.softmax_cycles if soft else cfg.activation_cycles
            out = lt.operands.get("output")
            r.ff = lt.n_outputs * (out.bits if out is not None else 32)
            if soft:
                r.lut = lt.n_outputs * 64  # table lookups + normalisation, a rough allowance
        return r
    if lt.kind == "batchnorm":
        r.latency_cycles = cfg.mult_cycles_lut + 1
        return r
    if lt.kind == "avgpool2d":
        acc = lt.operands.get("accumulator")
        width = acc.bits if acc is not None else 32
        ch = lt.output_shape[0] if lt.output_shape else 1
        r.lut = ch * max(lt.fan_in - 1, 0) * width
        depth = math.ceil(math.log2(max(lt.fan_in, 1)))
        r.latency_cycles = math.ceil(depth / _levels(cfg)) + 1
        return r
    if lt.kind not in MAC_KINDS:
        return r
    kernel = _quantized(lt.module, "kernel")
    bias = _quantized(lt.module, "bias")
    w_t, x_t = lt.weight, lt.input
    b_in = x_t.width if x_t is not None else lt.operands["input"].bits
    b_w = w_t.width if w_t is not None else lt.operands["weight"].bits
    acc_w = lt.accumulator.width if lt.accumulator is not None else lt.operands["accumulator"].bits
    prod_w = lt.product.width if lt.product is not None else b_in + b_w
    k2 = kernel.reshape(kernel.shape[0], -1)
    nonzero = k2 != 0
    r.ebops = layer_ebops(lt, kernel, bias)
    if w_t is not None:
        codes = _weight_codes(k2, w_t.width - w_t.integer)
        digits = np.vectorize(csd_digits, otypes=[np.int64])(codes) if codes.size else codes
    else:
        digits = np.where(nonzero, 3, 0)  # float weights: assume a general multiplier
    real = digits > 1
    r.n_mult = int(real.sum())
    on_dsp = b_in >= cfg.dsp_min_width and b_w >= cfg.dsp_min_width
    if on_dsp:
        r.dsp = r.n_mult * math.ceil(b_in / 27) * math.ceil(b_w / 18)
    else:
        r.lut += int(((digits[real] - 1) * (b_in + b_w)).sum())
    terms = nonzero.sum(axis=1) + (0 if bias is None else (bias.reshape(-1) != 0).astype(int))
    r.lut += int(np.maximum(terms - 1, 0).sum()) * acc_w
    max_terms = int(terms.max()) if terms.size else 0
    depth = math.ceil(math.log2(max_terms)) if max_terms > 1 else 0
    stages = math.ceil(depth / _levels(cfg)) if depth else 0
    # registers: products, partial sums at each pipeline cut, outputs
    r.ff = int(nonzero.sum()) * prod_w if r.n_mult else 0
    for s in range(1, stages):
        level = s * _levels(cfg)
        r.ff += int(np.ceil(terms / 2**level).sum()) * acc_w
    n_out_ch = k2.shape[0]
    r.ff += n_out_ch * acc_w
    mult_cycles = 0 if r.n_mult == 0 else (cfg.mult_cycles_dsp if on_dsp else cfg.mult_cycles_lut)
    r.latency_cycles = mult_cycles + stages + 1
    if lt.kind != "dense":
        positions = max(lt.n_outputs // max(n_out_ch, 1), 1)
        r.latency_cycles = r.latency_cycles + positions - 1  # one new output position per cycle
    return r


def model_fpga(types: list[LayerTypes], cfg: FpgaConfig) -> dict[str, LayerFpga]:
    return {lt.name: layer_fpga(lt, cfg) for lt in types}
