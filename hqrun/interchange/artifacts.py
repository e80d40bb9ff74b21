"""Atomic writes for the export and import artefacts.

Why: a reader (a later hqrun command, FINN, hls4ml) must never find a half-written model.onnx or
report under its final name. Each file goes to a temporary name in the same directory, is
flushed and fsynced, and is renamed over the final name (``os.replace``, atomic within one file
system); a directory of artefacts is assembled under a temporary name and renamed into place.

(A shared helper for this is being written for all of hqrun; these few functions are local until
it lands, and can be swapped for it one to one.)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["write_bytes", "write_text", "write_json", "write_yaml", "write_torch", "replace_dir"]


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=1, sort_keys=False) + "\n")


def write_yaml(path: str | os.PathLike, data: Any) -> Path:
    import yaml

    return write_text(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def write_torch(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save`` of tensors and plain data, atomically (loadable with weights_only=True)."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_bytes(path, buffer.getvalue())


def replace_dir(src: Path, dst: Path, marker: str) -> None:
    """Move the finished directory ``src`` to ``dst``; an existing ``dst`` is replaced only when
    it holds ``marker`` (a file an earlier run of the same command wrote)."""
    if dst.exists():
        if not dst.is_dir() or (any(dst.iterdir()) and not (dst / marker).exists()):
            raise FileExistsError(dst)
        old = dst.parent / f".{dst.name}.old-{os.getpid()}"
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
        return
    os.replace(src, dst)
