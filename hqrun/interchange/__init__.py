"""QONNX interchange: hqrun models to and from QONNX, each direction proven bit-exact.

``to_qonnx(model)`` / ``export_qonnx(model, x, out_dir)`` write an hqrun model as a QONNX graph
(``Quant``/``BipolarQuant`` nodes with exact power-of-two scales, the float ops between them)
and check it with qonnx's executor against the model; ``import_qonnx(path)`` reads a QONNX
graph (hqrun's own, Brevitas's, hand-built) into an hqrun model and plan, checked against
qonnx's execution of the source. See docs/interchange.md.

Needs the ``interchange`` extra (``onnx``, ``qonnx``); imported lazily by ``hqrun.export`` and
the ``hqrun export`` / ``hqrun import`` commands only.
"""

from hqrun.interchange.exporter import (DEFAULT_INPUT_TYPE, ExportResult, QonnxGraph, export_qonnx,
                                        to_qonnx)

__all__ = ["DEFAULT_INPUT_TYPE", "ExportResult", "QonnxGraph", "export_qonnx", "to_qonnx"]

from hqrun.interchange.importer import ImportResult, import_qonnx, load_qonnx  # noqa: E402

__all__ += ["ImportResult", "import_qonnx", "load_qonnx"]
