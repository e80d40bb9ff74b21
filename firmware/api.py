"""``export()``: a trained hqrun model → a verified firmware project, from plain Python.

Usable in a notebook (no Hydra, Lightning or Ray). The flow is the same for every backend
(:mod:`hqrun.firmware.backends`): model → IR (:func:`build_ir`, passes included) → hqrun's
integer emulation → backend project in a temporary directory → the backend's simulation →
verification → synthesis → report; only a project whose simulation is bit-exact is moved to
``out_dir``. A failing one goes to ``<out_dir>.FAILED`` with its report, and
:class:`~hqrun.errors.FirmwareError` is raised, so no directory named like a good project ever
holds a bad one.
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
from hqrun.errors import FirmwareError, ToolMissingError
from hqrun.firmware_options import ExportFields, RtlFields
from hqrun.quantizers.fixedpoint import FixedPointType
from hqrun.quantizers.grid import FixedPointGrid

from .backends import get_backend
from .convert import build_ir
from .emulate import emulate, quantize_input, to_values
from .ir import FirmwareIR
from .report import build_report, write_report
from .verify import Verification, unverified, verify

__all__ = ["ExportConfig", "FirmwareResult", "export", "quantize_samples"]

PROJECT_SUBDIR = "project"

#: hqrun 0.1 spelled the HLS flavour as the backend; those values still select hls4ml.
_LEGACY_VENDOR_BACKENDS = ("Vitis", "Vivado")


@dataclass
class ExportConfig(ExportFields):
    """Everything ``export`` needs besides the model and samples (mirrors ``conf/firmware``).

    Fields and defaults: :class:`hqrun.firmware_options.ExportFields`.
    """

    def __post_init__(self) -> None:
        if self.backend in _LEGACY_VENDOR_BACKENDS:
            self.vendor, self.backend = self.backend, "hls4ml"
        if isinstance(self.rtl, Mapping):
            self.rtl = RtlFields(**dict(self.rtl))

    def validate(self) -> None:
        """Refuse bad settings (unknown backend, its own knobs, synthesis mode) before any work."""
        if self.synthesize not in ("auto", "always", "never"):
            raise FirmwareError(f"synthesize={self.synthesize!r}: use auto, always or never.")
        self._validate_numbers()
        get_backend(self.backend).validate(self)

    def _validate_numbers(self) -> None:
        """Sizes, time-outs and types every backend reads (refused before any model is built)."""
        for key, minimum in (("max_samples", 0), ("softmax_table_size", 1)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise FirmwareError(f"firmware.{key}={value!r} must be a whole number >= {minimum}.")
        if not float(self.synth_timeout_s) > 0:
            raise FirmwareError(f"firmware.synth_timeout_s={self.synth_timeout_s!r} must be a "
                                "positive number of seconds.")
        self.parsed_input_type()
        try:
            FixedPointType.from_hls_name(self.softmax_result)
        except Exception as err:  # noqa: BLE001 - QuantizerSpecError carries the detail
            raise FirmwareError(f"firmware.softmax_result={self.softmax_result!r} is not an HLS "
                                f"type ({err}); e.g. ap_ufixed<16,0,AP_RND,AP_SAT>.") from None

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | "ExportConfig" | None) -> "ExportConfig":
        if cfg is None:
            return cls()
        if isinstance(cfg, ExportConfig):
            return cfg
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in dict(cfg).items() if k in known}
        return cls(**data)

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
    project: Any = field(repr=False, default=None)  # the backend's handle (hls4ml: .hls_model)

    @property
    def report_path(self) -> Path:
        return self.out_dir / "report.json"

    @property
    def hls_model(self) -> Any:
        """The hls4ml ModelGraph when the hls4ml backend built the project (else None)."""
        return getattr(self.project, "hls_model", None)


def quantize_samples(x: np.ndarray, t: FixedPointType, grid: FixedPointGrid | None = None) -> np.ndarray:
    """Put samples on the firmware input grid (what both the model and the simulation then read);
    with a per-element ``grid`` each feature goes onto its own format."""
    return to_values(quantize_input(np.asarray(x, dtype=np.float64), t, grid), t)


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


def _diagnose(backend: Any, project: Any, ir: FirmwareIR, emu: Any, x: np.ndarray,
              v: Verification) -> None:
    """Name the first divergent layer through the backend when its simulation is read only at
    the output (a backend with layer traces already named it)."""
    fn = getattr(backend, "diagnose", None)
    if v.passed or v.first_mismatch_sample is None or v.first_divergent_layer is not None or \
            not callable(fn):
        return
    bad = [v.first_mismatch_sample]
    v.first_divergent_layer, v.mismatch_detail = fn(project, ir, emu, x, bad)


def _timed(timings: dict[str, float], key: str, fn: Any, *args: Any) -> Any:
    start = time.perf_counter()
    out = fn(*args)
    timings[key] = round(time.perf_counter() - start, 3)
    return out


def export(model: nn.Module, x_samples: np.ndarray, out_dir: str | os.PathLike,
           config: Mapping[str, Any] | ExportConfig | None = None, *,
           labels: np.ndarray | None = None, estimate: dict[str, Any] | None = None,
           extra_report: dict[str, Any] | None = None) -> FirmwareResult:
    """Export ``model`` with the configured backend into ``out_dir``, proven bit-exact on ``x_samples``.

    Args:
        model: a trained hqrun model (``QSequential``); put in eval mode.
        x_samples: test inputs, channels-first, already standardised as in training. They are
            quantized to the firmware input format (the model's input quantizer, else
            ``config.input_type``) before both the model and the simulation see them.
        out_dir: destination; gets ``report.json``, ``report.md`` and ``project/`` (the
            backend's project). Replaced only by a verified export.
        config: :class:`ExportConfig` or a mapping with its fields (``backend`` picks the
            backend: hls4ml, rtl or a registered one).
        labels: optional class labels of the samples, for firmware vs model accuracy.
        estimate: optional cost-model estimate (a dict) to include in the report.

    Raises:
        FirmwareError: the model cannot be exported exactly, or the simulation disagrees.
    """
    cfg = ExportConfig.from_mapping(config)
    cfg.validate()
    backend = get_backend(cfg.backend)
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
    backend.check(ir, cfg)
    xq = quantize_samples(x, ir.input_type, ir.input_grid)
    emu = emulate(ir, xq)
    timings["ir_and_emulation"] = round(time.perf_counter() - t0, 3)

    out = Path(out_dir)
    _check_replaceable(out)
    _check_replaceable(out.parent / f"{out.name}.FAILED")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        project = _timed(timings, "write", backend.write, ir, tmp / PROJECT_SUBDIR, cfg)
        try:
            sim = _timed(timings, "simulate", backend.simulate, project, ir, xq)
        except ToolMissingError as err:  # the project is written; its proof waits for the tool
            sim = None
            v = unverified(ir, str(err), int(xq.shape[0]))
        else:
            v = verify(ir, emu, sim, model, xq, labels)
            _diagnose(backend, project, ir, emu, xq, v)
        final_dir = out if v.passed or v.not_run else out.parent / f"{out.name}.FAILED"
        if final_dir != out and (out / "report.json").exists():
            shutil.rmtree(out)  # an older good export no longer describes this model
        synthesis = {"status": "not run", "reason": "verification failed"} if final_dir != out \
            else _timed(timings, "synthesise", backend.synthesise, project, cfg)
        synthesis.setdefault("command", "")
        if synthesis.get("command"):
            synthesis["command"] = synthesis["command"].replace(str(tmp), str(final_dir))
        fields_ = {**backend.describe(project, cfg, synthesis), **(sim.extra if sim else {})}
        report = build_report(ir, backend.name, v, str(final_dir / PROJECT_SUBDIR), fields_,
                              estimate, synthesis, timings,
                              {"config": asdict(cfg), **(extra_report or {})})
        write_report(report, tmp, backend.report_lines)
        _replace_dir(tmp, final_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    relocate = getattr(backend, "relocate", None)
    if callable(relocate):
        relocate(project, final_dir / PROJECT_SUBDIR)
    if v.not_run:
        return FirmwareResult(out, out / PROJECT_SUBDIR, False, v, report, ir, project)
    if not v.passed:
        raise FirmwareError(
            f"firmware verification failed: {v.summary()} The project and its report were kept "
            f"in {final_dir} for inspection; {out} was not written. Please report this as an hqrun "
            "bug with that report."
        )
    return FirmwareResult(out, out / PROJECT_SUBDIR, True, v, report, ir, project)
