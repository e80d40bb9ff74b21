"""``write``: the fixed-point IR → an RTL project on disk (Verilog through alkaid), atomically.

What a project holds: alkaid's Verilog (``src/<top>.v``, one ``src/logic<i>.v`` per pipeline
stage, ``src/static/*.v`` with its adder/mux primitives), alkaid's vendor scripts and C++
emulator sources (usable with Vivado/Verilator, not needed by hqrun), and hqrun's
``project.json``: the port layouts, the latency in cycles, alkaid's own cost estimate, and the
fact that softmax is not in the RTL. The project is built in a temporary directory beside
``out_dir`` and renamed into place, so an interrupted write never leaves a half project.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hqrun.errors import FirmwareError

from ...ir import FirmwareIR
from .alkaid_api import alkaid, prepare_for_codegen
from .lower import TracedModel, trace_ir
from .options import RtlOptions
from .packing import PortLayout

__all__ = ["RtlProject", "write", "write_design", "PROJECT_FILE", "SOFTMAX_NOTE"]

PROJECT_FILE = "project.json"
SOFTMAX_NOTE = ("softmax is not part of the RTL: the design outputs the logits of the last "
                "fixed-point layer, as trigger designs do (argmax or a softmax, if wanted, is "
                "left to the consumer)")


@dataclass
class RtlProject:
    """A written RTL design and everything needed to drive and read it.

    ``ir`` is the IR the design was built from (kept in memory only; a project loaded from disk
    has none and is simulated with the IR the caller passes).
    """

    out_dir: Path
    top: str
    latency_cycles: int
    sources: list[str]
    input_layout: PortLayout
    output_layout: PortLayout
    input_frac: int
    input_shape: list[int]
    check_layer: str
    check_frac: int
    check_type: str
    check_shape: list[int]
    estimate: dict[str, Any]
    generator: dict[str, str]
    options: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    ir: FirmwareIR | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("ir", "out_dir")}
        out["input_layout"] = self.input_layout.to_list()
        out["output_layout"] = self.output_layout.to_list()
        return out

    @classmethod
    def load(cls, out_dir: str | os.PathLike) -> "RtlProject":
        """Read ``project.json`` back (plain JSON: nothing in it is executed)."""
        path = Path(out_dir) / PROJECT_FILE
        if not path.is_file():
            raise FirmwareError(f"{out_dir} holds no {PROJECT_FILE}; it is not an hqrun RTL project.")
        data = json.loads(path.read_text())
        data["input_layout"] = PortLayout.from_precisions(data["input_layout"])
        data["output_layout"] = PortLayout.from_precisions(data["output_layout"])
        return cls(out_dir=Path(out_dir), **data)


def _pipeline(comb: Any, latency_cycles: int) -> Any:
    """alkaid FSM: combinational (0) or ``L`` balanced stages each ending in a register."""
    a = alkaid()
    if latency_cycles == 0:
        return a.to_pipeline(comb, n_stages=1, reg_inp=False, reg_out=False, verbose=False)
    return a.to_pipeline(comb, n_stages=latency_cycles, reg_inp=False, reg_out=True, verbose=False)


def _sources(root: Path, top: str) -> list[str]:
    """Verilog files of the design, primitives first (the alkaid IO wrapper is not needed)."""
    static = sorted(p.relative_to(root).as_posix() for p in (root / "src" / "static").glob("*.v"))
    own = sorted(p.relative_to(root).as_posix() for p in (root / "src").glob("*.v")
                 if p.name != f"{top}_wrapper.v")
    return static + own


def write_design(traced: TracedModel, dest: Path, opts: RtlOptions) -> tuple[Any, Any, list[str]]:
    """Write alkaid's Verilog for a traced program into ``dest`` (no project.json).

    Returns (alkaid's FSM, the prepared combinational program, the source list).
    """
    comb = prepare_for_codegen(traced.comb)
    fsm = _pipeline(comb, opts.latency_cycles)
    model = alkaid().RTLModel(fsm, dest, prj_name=opts.top_name, part_name=opts.part,
                              clock_period=float(opts.clock_period), print_latency=False,
                              ternary_fuse=False)
    model.write()
    return fsm, comb, _sources(dest, opts.top_name)


def _check_replaceable(dst: Path) -> None:
    if dst.exists() and (not dst.is_dir() or (not (dst / PROJECT_FILE).exists() and any(dst.iterdir()))):
        raise FirmwareError(f"{dst} exists and is not an hqrun RTL project; refusing to overwrite it. "
                            "Choose another output directory or remove it.")


def _project(dest: Path, traced: TracedModel, ir: FirmwareIR, opts: RtlOptions, fsm: Any, comb: Any,
             sources: list[str]) -> RtlProject:
    inp, out = fsm.inp_signals[0], fsm.out_signals[0]
    reg_bits = sum(sig.width for sig in fsm.signals.values() if sig.reg)
    check = traced.check_layer
    return RtlProject(
        out_dir=dest, top=opts.top_name, latency_cycles=opts.latency_cycles, sources=sources,
        input_layout=PortLayout.from_precisions(inp.precisions),
        output_layout=PortLayout.from_precisions(out.precisions),
        input_frac=ir.input_type.fractional, input_shape=list(ir.input_shape),
        check_layer=check.name, check_frac=check.out_type.fractional,
        check_type=check.out_type.hls_name, check_shape=list(check.out_shape),
        estimate={"lut": round(float(comb.cost), 1), "ff": int(reg_bits),
                  "source": "alkaid's own cost model (LUT estimate of its adder graph; FF = "
                            "register bits of the pipeline)"},
        generator={"name": "alkaid", "version": alkaid().version},
        options=opts.to_dict(),
        notes=[SOFTMAX_NOTE,
               "latency_cycles counts rising clock edges from an input to its result (inputs "
               "unregistered, output registered); 0 = combinational",
               "no Fmax is claimed: Yosys does no timing analysis"],
        ir=ir,
    )


def write(ir: FirmwareIR, out_dir: str | os.PathLike, opts: RtlOptions | None = None) -> RtlProject:
    """Write the RTL project of ``ir`` into ``out_dir`` (replacing an earlier hqrun RTL project).

    Raises:
        FirmwareError: a layer the RTL backend cannot build exactly (named), or ``out_dir`` is
            something other than an earlier project.
    """
    opts = opts or RtlOptions()
    opts.validate()
    dst = Path(out_dir)
    _check_replaceable(dst)
    traced = trace_ir(ir)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        fsm, comb, sources = write_design(traced, tmp, opts)
        project = _project(dst, traced, ir, opts, fsm, comb, sources)
        (tmp / PROJECT_FILE).write_text(json.dumps(project.to_dict(), indent=2))
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return project
