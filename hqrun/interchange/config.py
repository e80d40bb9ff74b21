"""Schemas of the ``export`` and ``import`` config groups (``hqrun export`` / ``hqrun import``).

Kept apart from the commands so that ``hqrun.config`` can validate the groups (a misspelt key is
refused before any work) without importing onnx or qonnx.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = ["ExportConfig", "ImportConfig", "EXPORT_FORMATS", "VERIFY_ON"]

#: Interchange formats ``hqrun export`` writes.
EXPORT_FORMATS = ("qonnx",)
#: What ``hqrun import`` proves the imported model on.
VERIFY_ON = ("random", "data")


@dataclass
class ExportConfig:
    """``conf/export/default.yaml`` (see docs/interchange.md)."""

    format: str = "qonnx"
    out_dir: Optional[str] = None  # default: <run>/export/<format>
    input_type: Optional[str] = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"  # input Quant when the plan has none
    softmax: bool = True  # keep a final softmax as a Softmax node (the logits are its input)
    max_samples: Optional[int] = None  # test samples checked (None: the whole test split)
    batch_size: int = 5000  # samples per qonnx execution call


@dataclass
class ImportConfig:
    """``conf/import/default.yaml`` (see docs/interchange.md)."""

    name: str = "imported"  # the plan's name and the conf/<group>/<name>.yaml written
    verify_on: str = "random"  # random: inputs on the graph's input grid | data: the test split of `data`
    samples: int = 10000  # random inputs
    max_samples: Optional[int] = None  # verify_on=data: test samples used (None: all)
    input_type: str = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"  # random inputs' grid without an input Quant
    batch_size: int = 5000
