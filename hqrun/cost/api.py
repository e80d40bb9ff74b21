"""``hqrun.cost.estimate``: energy, size and FPGA estimate of a built model, in one report."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Sequence

from torch import nn

from hqrun.cost.config import CostConfig, make_config
from hqrun.cost.energy import layer_energies, priced_layers, total_energy
from hqrun.cost.fpga import model_fpga
from hqrun.cost.lut_model import load_calibration, rtl_estimate
from hqrun.cost.report import CostReport
from hqrun.cost.size import layer_sizes, total_size
from hqrun.quantizers.typeinfer import (
    LayerTypes,
    QToolsOptions,
    infer_types,
    named_operand,
)

DEFAULT_SOURCE = "quantized_bits(8,0,alpha=1)"
#: What :func:`estimate` assumes without an input type (the search's and QTools's way).
QTOOLS_BASIS = ("QTools's convention: model input quantized_bits(8,0,1) unless the plan has an "
                "input quantizer (what AutoQKeras's searches optimise); not the firmware's input")


def qtools_options(cfg: CostConfig, reference: bool = False) -> QToolsOptions:
    """How QTools treats float layers and inputs under these settings (AutoQKeras passes
    reference_internal/reference_accumulator as keras_quantizer/keras_accumulator)."""
    return QToolsOptions(
        keras_quantizer=cfg.reference_internal,
        keras_accumulator=cfg.reference_accumulator,
        source=cfg.source_quantizers or DEFAULT_SOURCE,
        interm="int8",
        for_reference=reference,
        trained=cfg.trained_model,
    )


def _count(value: float) -> int | float:
    """A total of EBOPs: an int when whole (always, except convolutions with padding)."""
    return int(value) if float(value).is_integer() else float(value)


def _has_input_quantizer(types: list[LayerTypes]) -> bool:
    return bool(types) and types[0].kind == "input" and "identity_input" not in types[0].flags


def estimate(
    model: nn.Module,
    input_type: Any = None,
    settings: Any = None,
    *,
    input_shape: Sequence[int] | None = None,
    policy: str | None = None,
) -> CostReport:
    """Price ``model``: per-layer energy (QTools's model), size (AutoQKeras bits) and FPGA.

    ``input_type``: FixedPointType of the model input when the model has no input quantizer
    (default: ``settings.source_quantizers``, else QTools's quantized_bits(8,0,1)).
    ``settings``: a :class:`CostConfig`, a dict of its keys (AutoQKeras energy-goal params are
    accepted), a preset name ("autoqkeras", "notebook") or None for AutoQKeras's defaults.
    ``policy``: accumulator policy for energy and size types ("qtools" default, or "exact").
    """
    cfg = make_config(settings)
    pol = policy or cfg.policy
    if isinstance(input_type, str):
        input_type = named_operand(input_type).fixed
    shape = input_shape if input_shape is not None else cfg.input_shape
    opts = qtools_options(cfg)
    types = infer_types(model, input_type, "qtools", input_shape=shape, qtools=opts)
    ref_types = infer_types(model, None, "qtools", input_shape=shape,
                            qtools=qtools_options(cfg, reference=True))
    exact_in = input_type
    flags: list[str] = []
    if exact_in is None and not _has_input_quantizer(types):
        exact_in = named_operand(cfg.source_quantizers or DEFAULT_SOURCE).fixed
        if exact_in is None:
            exact_in = named_operand(cfg.fpga.assumed_input).fixed
        flags.append(f"exact types assume the model input is {exact_in.hls_name}")
    exact = infer_types(model, exact_in, "exact", input_shape=shape)
    priced = types if pol == "qtools" else exact
    energies = layer_energies(priced, cfg)
    ref_energies = layer_energies(ref_types, cfg, reference=True)
    sizes = layer_sizes(priced, cfg.size)
    ref_sizes = layer_sizes(ref_types, cfg.size, reference=True)
    fpga = model_fpga(exact, cfg.fpga)
    rtl = rtl_estimate(exact, load_calibration(cfg.rtl.calibration), cfg.rtl.latency_cycles)
    priced_names = {lt.name for lt in priced_layers(priced, cfg.qtools_quirks)}
    rows = []
    for lt, ex in zip(priced, exact):
        if lt.kind == "passthrough":
            continue
        e = energies.get(lt.name)
        row = {
            "name": lt.name, "kind": lt.kind, "class": lt.layer_class,
            "n_inputs": lt.n_inputs, "n_outputs": lt.n_outputs, "n_weights": lt.n_weights,
            "n_bias": lt.n_bias, "n_ops": lt.n_ops,
            "types": lt.as_dict(), "exact_types": ex.as_dict(),
            "energy": e.as_dict() if e is not None else _zero_energy(),
            "reference_energy": (ref_energies[lt.name].as_dict() if lt.name in ref_energies
                                 else _zero_energy()),
            "size": sizes[lt.name].as_dict(), "reference_size": ref_sizes[lt.name].as_dict(),
            "fpga": fpga[lt.name].as_dict(),
            "rtl": {"lut": int(round(rtl.layer_lut.get(lt.name, 0.0)))},
            "flags": sorted(set(lt.flags) | set(ex.flags)),
            "priced": lt.name in priced_names,
        }
        for slot in ("input", "weight", "bias", "accumulator", "output"):
            op = lt.operands.get(slot)
            row[f"{slot}_bits"] = None if op is None else op.bits
        rows.append(row)
    t_fpga = list(fpga.values())
    totals = {
        "energy": total_energy(energies),
        "reference_energy": total_energy(ref_energies),
        "size_bits": total_size(sizes),
        "reference_size_bits": total_size(ref_sizes),
        "parameter_bits": int(sum(s.parameters for s in sizes.values())),
        "activation_bits": int(sum(s.activations for s in sizes.values())),
        "ebops": _count(sum(f.ebops for f in t_fpga)),
        # the RTL (distributed-arithmetic) build, calibrated against Yosys: hqrun.cost.lut_model
        "lut": int(round(rtl.lut)),
        "ff": int(round(rtl.ff)),
        "rtl_latency_cycles": rtl.latency_cycles,
        "lut_source": rtl.source,
        "lut_calibration": rtl.calibration_id,
        # the hls4ml build (io_parallel, latency strategy, reuse 1): first-order rules, fpga.py
        "hls_lut": int(sum(f.lut for f in t_fpga)),
        "hls_dsp": int(sum(f.dsp for f in t_fpga)),
        "hls_ff": int(sum(f.ff for f in t_fpga)),
        "hls_latency_cycles": int(sum(f.latency_cycles for f in t_fpga)),
        "clock_period_ns": cfg.fpga.clock_period_ns,
    }
    totals["hls_latency_ns"] = totals["hls_latency_cycles"] * cfg.fpga.clock_period_ns
    if input_type is None:
        basis = {"kind": "estimated", "what": "qtools",
                 "input_type": cfg.source_quantizers or DEFAULT_SOURCE,
                 "description": QTOOLS_BASIS if not cfg.source_quantizers else
                 f"model input {cfg.source_quantizers} (cost.source_quantizers) unless the plan "
                 "has an input quantizer"}
    else:
        basis = {"kind": "estimated", "what": "given input", "input_type": input_type.hls_name,
                 "description": f"model input {input_type.hls_name} unless the plan has an "
                                "input quantizer"}
    return CostReport(policy=pol, rows=rows, totals=totals, settings=asdict(cfg), flags=flags,
                      basis=basis)


def _zero_energy() -> dict:
    return {"inputs": 0.0, "outputs": 0.0, "parameters": 0.0, "op_cost": 0.0, "total": 0.0}


def energy(model: nn.Module, settings: Any = None, **kw: Any) -> int:
    """Shortcut: the trial energy in pJ (QTools's integer total)."""
    return estimate(model, settings=settings, **kw).totals["energy"]


def size_bits(model: nn.Module, settings: Any = None, **kw: Any) -> int:
    """Shortcut: the AutoQKeras bit count of the model."""
    return estimate(model, settings=settings, **kw).totals["size_bits"]


__all__ = ["estimate", "energy", "size_bits", "qtools_options"]

