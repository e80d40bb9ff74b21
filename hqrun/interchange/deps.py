"""The interchange extra's packages, checked once with a message that says how to install them.

Why: onnx and qonnx are an optional extra (``pip install -e '.[interchange]'``, installed by
scripts/install.sh); without them hqrun works except for QONNX, and a user calling it should read
how to add them, not a ModuleNotFoundError from deep inside a transformation.
"""

from __future__ import annotations

from hqrun.errors import InterchangeError

__all__ = ["require_qonnx"]


def require_qonnx() -> None:
    """Raise :class:`InterchangeError` naming the missing package unless onnx and qonnx import."""
    try:
        import onnx  # noqa: F401
        import qonnx  # noqa: F401
    except ImportError as err:
        raise InterchangeError(
            f"QONNX interchange needs the packages onnx and qonnx ({err.name} is missing); install "
            "hqrun's interchange extra: pip install -c constraints.txt -e '.[interchange]' "
            "(scripts/install.sh does by default)."
        ) from None
