"""``to_qonnx`` and ``export_qonnx``: an hqrun model as a QONNX graph, proven bit-exact.

``to_qonnx(model)`` builds the graph (:mod:`~hqrun.interchange.export_graph`) and cleans it with
qonnx's own transformations. ``export_qonnx(model, x, out_dir)`` also executes the graph with
qonnx's executor on every sample of ``x`` and compares its logits with the model's, bit for bit;
``model.onnx``, ``report.json`` and ``report.md`` are assembled in a temporary directory and
moved to ``out_dir`` only when the graph equals the model (a failing export goes to
``<out_dir>.FAILED`` with its report, and :class:`~hqrun.errors.InterchangeError` is raised).
"""

from __future__ import annotations

import hashlib
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from hqrun import atomic
from hqrun.errors import InterchangeError
from hqrun.quantizers.fixedpoint import FixedPointType

from .clean import clean
from .deps import require_qonnx
from .execute import GraphRunner
from .export_graph import build_graph
from .formats import QuantFormat
from .verify import Comparison, compare_logits, float32_risks, model_logits

__all__ = ["QonnxGraph", "ExportResult", "to_qonnx", "export_qonnx", "DEFAULT_INPUT_TYPE"]

#: The firmware's default input format (``firmware.input_type``), used when a model has no input
#: quantizer, so the graph quantizes its input as the firmware does.
DEFAULT_INPUT_TYPE = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"

REPORT = "report.json"
MODEL_FILE = "model.onnx"


def _parse_type(input_type: str | FixedPointType | None) -> FixedPointType | None:
    if input_type is None or isinstance(input_type, FixedPointType):
        return input_type
    try:
        return FixedPointType.from_hls_name(str(input_type))
    except Exception as err:  # noqa: BLE001 - QuantizerSpecError carries the detail
        raise InterchangeError(f"export input_type {input_type!r} is not an HLS type: {err}") from None


@dataclass
class QonnxGraph:
    """A cleaned QONNX graph of an hqrun model (``wrapper`` is qonnx's ModelWrapper)."""

    wrapper: Any
    input_shape: tuple[int, ...]
    input_format: QuantFormat | None
    added_input_type: FixedPointType | None
    has_softmax: bool
    layers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def proto(self) -> Any:
        """The ONNX ModelProto."""
        return self.wrapper.model

    def to_bytes(self) -> bytes:
        return self.proto.SerializeToString()

    def save(self, path: str | Path) -> Path:
        """Write the graph to ``path`` atomically."""
        return atomic.write_bytes(path, self.to_bytes())


def to_qonnx(model: nn.Module, path: str | Path | None = None, *,
             input_shape: tuple[int, ...] | None = None,
             input_type: str | FixedPointType | None = DEFAULT_INPUT_TYPE,
             softmax: bool = True, metadata: Mapping[str, Any] | None = None) -> QonnxGraph:
    """``model`` (an hqrun ``QSequential``, put in eval mode) as a cleaned QONNX graph.

    Args:
        path: also write the ``.onnx`` file there (atomically).
        input_shape: one sample's shape, channels first (default: ``model.input_shape``).
        input_type: the graph input's format when the model has no input quantizer (an HLS
            type; the firmware's default); None leaves such an input float.
        softmax: keep a final softmax as a Softmax node (the logits are its input either way).
        metadata: extra ``metadata_props`` (e.g. the model config), JSON-encoded.

    Raises:
        InterchangeError: a layer or quantizer has no exact QONNX equivalent (named).
    """
    from hqrun.models.plan import plan_from_model

    require_qonnx()
    shape = tuple(input_shape or getattr(model, "input_shape", None) or ())
    if not shape:
        raise InterchangeError("to_qonnx needs the model's per-sample input shape: build the model "
                               "with hqrun.models or pass input_shape=(16,) (channels first).")
    in_type = _parse_type(input_type)
    meta = {"hqrun.plan": plan_from_model(model, "exported").to_dict(), **dict(metadata or {})}
    raw = build_graph(model, shape, in_type, keep_softmax=softmax, metadata=meta)
    graph = QonnxGraph(clean(raw.model), shape, raw.input_format,
                       in_type if raw.input_added else None, raw.has_softmax, raw.layers)
    if path is not None:
        graph.save(path)
    return graph


@dataclass
class ExportResult:
    """What ``export_qonnx`` wrote and measured."""

    out_dir: Path
    model_path: Path
    passed: bool
    comparison: Comparison
    report: dict[str, Any]
    graph: QonnxGraph


def _model_inputs(graph: QonnxGraph, x: np.ndarray) -> np.ndarray:
    """What the model sees: the samples cast to the graph's added input type, if any (the
    model's own input quantizer, when it has one, does the cast itself)."""
    x32 = np.asarray(x, dtype=np.float32)
    t = graph.added_input_type
    if t is None:
        return x32
    return t.quantize(torch.from_numpy(x32)).numpy().astype(np.float32)


def _accuracy(logits: np.ndarray, labels: np.ndarray | None) -> float | None:
    if labels is None:
        return None
    return float(np.mean(logits.argmax(axis=1) == np.asarray(labels).reshape(-1)))


def _report(graph: QonnxGraph, data: bytes, x: np.ndarray, vs32: Comparison, vs64: Comparison,
            risks: list[str], accuracy: dict[str, Any], seconds: dict[str, float],
            extra: Mapping[str, Any] | None) -> dict[str, Any]:
    import onnx
    import qonnx

    added = graph.added_input_type
    return {
        "format": "qonnx",
        "status": "PASSED" if vs32.exact else "FAILED",
        "model_file": MODEL_FILE,
        "sha256": hashlib.sha256(data).hexdigest(),
        "versions": {"qonnx": getattr(qonnx, "__version__", "1.0.0"), "onnx": onnx.__version__},
        "opsets": {o.domain or "ai.onnx": int(o.version) for o in graph.proto.opset_import},
        "input": {"shape": list(graph.input_shape),
                  "quant": graph.input_format.describe() if graph.input_format else None,
                  "added_input_type": added.hls_name if added else None},
        "softmax": ("kept as the final Softmax node; the logits compared are its input"
                    if graph.has_softmax else "none in the graph"),
        "layers": graph.layers,
        "verification": {
            "executor": "qonnx.core.onnx_exec.execute_onnx (float32)",
            "samples": int(len(x)),
            "vs_model_float32": vs32.to_dict(),
            "vs_model_float64": vs64.to_dict(),
            "float32_exactness": "guaranteed (every accumulator fits 24 bits)" if not risks else
                                 "measured on these samples only: " + "; ".join(risks),
            "accuracy": accuracy,
        },
        "timings_s": seconds,
        **dict(extra or {}),
    }


def _markdown(report: dict[str, Any]) -> str:
    v = report["verification"]
    vs32, vs64 = v["vs_model_float32"], v["vs_model_float64"]
    lines = [
        f"# QONNX export: {report['status']}",
        "",
        f"- QONNX vs hqrun (PyTorch, eval, float32): {vs32['n_samples']} samples, "
        f"{vs32['mismatches']} mismatches (logits bit for bit)",
        f"- QONNX vs hqrun in float64 (exact fixed point): {vs64['mismatches']} mismatches",
        f"- float32 exactness: {v['float32_exactness']}",
        f"- input: {report['input']['quant'] or 'float'}"
        + (f" (added: {report['input']['added_input_type']}, the firmware's input format)"
           if report["input"]["added_input_type"] else ""),
        f"- softmax: {report['softmax']}",
        f"- file: {report['model_file']} (sha256 {report['sha256'][:16]}...)",
    ]
    if v.get("accuracy"):
        acc = v["accuracy"]
        lines.append(f"- accuracy on these samples: graph {acc.get('graph')}, model {acc.get('model')}")
    lines += ["", "| layer | slot | hqrun | QONNX |", "|---|---|---|---|"]
    for row in report["layers"]:
        qonnx_text = ("Relu, " if row.get("relu") else "") + (row.get("qonnx") or row.get("spec"))
        lines.append(f"| {row['layer']} | {row['slot']} | `{row['spec']}` | {qonnx_text} |")
    return "\n".join(lines) + "\n"


def _check_replaceable(path: Path) -> None:
    """Only an earlier export (it has a report.json) or an empty directory may be replaced."""
    if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not (path / REPORT).is_file())):
        raise InterchangeError(f"{path} exists and is not an hqrun QONNX export; refusing to "
                               "overwrite it. Choose another export.out_dir or remove it.")


def export_qonnx(model: nn.Module, x: np.ndarray, out_dir: str | Path, *,
                 labels: np.ndarray | None = None,
                 input_type: str | FixedPointType | None = DEFAULT_INPUT_TYPE,
                 softmax: bool = True, batch_size: int = 5000,
                 metadata: Mapping[str, Any] | None = None,
                 extra_report: Mapping[str, Any] | None = None) -> ExportResult:
    """Export ``model`` to ``out_dir/model.onnx``, proven equal to it on every sample of ``x``.

    ``x`` holds the samples as the model takes them (e.g. standardised test inputs, channels
    first); the graph gets them as they are, the model after the graph's added input cast (if
    any). Raises :class:`InterchangeError` when a layer cannot be exported or the logits differ.
    """
    x = np.asarray(x)
    if x.ndim < 2 or len(x) == 0:
        raise InterchangeError("export_qonnx needs a non-empty batch of samples (N, *input_shape).")
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    graph = to_qonnx(model, input_shape=tuple(getattr(model, "input_shape", None) or x.shape[1:]),
                     input_type=input_type, softmax=softmax, metadata=metadata)
    seconds["build_and_clean"] = round(time.perf_counter() - t0, 3)
    runner = GraphRunner(graph.wrapper, batch_size)
    got = runner.logits(x)
    seconds["qonnx_execution"] = round(runner.seconds, 3)
    t1 = time.perf_counter()
    xm = _model_inputs(graph, x)
    ref = model_logits(model, xm)
    vs32 = compare_logits(got, ref)
    vs64 = compare_logits(got, model_logits(model, xm.astype(np.float64), dtype=torch.float64))
    risks = float32_risks(model, graph.added_input_type, graph.input_shape)
    seconds["model_and_compare"] = round(time.perf_counter() - t1, 3)
    accuracy = {"graph": _accuracy(got, labels), "model": _accuracy(ref, labels)} \
        if labels is not None else {}
    data = graph.to_bytes()
    report = _report(graph, data, x, vs32, vs64, risks, accuracy, seconds, extra_report)
    out = Path(out_dir)
    final = out if vs32.exact else out.parent / f"{out.name}.FAILED"
    _check_replaceable(final)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        atomic.write_bytes(tmp / MODEL_FILE, data)
        atomic.write_json(tmp / REPORT, report, indent=1)
        atomic.write_text(tmp / "report.md", _markdown(report))
        atomic.replace_dir(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if not vs32.exact:
        raise InterchangeError(
            f"the exported QONNX graph does not equal the model: {vs32.summary()}. The graph and "
            f"its report were kept in {final} for inspection; please report this as an hqrun bug."
        )
    return ExportResult(out, out / MODEL_FILE, True, vs32, report, graph)
