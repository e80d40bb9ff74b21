"""hqrun.cost against QTools's and AutoQKeras's own numbers (QKeras 0.9.0) for the jet model.

Golden files (made with QKeras itself by tools/qkeras_oracle/gen_qtools.py, see docs/oracle.md):
  tests/golden/qtools_energy.json    per-layer QTools energies and inferred data types, under
                                     AutoQKeras's default energy goal and its notebook's goal
  tests/golden/autoqkeras_bits.json  ForgivingFactorBits reference and trial sizes per layer

Plans: float (the Keras reference model), q6 (the paper's homogeneous 6-bit scheme), hetero (a
heterogeneous plan with ternary and power-of-two kernels) and menu (verbatim AutoQKeras default
menu picks, incl. alpha-less kernels that QDense turns into alpha="auto_po2", binary and
stochastic_ternary kernels, a quantized_relu_po2 activation).

Acceptance (issue 4): per-layer energies within 1% of QTools's; sizes equal.  Everything that
touches hqrun's API goes through the adapter functions below, so an API change is a one-place
edit.
"""

from __future__ import annotations

import functools
import json
import pathlib
from typing import Any

import pytest

import hqrun.cost as cost
import hqrun.models as models

GOLDEN = pathlib.Path(__file__).parent / "golden"
REL = 0.01    # the acceptance: within 1% of QTools
ABS = 0.011   # QTools rounds each per-layer part to 0.01 pJ
PARTS = ("inputs", "outputs", "parameters", "op_cost")


# ----------------------------------------------------------------------------- adapter
def build_hqrun_model(plan_name: str, layers: dict[str, dict[str, str]] | None) -> Any:
    """The hqrun jet model with a QKeras-style per-layer plan (None = float model)."""
    plan = {"name": plan_name, "layers": layers or {}}
    return models.build_model({"name": "jet_dnn"}, plan, seed=0)


def run_cost(model: Any, settings: dict[str, Any]) -> dict[str, Any]:
    """hqrun's cost report, normalised to the golden files' vocabulary.

    ``settings`` are AutoQKeras ForgivingFactorPower goal params (as stored in the golden file).
    """
    rep = cost.estimate(model, settings=dict(settings))
    out: dict[str, Any] = {
        "energy": rep.totals["energy"],
        "reference_energy": rep.totals["reference_energy"],
        "size_bits": rep.totals["size_bits"],
        "reference_size_bits": rep.totals["reference_size_bits"],
        "layers": {},
    }
    for row in rep.rows:
        out["layers"][row["name"]] = {
            "energy": dict(row["energy"]),
            "size": dict(row["size"]),
            "bits": {k: row.get(f"{k}_bits") for k in
                     ("input", "weight", "bias", "accumulator", "output")},
        }
    return out
# ------------------------------------------------------------------------- end adapter


@functools.lru_cache(maxsize=None)
def _golden(name: str) -> dict:
    return json.loads((GOLDEN / name).read_text())


@functools.lru_cache(maxsize=None)
def _report(plan: str, setting: str) -> dict:
    g = _golden("qtools_energy.json")
    layers = g["plans"][plan]
    model = build_hqrun_model(plan, layers)
    return run_cost(model, g["settings"][setting]["params"])


PLANS = ["float", "q6", "hetero", "menu"]
SETTINGS = ["autoqkeras_default", "notebook"]
CASES = [pytest.param(p, s, id=f"{s}-{p}") for s in SETTINGS for p in PLANS]


def _close(got: float, want: float) -> bool:
    return abs(got - want) <= max(REL * abs(want), ABS)


@pytest.mark.parametrize(("plan", "setting"), CASES)
def test_per_layer_energy_matches_qtools(plan, setting):
    want = _golden("qtools_energy.json")["settings"][setting]["trials"][plan]
    got = _report(plan, setting)["layers"]
    bad = []
    for lname, item in want["energy_dict"].items():
        if lname == "total_cost":
            continue
        assert lname in got, f"hqrun's report has no row {lname!r} (rows: {sorted(got)})"
        for part in PARTS:
            w, h = item["energy"][part], got[lname]["energy"][part]
            if not _close(h, w):
                bad.append(f"{lname}.{part}: QTools {w} hqrun {h}")
        w_tot = want["energy_profile"][lname]["total"]
        if not _close(got[lname]["energy"]["total"], w_tot):
            bad.append(f"{lname}.total: QTools {w_tot} hqrun {got[lname]['energy']['total']}")
    assert not bad, f"{setting}/{plan}: energies off by more than 1%:\n" + "\n".join(bad)


@pytest.mark.parametrize(("plan", "setting"), CASES)
def test_total_and_reference_energy_match_autoqkeras(plan, setting):
    """The trial energy AutoQKeras scores and the reference it divides by."""
    block = _golden("qtools_energy.json")["settings"][setting]
    want_trial = block["trials"][plan]["energy_sum"]
    want_ref = block["reference"]["energy_sum"]
    got = _report(plan, setting)
    assert _close(got["energy"], want_trial), (
        f"{setting}/{plan}: trial energy {got['energy']} vs QTools {want_trial}")
    # QTools's reference run replaces every quantizer, so it is the same for every plan.
    assert block["trials"][plan]["reference_on_this_model"]["energy_sum"] == want_ref
    assert _close(got["reference_energy"], want_ref), (
        f"{setting}/{plan}: reference energy {got['reference_energy']} vs QTools {want_ref}")


@pytest.mark.parametrize(("plan", "setting"), CASES)
def test_inferred_widths_match_qtools(plan, setting):
    """Operand, accumulator and output widths of QTools's width-only ('qtools') policy."""
    types = _golden("qtools_energy.json")["settings"][setting]["trials"][plan]["layer_types"]
    got = _report(plan, setting)["layers"]
    bad = []
    for lname, t in types.items():
        if lname not in got:
            bad.append(f"{lname}: missing")
            continue
        want = {
            "input": t["input_quantizers"][0] if t["input_quantizers"] else None,
            "weight": t["weight_quantizer"],
            "bias": t["bias_quantizer"],
            "accumulator": (t.get("accumulator") or {}).get("output"),
            "output": t["output_quantizer"],
        }
        for slot, q in want.items():
            if q is None or q.get("is_floating_point"):
                continue  # float operands: QTools prices them as fp16/fp32, no width to compare
            h = got[lname]["bits"].get(slot)
            if h != q["bits"]:
                bad.append(f"{lname}.{slot}: QTools {q['name']} {q['bits']} bits, hqrun {h}")
    assert not bad, f"{setting}/{plan}: widths differ from QTools's:\n" + "\n".join(bad)


@pytest.mark.parametrize("plan", PLANS)
def test_bits_goal_matches_forgiving_factor_bits(plan):
    """AutoQKeras's "bits" goal: per-layer parameter/activation bits, trial and reference."""
    g = _golden("autoqkeras_bits.json")
    want = g["trials"][plan]
    got = _report(plan, "autoqkeras_default")
    assert got["size_bits"] == want["size"], (
        f"{plan}: size {got['size_bits']} bits vs ForgivingFactorBits {want['size']}")
    assert got["reference_size_bits"] == g["reference"]["size"], (
        f"{plan}: reference size {got['reference_size_bits']} vs {g['reference']['size']}")
    bad = []
    for lname, row in want["per_layer"].items():
        h = got["layers"].get(lname, {}).get("size")
        if h is None:
            bad.append(f"{lname}: missing")
            continue
        for k in ("parameters", "activations", "total"):
            if int(h[k]) != int(row[k]):
                bad.append(f"{lname}.{k}: AutoQKeras {row[k]} hqrun {h[k]}")
    assert not bad, f"{plan}: per-layer bits differ:\n" + "\n".join(bad)


def test_golden_files_hold_the_published_jet_energies():
    """Guard on the oracle itself: issue 7 quotes float 191,864 pJ and Q6 37,834 pJ (AutoQKeras
    default energy settings); a regenerated golden file must still say so."""
    t = _golden("qtools_energy.json")["settings"]["autoqkeras_default"]["trials"]
    assert t["float"]["energy_sum"] == 191864
    assert t["q6"]["energy_sum"] == 37834
