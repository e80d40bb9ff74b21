"""Run a QONNX graph with qonnx's reference executor on many samples, and read its logits.

Why batches: ``qonnx.core.onnx_exec.execute_onnx`` runs the graph node by node (onnxruntime
for standard nodes, numpy for QONNX's), so its cost is mostly per call, not per sample; a few
thousand samples per call check a whole test split in seconds. The graph's batch dimension is
fixed, so each batch size gets its own copy (qonnx's ChangeBatchSize).

The *logits* are the input of a final Softmax node when there is one (the softmax is float
arithmetic whose last bits depend on the library), else the graph output.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .clean import with_batch_size

__all__ = ["GraphRunner"]


class GraphRunner:
    """Executes a cleaned qonnx ModelWrapper on arrays of samples (float32, batched)."""

    def __init__(self, model: Any, batch_size: int = 5000) -> None:
        self.model = model
        self.batch_size = max(1, int(batch_size))
        self._by_batch: dict[int, Any] = {}
        self.seconds = 0.0
        last = model.graph.node[-1] if len(model.graph.node) else None
        self.has_softmax = last is not None and last.op_type == "Softmax"

    @property
    def input_name(self) -> str:
        return self.model.graph.input[0].name

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.model.get_tensor_shape(self.input_name)[1:])

    def _sized(self, n: int) -> Any:
        if n not in self._by_batch:
            self._by_batch[n] = with_batch_size(self.model, n)
        return self._by_batch[n]

    def _run(self, x: np.ndarray) -> np.ndarray:
        from qonnx.core.onnx_exec import execute_onnx

        model = self._sized(len(x))
        out = execute_onnx(model, {self.input_name: x}, return_full_exec_context=self.has_softmax)
        if self.has_softmax:
            return np.asarray(out[model.graph.node[-1].input[0]])
        return np.asarray(out[model.graph.output[0].name])

    def logits(self, x: np.ndarray) -> np.ndarray:
        """The graph's logits for ``x`` (shape ``(N, *input_shape)``), as float32."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        start = time.perf_counter()
        parts = [self._run(x[i:i + self.batch_size]) for i in range(0, len(x), self.batch_size)]
        self.seconds += time.perf_counter() - start
        return np.concatenate(parts, axis=0).astype(np.float32, copy=False)
