"""The RTL backend's part of ``report.json`` / ``report.md``: what was built, checked, measured.

Why here: the report must say what the design is (generator, latency in cycles, that softmax is
not in it), which simulator proved it bit-exact, and Yosys's counts beside alkaid's own estimate
with its relative error — kept apart, because one was measured and the other estimated. The
lead's report builder embeds :func:`report_section` and :func:`report_markdown` as they are.
"""

from __future__ import annotations

from typing import Any

from .diagnose import RtlVerification
from .project import RtlProject

__all__ = ["report_section", "report_markdown", "relative_error"]


def relative_error(estimate: float | None, measured: float | None) -> float | None:
    """(estimate - measured) / measured, or None when either is missing or measured is 0."""
    if estimate is None or measured in (None, 0):
        return None
    return round((float(estimate) - float(measured)) / float(measured), 4)


def report_section(project: RtlProject, verification: RtlVerification | None = None,
                   synthesis: dict[str, Any] | None = None) -> dict[str, Any]:
    """JSON-friendly ``rtl`` section: design, simulation, synthesis, estimate vs measured."""
    out: dict[str, Any] = {
        "design": {"top": project.top, "generator": project.generator,
                   "latency_cycles": project.latency_cycles,
                   "pipeline": "combinational" if project.latency_cycles == 0 else
                   f"{project.latency_cycles} register stages (output registered)",
                   "check_layer": project.check_layer, "check_type": project.check_type,
                   "input_bits": project.input_layout.width, "output_bits": project.output_layout.width,
                   "sources": project.sources, "notes": project.notes},
        "estimate": project.estimate,
        "simulation": None if verification is None else verification.to_dict(),
        "synthesis": synthesis,
    }
    if synthesis and "lut" in synthesis:
        out["estimate_vs_synthesis"] = {
            "lut_relative_error": relative_error(project.estimate.get("lut"), synthesis.get("lut")),
            "ff_relative_error": relative_error(project.estimate.get("ff"), synthesis.get("ff")),
            "note": "alkaid's estimate against Yosys's count: (estimate - yosys) / yosys",
        }
    return out


def report_markdown(section: dict[str, Any]) -> list[str]:
    """Markdown lines of the section (for report.md)."""
    d = section["design"]
    lines = ["## RTL (Verilog) backend", "",
             f"- design `{d['top']}` from {d['generator']['name']} {d['generator']['version']}, "
             f"{d['pipeline']}, latency {d['latency_cycles']} cycles",
             f"- outputs: logits of `{d['check_layer']}` ({d['check_type']}); " + d["notes"][0]]
    sim = section.get("simulation")
    if sim:
        lines.append(f"- simulation ({sim['simulator']}, {sim['simulator_version']}): {sim['summary']}")
    syn = section.get("synthesis")
    if syn and "lut" in syn:
        err = section.get("estimate_vs_synthesis", {}).get("lut_relative_error")
        lines += ["", "| resource | Yosys (measured) | alkaid (estimate) |", "|---|---|---|",
                  f"| LUT | {syn['lut']} | {section['estimate'].get('lut')} "
                  f"({'n/a' if err is None else f'{err:+.1%}'}) |",
                  f"| FF | {syn['ff']} | {section['estimate'].get('ff')} |",
                  f"| CARRY | {syn['carry']} | |", f"| DSP | {syn['dsp']} | |",
                  f"| BRAM (18 Kb) | {syn['bram']} | |", "",
                  f"Yosys {syn['tool_version'].split('(')[0].strip()} `synth_xilinx -family "
                  f"{syn['family']}` ({syn['abc']}, flatten={syn['flatten']}) for {syn['part']} in "
                  f"{syn['seconds']} s. {syn['timing_note']}."]
    elif syn:
        lines.append(f"- synthesis {syn.get('status', 'not run')}: {syn.get('reason', '')}")
    return lines
