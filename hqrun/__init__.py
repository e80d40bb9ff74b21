"""hqrun: heterogeneous quantization of neural networks for nanosecond FPGA inference.

This module stays light on purpose: importing ``hqrun.quantizers`` or ``hqrun.firmware``
from a notebook must not pull in Ray, Lightning or Hydra (see ``docs/architecture.md``).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
