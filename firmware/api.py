"""``export()``: a trained hqrun model → a verified hls4ml project, from plain Python.

Usable in a notebook (no Hydra, Lightning or Ray). The flow is model → IR → emulation → hls4ml
project in a temporary directory → traced C simulation → verification → report; only a project
whose C simulation is bit-exact is moved to ``out_dir``. A failing one goes to
``<out_dir>.FAILED`` with its report, and :class:`~hqrun.errors.FirmwareError` is raised, so no
directory named like a good project ever holds a bad one.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from torch import nn

from hqrun import atomic
from hqrun.errors import FirmwareError
from hqrun.firmware_options import ExportFields
from hqrun.quantizers.fixedpoint import FixedPointType

from .csim import run_csim
from .emulate import emulate, quantize_input, to_values
from .hls4ml_writer import WriterOptions, to_hls4ml
from .ir import FirmwareIR, build_ir
from .report import build_report, run_synthesis, write_build_options, write_report
from .verify import Verification, verify

__all__ = ["ExportConfig", "FirmwareResult", "export", "quantize_samples"]

PROJECT_SUBDIR = "project"


@dataclass
class ExportConfig(ExportFields):
    """Everything ``export`` needs besides the model and samples (mirrors ``conf/firmware``).

    Fields and defaults: :class:`hqrun.firmware_options.ExportFields`.
    """

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | "ExportConfig" | None) -> "ExportConfig":
        if cfg is None:
            return cls()
        if isinstance(cfg, ExportConfig):
            return cfg
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in dict(cfg).items() if k in known}
        return cls(**data)

    def writer_options(self) -> WriterOptions:
        return WriterOptions(self.backend, self.part, float(self.clock_period), int(self.reuse_factor),
                             self.strategy, self.io_type, self.project_name, self.softmax_result,
                             int(self.softmax_table_size))

    def parsed_input_type(self) -> FixedPointType:
        try:
            return FixedPointType.from_hls_name(self.input_type)
        except Exception as err:  # noqa: BLE001 - QuantizerSpecError carries the detail
            raise FirmwareError(f"firmware input_type {self.input_type!r} is not an HLS type: {err}") from None


@dataclass
class FirmwareResult:
    """What ``export`` produced: where, whether it is bit-exact, and the objects behind it."""

    out_dir: Path
    project_dir: Path
    passed: bool
    verification: Verification
    report: dict[str, Any]
    ir: FirmwareIR
    hls_model: Any = field(repr=False, default=None)

    @property
    def report_path(self) -> Path:
        return self.out_dir / "report.json"


def quantize_samples(x: np.ndarray, t: FixedPointType) -> np.ndarray:
    """Put samples on the firmware input grid (what both the model and the C-sim then read)."""
    return to_values(quantize_input(np.asarray(x, dtype=np.float64), t), t)


def _input_shape(model: nn.Module, x: np.ndarray) -> tuple[int, ...]:
    shape = getattr(model, "input_shape", None)
    return tuple(shape) if shape else tuple(x.shape[1:])


def _check_replaceable(dst: Path) -> None:
    """Only an earlier hqrun export (or nothing) may be replaced; checked before any work."""
    if dst.exists() and (not dst.is_dir() or (not (dst / "report.json").exists() and any(dst.iterdir()))):
        raise FirmwareError(
            f"{dst} exists and is not an hqrun firmware directory; refusing to overwrite it. "
            "Choose another out_dir or remove it."
        )


def _replace_dir(src: Path, dst: Path) -> None:
    _check_replaceable(dst)
    atomic.replace_dir(src, dst)  # the old export is set aside until the new one is in place


def export(model: nn.Module, x_samples: np.ndarray, out_dir: str | os.PathLike,
           config: Mapping[str, Any] | ExportConfig | None = None, *,
           labels: np.ndarray | None = None, estimate: dict[str, Any] | None = None,
           extra_report: dict[str, Any] | None = None) -> FirmwareResult:
    """Export ``model`` as an hls4ml project in ``out_dir`` proven bit-exact on ``x_samples``.

    Args:
        model: a trained hqrun model (``QSequential``); put in eval mode.
        x_samples: test inputs, channels-first, already standardised as in training. They are
            quantized to the firmware input type (the model's input quantizer, else
            ``config.input_type``) before both the model and the C simulation see them.
        out_dir: destination; gets ``report.json``, ``report.md`` and ``project/`` (the HLS
            project). Replaced only by a verified export.
        config: :class:`ExportConfig` or a mapping with its fields.
        labels: optional class labels of the samples, for firmware vs model accuracy.
        estimate: optional cost-model estimate (a dict) to include in the report.

    Raises:
        FirmwareError: the model cannot be exported exactly, or the C simulation disagrees.
    """
    cfg = ExportConfig.from_mapping(config)
    if cfg.synthesize not in ("auto", "always", "never"):
        raise FirmwareError(f"synthesize={cfg.synthesize!r}: use auto, always or never.")
    opts = cfg.writer_options()
    opts.validate()
    x = np.asarray(x_samples)
    if x.ndim < 2 or x.shape[0] == 0:
        raise FirmwareError("export needs a non-empty batch of samples shaped (N, *input_shape).")
    if cfg.max_samples and x.shape[0] > int(cfg.max_samples):
        x = x[: int(cfg.max_samples)]
        labels = None if labels is None else np.asarray(labels)[: int(cfg.max_samples)]
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    model.eval()
    ir = build_ir(model, _input_shape(model, x), cfg.parsed_input_type())
    xq = quantize_samples(x, ir.input_type)
    emu = emulate(ir, xq)
    timings["ir_and_emulation"] = round(time.perf_counter() - t0, 3)

    out = Path(out_dir)
    _check_replaceable(out)
    _check_replaceable(out.parent / f"{out.name}.FAILED")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        t1 = time.perf_counter()
        hls_model = to_hls4ml(ir, str(tmp / PROJECT_SUBDIR), opts)
        write_build_options(str(tmp / PROJECT_SUBDIR))
        timings["write"] = round(time.perf_counter() - t1, 3)
        t2 = time.perf_counter()
        (csim,) = run_csim(hls_model, ir, xq)
        timings["csim_compile_and_run"] = round(time.perf_counter() - t2, 3)
        v = verify(ir, emu, csim, model, xq, labels)
        final_dir = out if v.passed else out.parent / f"{out.name}.FAILED"
        if not v.passed and (out / "report.json").exists():
            shutil.rmtree(out)  # an older good export no longer describes this model
        synthesis = {"status": "not run", "reason": "verification failed"} if not v.passed else \
            run_synthesis(hls_model, opts, str(tmp / PROJECT_SUBDIR), cfg.synthesize)
        synthesis.setdefault("command", "")
        if synthesis.get("command"):
            synthesis["command"] = synthesis["command"].replace(str(tmp), str(final_dir))
        report = build_report(ir, opts, v, str(final_dir / PROJECT_SUBDIR), estimate, synthesis,
                              timings, {"config": asdict(cfg), **(extra_report or {})})
        write_report(report, tmp)
        _replace_dir(tmp, final_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        hls_model.config.config["OutputDir"] = str(final_dir / PROJECT_SUBDIR)
    except Exception:  # noqa: BLE001 - cosmetic: keeps the object usable after the move
        pass
    if not v.passed:
        raise FirmwareError(
            f"firmware verification failed: {v.summary()} The project and its report were kept "
            f"in {final_dir} for inspection; {out} was not written. Please report this as an hqrun "
            "bug with that report."
        )
    return FirmwareResult(out, out / PROJECT_SUBDIR, True, v, report, ir, hls_model)
