"""Import third-party firmware tools that expect the PyPI package ``quantizers``.

hls4ml (and da4ml) import a top-level PyPI package named ``quantizers``. Run from hqrun's
repository root (a notebook there, ``python -m pytest``), the checkout's own ``quantizers/``
folder is first on ``sys.path`` and shadows it. :func:`import_unshadowed` imports such a tool
with those entries masked, so the right ``quantizers`` is the one that gets cached.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
from types import ModuleType

from hqrun.errors import FirmwareError

__all__ = ["import_unshadowed"]


def _shadows(entry: str) -> bool:
    base = entry or os.getcwd()
    return os.path.isfile(os.path.join(base, "quantizers", "fixedpoint.py"))


def import_unshadowed(module: str, install_hint: str) -> ModuleType:
    """Import ``module`` with hqrun's checkout masked from ``sys.path`` (its stdout silenced).

    ``install_hint`` ends the error paragraph when the module is missing (e.g. the pip command).
    """
    if module in sys.modules:
        return sys.modules[module]
    cached = sys.modules.get("quantizers")
    if cached is not None and not hasattr(cached, "get_fixed_quantizer_np"):
        for key in [k for k in sys.modules if k == "quantizers" or k.startswith("quantizers.")]:
            del sys.modules[key]
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if not _shadows(p)]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return importlib.import_module(module)
    except ImportError as err:
        raise FirmwareError(f"{module} could not be imported ({err}); {install_hint}") from None
    finally:
        sys.path[:] = saved
