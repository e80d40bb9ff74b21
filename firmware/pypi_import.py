"""Import a third-party package that needs PyPI's ``quantizers``, even from hqrun's checkout.

Why: hls4ml, alkaid and da4ml import the top-level PyPI package ``quantizers``. Run from hqrun's
repository root (a notebook there, ``python -m pytest``), the checkout's own ``quantizers/``
folder is first on ``sys.path`` and shadows it, and the import fails deep inside the package.
Importing with such ``sys.path`` entries masked caches the right ``quantizers`` in
``sys.modules``, so every later import (lazy ones included) finds it. hqrun itself always imports
its own folder as ``hqrun.quantizers``, so masking never hides hqrun code.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
from types import ModuleType

from hqrun.errors import FirmwareError

__all__ = ["import_beside_checkout"]


def _shadows(entry: str) -> bool:
    """True when ``entry`` (a ``sys.path`` item; '' is the cwd) holds hqrun's ``quantizers/``."""
    base = entry or os.getcwd()
    return os.path.isfile(os.path.join(base, "quantizers", "fixedpoint.py"))


def _drop_shadowed_quantizers() -> None:
    """Forget a ``quantizers`` module that is hqrun's folder rather than the PyPI package."""
    cached = sys.modules.get("quantizers")
    if cached is not None and not hasattr(cached, "get_fixed_quantizer_np"):
        for key in [k for k in sys.modules if k == "quantizers" or k.startswith("quantizers.")]:
            del sys.modules[key]


def import_beside_checkout(name: str, install_hint: str, quiet: bool = False) -> ModuleType:
    """Import module ``name`` with hqrun's checkout masked from ``sys.path``.

    Args:
        name: the module to import (e.g. ``"hls4ml"``, ``"alkaid"``).
        install_hint: how to install it, quoted in the error when it is missing.
        quiet: swallow what the import prints on stdout (hls4ml prints banners).

    Raises:
        FirmwareError: the package is not installed (or its import fails), naming the fix.
    """
    if name in sys.modules:
        return sys.modules[name]
    _drop_shadowed_quantizers()
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if not _shadows(p)]
    try:
        sink = contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext()
        with sink:
            return importlib.import_module(name)
    except ImportError as err:
        raise FirmwareError(f"{name} could not be imported ({err}); install it with "
                            f"{install_hint}.") from None
    finally:
        sys.path[:] = saved
