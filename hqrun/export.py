"""``hqrun.export``: hqrun models to (and from) interchange formats, from plain Python.

    from hqrun.export import to_qonnx, export_qonnx, import_qonnx
    graph = to_qonnx(model, "model.onnx")                 # a cleaned QONNX graph
    result = export_qonnx(model, x_test, "out/qonnx")      # ... proven bit-exact on x_test
    imported = import_qonnx("brevitas_model.onnx")        # QONNX -> hqrun model + plan

The implementation lives in :mod:`hqrun.interchange` (docs/interchange.md); this module only
gives it the name users look for. It needs the ``interchange`` extra (onnx, qonnx).
"""

from hqrun.interchange import (DEFAULT_INPUT_TYPE, ExportResult, ImportResult, QonnxGraph,
                               export_qonnx, import_qonnx, load_qonnx, to_qonnx)

__all__ = ["DEFAULT_INPUT_TYPE", "ExportResult", "ImportResult", "QonnxGraph", "export_qonnx",
           "import_qonnx", "load_qonnx", "to_qonnx"]
