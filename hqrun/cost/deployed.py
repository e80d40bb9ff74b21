"""A model's *deployed cost*: the one set of cost numbers every hqrun file shows for a model.

Why one function: QTools prices a model as if its input were ``quantized_bits(8,0,1)`` (its
source-quantizer default, which AutoQKeras's searches use), while the firmware reads the model
input as the plan's input quantizer or ``firmware.input_type`` (``ap_fixed<16,6>`` by default).
The same trained model priced both ways differs by 5-30 % (the paper's Q6: 37,834 against
40,561 pJ, 156,312 against 202,968 EBOPs), and when ``cost.json``, the study report and the
firmware report each priced it their own way they disagreed. Every writer of a model's cost
(``hqrun train``'s ``cost.json``, the study's post-training-quantized BF, the firmware report,
``hqrun cost run=``) calls :func:`deployed_cost`; only the search keeps QTools's convention
(what AutoQKeras optimises), and says so where it reports a cost.

Everything here is an *estimate* (hqrun.cost's formulas); synthesis or simulation results are
*measured* and are reported next to it, never in its place.
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from hqrun.cost.report import CostReport

__all__ = ["deployed_cost", "deployed_input_type", "firmware_settings", "describe_basis"]


def _plain(cfg: Any) -> dict:
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(cfg):
            return dict(OmegaConf.to_container(cfg, resolve=True) or {})
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return dict(cfg or {})


def firmware_settings(firmware_cfg: Any = None) -> dict[str, Any]:
    """The firmware fields a deployed cost depends on, with hqrun's firmware defaults filled in."""
    from dataclasses import asdict

    from hqrun.firmware_options import ExportFields

    defaults = asdict(ExportFields())
    given = _plain(firmware_cfg)
    keys = ("backend", "part", "clock_period", "reuse_factor", "strategy", "io_type", "input_type")
    return {k: given.get(k) if given.get(k) is not None else defaults[k] for k in keys}


def deployed_input_type(model: nn.Module, firmware_cfg: Any = None) -> tuple[Any, str]:
    """The fixed-point type the firmware feeds the model, and where it comes from.

    The plan's input quantizer when the model has one (the firmware builds that), else
    ``firmware.input_type``.
    """
    from hqrun.quantizers import FixedPointType

    first = dict(model.named_children()).get("input")
    quantizer = getattr(first, "activation", None)
    fixed = getattr(quantizer, "fixed_point_type", None)
    own = fixed() if callable(fixed) else None
    if own is not None:
        return own, "the plan's input quantizer"
    text = firmware_settings(firmware_cfg)["input_type"]
    return FixedPointType.from_hls_name(str(text)), "firmware.input_type"


def deployed_cost(model: nn.Module, cost_cfg: Any = None, firmware_cfg: Any = None) -> CostReport:
    """Price ``model`` as its firmware is built: input type, clock and reuse of ``firmware_cfg``.

    Energy and size follow ``cost.policy`` (QTools's model; ``qtools`` by default, the paper's
    metric); the FPGA figures (EBOPs, LUT, DSP, FF, latency) always come from the exact types the
    firmware builds. The report's ``basis`` says all of that, so every file that shows these
    numbers can say what they are.
    """
    from hqrun.cost.api import estimate
    from hqrun.cost.config import make_config

    fw = firmware_settings(firmware_cfg)
    settings = _plain(cost_cfg)
    fpga = dict(settings.get("fpga") or {})
    fpga["clock_period_ns"] = float(fw["clock_period"])
    settings["fpga"] = fpga
    input_type, source = deployed_input_type(model, firmware_cfg)
    report = estimate(model, input_type=input_type, settings=make_config(settings))
    notes = []
    if int(fw["reuse_factor"]) != 1 or str(fw["strategy"]).lower() != "latency":
        notes.append(f"the FPGA estimate models reuse factor 1 and the Latency strategy; this "
                     f"firmware uses reuse factor {fw['reuse_factor']} and {fw['strategy']}, so "
                     "its LUT/DSP/latency figures are upper/lower bounds only")
    report.basis = {
        "kind": "estimated",
        "what": "deployed",
        "input_type": input_type.hls_name,
        "input_from": source,
        "energy_size_policy": report.policy,
        "fpga_types": "exact (what the firmware builds)",
        "part": fw["part"], "clock_period_ns": float(fw["clock_period"]),
        "reuse_factor": int(fw["reuse_factor"]), "strategy": fw["strategy"],
        "backend": fw["backend"],
    }
    report.flags = list(report.flags) + notes
    return report


def describe_basis(basis: Mapping[str, Any] | None) -> str:
    """One sentence saying how a cost was computed (for tables, reports and the CLI)."""
    from hqrun.cost.api import QTOOLS_BASIS

    if not basis:
        return QTOOLS_BASIS
    if basis.get("what") != "deployed":
        return str(basis.get("description") or QTOOLS_BASIS)
    return (f"estimated by hqrun.cost as deployed: input {basis['input_type']} (from "
            f"{basis['input_from']}), energy and size with the '{basis['energy_size_policy']}' "
            f"accumulator policy, FPGA figures from the exact types at "
            f"{basis['clock_period_ns']:g} ns, reuse factor {basis['reuse_factor']}")
