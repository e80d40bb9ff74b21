"""QONNX's own clean-up of a graph, and a copy of it for batched execution.

Why qonnx's transformations rather than hqrun's own: the graph is meant for qonnx, FINN and
hls4ml, and qonnx's clean-up (shape inference, constant folding that keeps Quant nodes, unique
node names, readable tensor names, data-type annotations) is what those tools expect to read.
"""

from __future__ import annotations

from typing import Any

__all__ = ["clean", "with_batch_size"]


def clean(model: Any) -> Any:
    """A qonnx ``ModelWrapper`` of ``model`` (ModelProto or wrapper) after qonnx's clean-up."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.util.cleanup import cleanup_model

    wrapper = model if isinstance(model, ModelWrapper) else ModelWrapper(model)
    wrapper = cleanup_model(wrapper)  # InferShapes, FoldConstants (Quant kept), unique names...
    wrapper = wrapper.transform(InferShapes())
    return wrapper.transform(InferDataTypes())


def with_batch_size(model: Any, batch: int) -> Any:
    """A copy of a cleaned wrapper whose input and output take ``batch`` samples at once."""
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes

    return model.transform(ChangeBatchSize(int(batch))).transform(InferShapes())
