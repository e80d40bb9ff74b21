"""The hls4ml backend: an HLS project (Vitis/Vivado) proven bit-exact by its C simulation.

Registered as ``hls4ml`` (``firmware.backend=hls4ml``, the default). The project is written
through hls4ml's public PyTorch API with every precision pinned (:mod:`.writer`), C-simulated
with layer traces (:mod:`.csim`) and synthesised by the vendor tool when it is installed
(:mod:`.synthesis`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hqrun.errors import FirmwareError

from .. import SimResult, register_backend
from .csim import run_csim
from .synthesis import run_synthesis, write_build_options
from .writer import WriterOptions, hls_precision, import_hls4ml, layer_name_map, to_hls4ml

__all__ = ["Hls4mlBackend", "WriterOptions", "to_hls4ml", "run_csim", "hls_precision",
           "layer_name_map", "import_hls4ml"]


@dataclass
class _Project:
    hls_model: Any
    project_dir: Path
    opts: WriterOptions


def writer_options(options: Any) -> WriterOptions:
    """The HLS project knobs of an ExportConfig."""
    return WriterOptions(**{f: getattr(options, f) for f in WriterOptions.__dataclass_fields__})


@register_backend("hls4ml")
class Hls4mlBackend:
    """hls4ml project + C simulation + optional vendor synthesis."""

    name = "hls4ml"

    def validate(self, options: Any) -> None:
        writer_options(options).validate()

    def check(self, ir: Any, options: Any) -> None:
        """Refuse per-element activation formats (learned bit widths at element/channel
        granularity): hls4ml casts a layer's result to one type, and no single type rounds and
        saturates every element as its own format does. Per-element *weights* are fine: their
        values are constants, exact in the union type the writer declares. The input's
        per-element grid is applied to the samples before they reach the firmware, as every
        input format is."""
        for layer in ir.layers[1:]:
            if layer.out_grid is not None:
                raise FirmwareError(
                    f"layer {layer.name!r} has one fixed-point format per element (learned bit "
                    "widths at granularity 'element' or 'channel'), but the hls4ml backend casts "
                    "each layer's result to one type, which would not round and saturate every "
                    "element as the model does, so the firmware would not be bit-exact. Build it "
                    "with firmware.backend=rtl (per-element casts), or train the activations "
                    "with one format per layer: plan slots activation: "
                    "learned_relu(granularity='layer') and input: "
                    "learned_bits(granularity='layer'), e.g. hqrun train quant=learned "
                    "'quant.learn=[kernel,bias]' "
                    "\"quant.default.activation=\\\"learned_relu(granularity='layer')\\\"\" "
                    "\"quant.input=\\\"learned_bits(granularity='layer')\\\"\" (per-element "
                    "weights are fine for hls4ml: it declares one type wide enough for all)."
                )

    def write(self, ir: Any, project_dir: Path, options: Any) -> _Project:
        opts = writer_options(options)
        hls_model = to_hls4ml(ir, str(project_dir), opts)
        write_build_options(str(project_dir))
        return _Project(hls_model, Path(project_dir), opts)

    def simulate(self, project: _Project, ir: Any, x: np.ndarray) -> SimResult:
        (result,) = run_csim(project.hls_model, ir, x)
        return result

    def synthesise(self, project: _Project, options: Any) -> dict[str, Any]:
        return run_synthesis(project.hls_model, project.opts, str(project.project_dir),
                             options.synthesize)

    def describe(self, project: _Project, options: Any, synthesis: dict[str, Any]) -> dict[str, Any]:
        opts = project.opts
        return {
            "project_name": opts.project_name,
            "hls4ml_version": getattr(import_hls4ml(), "__version__", "unknown"),
            "vendor": opts.vendor, "part": opts.part, "clock_period_ns": opts.clock_period,
            "reuse_factor": opts.reuse_factor, "strategy": opts.strategy, "io_type": opts.io_type,
        }

    def report_lines(self, report: dict[str, Any]) -> list[str]:
        lines = [
            f"- project: `{report['project_dir']}` ({report['vendor']}, part {report['part']}, "
            f"clock {report['clock_period_ns']} ns, reuse factor {report['reuse_factor']}, "
            f"{report['strategy']}, {report['io_type']}, hls4ml {report['hls4ml_version']})",
        ]
        syn = report["synthesis"]
        lines += ["", "## Synthesis (vendor HLS; measured)", ""]
        if syn["status"] == "done":
            lines += [f"- {k}: {v}" for k, v in syn["report"]["summary"].items()]
        else:
            lines.append(f"Not run ({syn.get('reason', '')}). To synthesise later:")
            lines += ["", "```", syn.get("command", ""), "```"]
        return lines

    @staticmethod
    def relocate(project: _Project, final_dir: Path) -> None:
        """Keep the returned hls4ml object pointing at the project after it was moved."""
        try:
            project.hls_model.config.config["OutputDir"] = str(final_dir)
        except Exception:  # noqa: BLE001 - cosmetic
            pass
