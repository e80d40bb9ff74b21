"""Calibrated LUT and FF estimate of the RTL (distributed-arithmetic) build, fitted to Yosys.

Why a model of its own: the RTL backend (``hqrun firmware firmware.backend=rtl``, alkaid) builds
every constant multiplication as shared adders over the weights' canonical-signed-digit (CSD)
digits, with no DSPs; what it costs in LUTs is set by how many digits the weights have and how
wide the numbers being added are, not by hls4ml's multipliers. This module prices a model's
exact types (:func:`hqrun.quantizers.typeinfer.infer_types`, policy ``exact``) as a sum over
layers of a few counts (:mod:`hqrun.cost.lut_features`) times coefficients that were fitted,
by ``bench/calibrate_lut.py --fit``, to Yosys ``synth_xilinx`` counts of real RTL builds:

    LUT = Σ_layers Σ_terms  c_term · feature_term(layer)          (c_term >= 0)
    FF  = [L >= 1] · c_out · (result bits of the last layer)  +  max(L - 1, 0) · c_cut · W

with ``L`` the pipeline's register stages (``cost.rtl.latency_cycles``, as
``firmware.rtl.latency_cycles``; 0 = combinational, no FF) and ``W`` the mean adder-graph size
of the MAC layers (what an internal pipeline cut runs through, in scale). The main term,
``da_cost``, is the layer's adder graph measured the way alkaid's own cost model grows (centred
CSD digits × input widths, :mod:`hqrun.cost.lut_features`); Yosys's LUTs are a multiple of it.
Coefficients are non-negative and the features grow with every activation and input width, so
wider types never cost fewer LUTs; like the adder graph itself, the estimate is not strictly
monotone in the non-zero weights (a column of equal weights with one zero is dearer than the
full column, because the common value no longer covers it).

The coefficients live in ``lut_calibration.json`` next to this file (package data) with their
provenance: date, Yosys and alkaid versions, number of models, and the held-out error. A
different calibration file can be given (``cost.rtl.calibration``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from hqrun.cost.lut_features import DA_SHAPE, LayerFeatures, model_features
from hqrun.errors import CostModelError
from hqrun.quantizers.typeinfer import MAC_KINDS, LayerTypes

__all__ = ["CALIBRATION_FILE", "LUT_TERMS", "Calibration", "load_calibration", "term_totals",
           "ff_terms", "RtlCostEstimate", "rtl_estimate", "estimate_from_features"]

CALIBRATION_FILE = Path(__file__).with_name("lut_calibration.json")

#: The per-layer counts the LUT estimate weighs (fields of :class:`LayerFeatures`).
LUT_TERMS = ("da_cost", "cast_in_bits")
#: The model-level counts of the FF estimate (see :func:`ff_terms`).
FF_TERMS = ("output_register_bits", "internal_cuts")


@dataclass(frozen=True)
class Calibration:
    """Coefficients of the LUT and FF estimate and where they come from."""

    id: str
    lut: Mapping[str, float]
    ff: Mapping[str, float]
    provenance: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "the calibration") -> "Calibration":
        """Read a calibration (plain JSON data: nothing in it is executed)."""
        try:
            lut = {str(k): float(v) for k, v in dict(data["lut"]).items()}
            ff = {str(k): float(v) for k, v in dict(data["ff"]).items()}
            cid = str(data["id"])
        except (KeyError, TypeError, ValueError) as err:
            raise CostModelError(
                f"{where} is not an hqrun LUT calibration (missing or bad field: {err}); refit it "
                "with `python bench/calibrate_lut.py --fit` or leave cost.rtl.calibration unset "
                "for the one shipped with hqrun.") from None
        shape = data.get("shape")
        if shape is not None and {k: float(v) for k, v in dict(shape).items()} != DA_SHAPE:
            raise CostModelError(
                f"{where} was fitted with the adder-graph shape {dict(shape)}, but this hqrun "
                f"computes its features with {DA_SHAPE} (hqrun.cost.lut_features.DA_SHAPE); refit "
                "it with `python bench/calibrate_lut.py --refeature` then `--fit`.")
        unknown = sorted((set(lut) - set(LUT_TERMS)) | (set(ff) - set(FF_TERMS)))
        negative = sorted(k for k, v in {**lut, **ff}.items() if v < 0)
        if unknown or negative:
            raise CostModelError(
                f"{where} has {'unknown terms ' + ', '.join(unknown) if unknown else ''}"
                f"{' and ' if unknown and negative else ''}"
                f"{'negative coefficients ' + ', '.join(negative) if negative else ''}; this hqrun "
                f"prices LUT terms {', '.join(LUT_TERMS)} and FF terms {', '.join(FF_TERMS)} with "
                "non-negative coefficients. Refit it with `python bench/calibrate_lut.py --fit`.")
        return cls(cid, lut, ff, dict(data.get("provenance") or {}))


@lru_cache(maxsize=8)
def _load(path: str) -> Calibration:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise CostModelError(
            f"LUT calibration file {p} does not exist; set cost.rtl.calibration to a file written "
            "by `python bench/calibrate_lut.py --fit`, or leave it null for hqrun's own.") from None
    except (OSError, json.JSONDecodeError) as err:
        raise CostModelError(f"LUT calibration file {p} cannot be read as JSON ({err}); refit it "
                             "with `python bench/calibrate_lut.py --fit`.") from None
    return Calibration.from_dict(data, where=f"LUT calibration file {p}")


def load_calibration(path: str | Path | None = None) -> Calibration:
    """The calibration in ``path`` (default: the one shipped with hqrun), read once and cached."""
    return _load(str(Path(path) if path else CALIBRATION_FILE))


def term_totals(features: Iterable[LayerFeatures | Mapping[str, Any]]) -> dict[str, float]:
    """Σ over layers of every LUT term: the row the fit and the estimate both use."""
    out = dict.fromkeys(LUT_TERMS, 0.0)
    for f in features:
        get = f.get if isinstance(f, Mapping) else (lambda k, f=f: getattr(f, k))
        for term in LUT_TERMS:
            out[term] += float(get(term) or 0.0)
    return out


def ff_terms(features: Sequence[LayerFeatures | Mapping[str, Any]], latency_cycles: int) -> dict[str, float]:
    """The FF estimate's counts for a pipeline of ``latency_cycles`` register stages.

    ``output_register_bits``: the result bits of the last layer built (the design's output
    register, present whenever ``L >= 1``); ``internal_cuts``: ``L - 1`` internal cuts times the mean
    adder-graph size of the MAC layers (``da_cost``): alkaid places the cuts by delay, inside
    the adder graphs, where the partial sums live, and a larger graph has more of them.
    """
    rows = [f if isinstance(f, Mapping) else f.as_dict() for f in features]
    built = [r for r in rows if r["kind"] in MAC_KINDS or float(r.get("cast_out_bits") or 0) > 0]
    if latency_cycles <= 0 or not built:
        return dict.fromkeys(FF_TERMS, 0.0)
    mac = [r for r in rows if r["kind"] in MAC_KINDS]
    width = sum(float(r["da_cost"]) for r in mac) / max(len(mac), 1)
    return {"output_register_bits": float(built[-1]["out_bits"]),
            "internal_cuts": float(latency_cycles - 1) * width}


@dataclass
class RtlCostEstimate:
    """The calibrated estimate of one model: totals and the LUTs of each layer."""

    lut: float
    ff: float
    latency_cycles: int
    calibration_id: str
    layer_lut: dict[str, float] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return f"RTL distributed arithmetic, calibrated against Yosys ({self.calibration_id})"


def estimate_from_features(features: Sequence[LayerFeatures | Mapping[str, Any]], cal: Calibration,
                           latency_cycles: int = 0) -> RtlCostEstimate:
    """LUT and FF of a model from its layer features (what the fit reads from the table)."""
    rows = [f if isinstance(f, Mapping) else f.as_dict() for f in features]
    per_layer = {r["name"]: sum(cal.lut.get(t, 0.0) * float(r.get(t) or 0.0) for t in LUT_TERMS)
                 for r in rows}
    ff = sum(cal.ff.get(t, 0.0) * v for t, v in ff_terms(rows, latency_cycles).items())
    return RtlCostEstimate(float(sum(per_layer.values())), float(ff), int(latency_cycles), cal.id,
                           per_layer)


def rtl_estimate(types: Sequence[LayerTypes], cal: Calibration | None = None,
                 latency_cycles: int = 0) -> RtlCostEstimate:
    """The calibrated LUT/FF estimate of a model's exact types (``infer_types(..., "exact")``)."""
    return estimate_from_features(model_features(list(types)), cal or load_calibration(),
                                  latency_cycles)
