"""The cost report: per-layer rows (types, bits, energy, EBOPs, LUT/DSP) and totals."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class CostReport:
    """What :func:`hqrun.cost.estimate` returns.

    ``rows``: one dict per layer (name, kind, class, types, energy parts, size, FPGA figures,
    flags). ``totals``: energy (int pJ, QTools's sum), reference_energy, size_bits,
    reference_size_bits, ebops, lut, dsp, ff, latency_cycles, latency_ns. ``policy`` is the
    accumulator policy of the energy/size types; the FPGA columns always use "exact" types.
    ``basis`` says how the model input was typed and whether this is the model's deployed cost
    (:func:`hqrun.cost.deployed.deployed_cost`) or QTools's convention; every number here is
    an estimate, never a synthesis result.
    """

    policy: str
    rows: list[dict] = field(default_factory=list)
    totals: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    basis: dict[str, Any] = field(default_factory=dict)

    def row(self, name: str) -> dict:
        for r in self.rows:
            if r["name"] == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {"policy": self.policy, "basis": self.basis, "totals": self.totals,
                "layers": self.rows, "flags": self.flags, "settings": self.settings}

    def to_json(self, path: str | Path | None = None, indent: int = 2) -> str:
        text = json.dumps(self.to_dict(), indent=indent, default=_default)
        if path is not None:
            from hqrun import atomic

            atomic.write_text(path, text + "\n")
        return text

    def table(self) -> str:
        """A fixed-width per-layer table followed by the totals."""
        cols = [("layer", 10), ("kind", 10), ("in", 6), ("w", 6), ("acc", 6), ("out", 6),
                ("E[pJ]", 10), ("bits", 8), ("EBOPs", 8), ("LUT", 7), ("DSP", 5), ("cyc", 4)]
        head = " ".join(f"{n:>{w}}" if i > 1 else f"{n:<{w}}" for i, (n, w) in enumerate(cols))
        lines = [head, "-" * len(head)]
        for r in self.rows:
            vals = [r["name"], r["kind"], _w(r.get("input_bits")), _w(r.get("weight_bits")),
                    _w(r.get("accumulator_bits")), _w(r.get("output_bits")),
                    f"{r['energy']['total']:.2f}", str(r["size"]["total"]),
                    str(r["fpga"]["ebops"]), str(r["fpga"]["lut"]), str(r["fpga"]["dsp"]),
                    str(r["fpga"]["latency_cycles"])]
            lines.append(" ".join(f"{v:>{w}}" if i > 1 else f"{v:<{w}}"
                                  for i, (v, (_, w)) in enumerate(zip(vals, cols))))
        t = self.totals
        lines.append("-" * len(head))
        lines.append(
            f"energy {t['energy']} pJ (reference {t['reference_energy']} pJ, policy {self.policy})"
            f" | size {t['size_bits']} bits (reference {t['reference_size_bits']})"
        )
        lines.append(
            f"EBOPs {t['ebops']} | LUT {t['lut']} | DSP {t['dsp']} | FF {t['ff']} | latency "
            f"{t['latency_cycles']} cycles = {t['latency_ns']:.1f} ns at "
            f"{t['clock_period_ns']} ns (estimate, not synthesis)"
        )
        from hqrun.cost.deployed import describe_basis

        lines.append(f"basis: {describe_basis(self.basis)}")
        for note in self.flags:
            lines.append(f"note: {note}")
        flagged = [f"{r['name']}: {', '.join(r['flags'])}" for r in self.rows if r.get("flags")]
        if flagged:
            lines.append("flags: " + "; ".join(flagged))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _w(v: Any) -> str:
    return "-" if v is None else str(v)


def _default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
    except ImportError:  # pragma: no cover
        pass
    return str(o)
