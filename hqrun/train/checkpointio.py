"""Lightning's checkpoint writer, made atomic with :mod:`hqrun.atomic`.

Lightning's own ``_atomic_save`` goes through an fsspec transaction whose temporary file lives
in the system temp directory; committing it is a copy across file systems, neither atomic nor
fsynced, so a full disk or a kill can leave a truncated ``best.ckpt`` under its final name.
This plugin writes the same bytes with :func:`hqrun.atomic.torch_save` instead (temporary file
next to the checkpoint, fsync, rename), and turns a full disk into hqrun's one-paragraph error.
"""

from __future__ import annotations

from typing import Any, Optional

from pytorch_lightning.plugins import TorchCheckpointIO

from hqrun import atomic


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose ``save_checkpoint`` is an atomic rename into place."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options.")
        atomic.torch_save(checkpoint, path)
