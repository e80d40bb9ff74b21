"""QTools-equivalent energy model (Horowitz, ISSCC 2014, 45 nm), in pJ per inference.

Per layer QTools reports ``{inputs, outputs, parameters, op_cost}`` and sums only some of them
per layer class (``include_energy``: activations count their outputs, batch norm its parameters,
everything else inputs + parameters + op_cost); the total is ``int()`` of that sum of values
rounded to 2 decimals. This module replays those rules on the types of
:func:`hqrun.quantizers.typeinfer.infer_types` (policy "qtools" reproduces QTools's numbers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hqrun.cost.config import CostConfig, HorowitzConfig
from hqrun.errors import CostModelError
from hqrun.quantizers.typeinfer import MAC_KINDS, LayerTypes, Operand, qtools_multiplier

#: QTools's include_energy: which parts of a layer's energy enter the total, by layer kind.
INCLUDE_ENERGY = {
    "activation": ("outputs",),
    "input_quantizer": ("outputs",),
    "batchnorm": ("parameters",),
    "maxpool": ("op_cost",),
    "default": ("inputs", "parameters", "op_cost"),
}


@dataclass
class LayerEnergy:
    """Energy of one layer in pJ; ``total`` sums the parts QTools includes for its class."""

    inputs: float = 0.0
    outputs: float = 0.0
    parameters: float = 0.0
    op_cost: float = 0.0
    total: float = 0.0

    def as_dict(self) -> dict:
        return {"inputs": self.inputs, "outputs": self.outputs, "parameters": self.parameters,
                "op_cost": self.op_cost, "total": self.total}


class Horowitz:
    """The operation and memory energies of one process (coefficients from HorowitzConfig)."""

    def __init__(self, coeffs: HorowitzConfig, sram_model: str = "qtools") -> None:
        c = coeffs
        self.fpm_add = np.poly1d(c.fpm_add)
        self.fpm_mul = np.poly1d(c.fpm_mul)
        self.fp = {16: (np.poly1d(c.fp16_add), np.poly1d(c.fp16_mul)),
                   32: (np.poly1d(c.fp32_add), np.poly1d(c.fp32_mul))}
        self.sram_rd = np.poly1d(c.sram_rd)
        self.dram_rd = np.poly1d(c.dram_rd)
        self.word = int(c.sram_word_bits)
        self.sram_model = sram_model

    # ---- operations
    def op(self, result: Operand, impl: str, bits: float) -> float:
        """Energy of one operation whose result has type ``result`` (QTools's get_op_type)."""
        if result.is_float:
            if result.bits not in self.fp:
                raise CostModelError(
                    f"no energy figure for a {result.bits}-bit float operation; QTools knows "
                    "fp16 and fp32 only."
                )
            add, mul = self.fp[result.bits]
            if impl in ("mul", "fmul"):
                return max(float(mul(bits)), 0.0)
            if impl == "add":
                return max(float(add(bits)), 0.0)
            raise CostModelError(f"QTools has no float '{impl}' operation energy.")
        if impl in ("mul", "fmul"):
            return max(float(self.fpm_mul(bits)), 0.0)
        return max(float(self.fpm_add(bits)), 0.0)  # add, mux, xor, and, or, shifter

    # ---- memories
    def sram(self, total_bits: float, min_sram_size: float) -> float:
        """QTools: ceil(bits/64) words x the per-bit energy of an array of max(bits, min) bits.
        ``per_word`` charges each 64-bit word 64 x that per-bit energy (physically consistent)."""
        if total_bits <= 0:
            return 0.0
        size = max(total_bits, min_sram_size)
        per_bit = max(float(self.sram_rd(math.log2(size))), 0.0)
        words = math.ceil(total_bits / self.word)
        if self.sram_model == "per_word":
            return words * self.word * per_bit
        return words * per_bit

    def dram(self, total_bits: float) -> float:
        return max(float(self.dram_rd(total_bits)), 0.0)

    def read(self, n: int, bits: int, mode: str, min_sram: int, rd_wr_on_io: bool,
             is_input: bool = False) -> float:
        """QTools's memory_read_energy (DRAM -> SRAM when rd_wr_on_io)."""
        if is_input:
            mode = "dram" if rd_wr_on_io else "sram"
        total = float(n) * float(bits)
        if mode == "dram":
            e = self.dram(total)
            if rd_wr_on_io:
                e += self.sram(total, min_sram)
            return e
        if mode == "sram":
            return self.sram(total, min_sram)
        return 0.0

    def write(self, n: int, bits: int, mode: str, min_sram: int, rd_wr_on_io: bool,
              is_output: bool = False) -> float:
        """QTools's memory_write_energy (SRAM -> DRAM when rd_wr_on_io)."""
        if is_output:
            mode = "dram" if rd_wr_on_io else "sram"
        total = float(n) * float(bits)
        if mode == "dram":
            e = self.sram(total, min_sram) if rd_wr_on_io else 0.0
            return e + self.dram(total)
        if mode == "sram":
            return self.sram(total, min_sram)
        return 0.0


def _kind_key(lt: LayerTypes) -> str:
    if lt.kind == "input":
        return "input_quantizer"
    return lt.kind if lt.kind in INCLUDE_ENERGY else "default"


def priced_layers(types: list[LayerTypes], quirks: bool = True) -> list[LayerTypes]:
    """The layers QTools sees: identity inputs, dropout/flatten/identity are not layers there."""
    out = []
    for lt in types:
        if lt.kind == "passthrough" or (lt.kind == "flatten" and not quirks):
            continue  # QTools prices a Flatten like a layer: it re-reads its input (quirk 11)
        if lt.kind == "input" and "identity_input" in lt.flags:
            continue  # no input quantizer: Keras's InputLayer, removed by QTools
        out.append(lt)
    return out


def layer_energies(types: list[LayerTypes], cfg: CostConfig, reference: bool = False
                   ) -> dict[str, LayerEnergy]:
    """Per-layer energy (pJ) of typed layers, QTools's rules; ``reference`` picks the
    reference half of the ``[reference, trial]`` memory settings."""
    idx = 0 if reference else 1
    hw = Horowitz(cfg.horowitz, cfg.sram_model)
    w_mode = cfg.parameters_on_memory[idx]
    a_mode = cfg.activations_on_memory[idx]
    min_sram = int(cfg.min_sram_size[idx])
    io = bool(cfg.rd_wr_on_io[idx])
    layers = priced_layers(types, cfg.qtools_quirks)
    result: dict[str, LayerEnergy] = {}
    for i, lt in enumerate(layers):
        is_in, is_out = i == 0, i == len(layers) - 1
        ops = lt.operands
        e = LayerEnergy()
        xin = ops.get("input")
        if xin is not None:
            e.inputs = hw.read(lt.n_inputs, xin.bits, a_mode, min_sram, io, is_input=is_in)
        out = ops.get("output")
        if out is not None:
            e.outputs = hw.write(lt.n_outputs, out.bits, a_mode, min_sram, io, is_output=is_out)
        if lt.kind in MAC_KINDS:
            w, b = ops["weight"], ops.get("bias")
            e.parameters = hw.read(lt.n_weights, w.bits, w_mode, min_sram, io)
            if b is not None:
                n_b = lt.n_bias
                e.parameters += hw.read(n_b, b.bits, w_mode, min_sram, io)
            m = lt.multiplier or qtools_multiplier(w, xin)
            acc = ops["accumulator"]
            c1 = m.gate_factor * hw.op(m.output, m.impl, m.gate_bits)
            c2 = hw.op(acc, "add", acc.bits)
            e.op_cost = lt.n_ops * (c1 + c2)
        elif lt.kind == "batchnorm":
            n = lt.n_channels or lt.n_inputs
            for key in ("gamma", "beta", "mean", "variance"):
                op = ops.get(key)
                if op is not None:
                    e.parameters += hw.read(n, op.bits, w_mode, min_sram, io)
        elif lt.kind == "avgpool2d":
            acc = ops.get("accumulator")
            if acc is not None and not (cfg.qtools_quirks and lt.layer_class.startswith("Q")):
                # QTools prices only Keras AveragePooling2D; a QAveragePooling2D gets op count 0
                n_ops = lt.n_ops
                if cfg.qtools_quirks:  # QTools: channels x pool area, not x output positions
                    ch = lt.output_shape[0] if lt.output_shape else 1
                    n_ops = ch * lt.fan_in
                e.op_cost = n_ops * hw.op(acc, "add", acc.bits)
        e = LayerEnergy(*(round(v, 2) for v in (e.inputs, e.outputs, e.parameters, e.op_cost)))
        e.total = sum(getattr(e, k) for k in INCLUDE_ENERGY.get(_kind_key(lt),
                                                                 INCLUDE_ENERGY["default"]))
        result[lt.name] = e
    return result


def total_energy(energies: dict[str, LayerEnergy]) -> int:
    """QTools's extract_energy_sum: int() of the included parts."""
    return int(sum(e.total for e in energies.values()))
