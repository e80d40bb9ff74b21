"""User-facing errors.

Every failure a user can cause (bad config, bad spec, bad data, unsupported layer) raises a
subclass of :class:`HqrunError` whose message is one paragraph naming the culprit and the fix.
The CLI turns these into a one-line prefix plus that paragraph instead of a traceback, so this
module must stay import-light: ``quantizers/`` and ``firmware/`` import it too.
"""

from __future__ import annotations


class HqrunError(Exception):
    """Base class of errors meant to be read by a user, not debugged."""


class ConfigError(HqrunError, ValueError):
    """A config value or command-line override is invalid."""


class DataError(HqrunError, ValueError):
    """A data file is missing, truncated, mislabelled or contains bad values."""


class QuantizerSpecError(HqrunError, ValueError):
    """A quantizer spec names an unknown quantizer or argument, or impossible bit widths."""


class PlanError(HqrunError, ValueError):
    """A quantization plan does not fit the model (unknown layer name, wrong slot)."""


class CostModelError(HqrunError, ValueError):
    """The cost model cannot price a layer or quantizer."""


class FirmwareError(HqrunError, RuntimeError):
    """The firmware cannot reproduce the model exactly, or its build/simulation failed."""


class ToolMissingError(FirmwareError):
    """An external program a firmware step needs (a simulator, a synthesis tool) is not installed;
    the message names the package. The step carries on without that part where it can."""


class SearchError(HqrunError, ValueError):
    """A search space, objective or scheduler setting is invalid."""


class ModelFileError(HqrunError, ValueError):
    """A model or checkpoint file cannot be read as data (it needs pickled code, is truncated,
    or holds something other than tensors and plain values)."""


class StorageError(HqrunError):
    """An artefact could not be written: the disk is full or the directory is read-only."""


class RunDirError(HqrunError, ValueError):
    """An output directory holds a finished run (or another command's run) that must not be
    overwritten, or another hqrun command is writing into it right now."""


class InterchangeError(HqrunError, ValueError):
    """A model cannot be exported to, or imported from, QONNX exactly."""
