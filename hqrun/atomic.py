"""Atomic artefact writes and an append-only, fsynced journal.

Why: a run directory is the record of a run, and later commands trust what they find there. A
file written in place can be left truncated under its final name (disk full, a kill, a power
cut), and a reader then sees a plausible but wrong artefact. So every artefact is written to a
temporary file in the same directory, flushed and fsynced, and renamed over the final name
(``os.replace`` is atomic within one file system): a reader sees the old file or the new one,
never half of one. A failed write removes its temporary file and leaves the old artefact alone.

Disk full and read-only directories become :class:`hqrun.errors.StorageError`, one paragraph
that names the directory and the space the write needed, instead of a traceback.

Stdlib only at import time; torch and matplotlib are imported inside the helpers that need them,
so ``hqrun.firmware`` and ``hqrun.models`` can use this module from a notebook.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hqrun.errors import StorageError

__all__ = ["write_bytes", "write_text", "write_json", "write_yaml", "torch_save", "savefig",
           "append_line", "replace_dir", "storage_error", "is_storage_error"]

#: errno values that mean "no space" and "not writable here".
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


def is_storage_error(err: BaseException) -> bool:
    """True for an OSError that means the disk is full or the place is not writable."""
    return isinstance(err, OSError) and err.errno in (_NO_SPACE | _READ_ONLY)


def storage_error(err: OSError, path: str | os.PathLike | None, needed: int | None = None
                  ) -> StorageError:
    """The one-paragraph hqrun error for a failed write of ``path`` (``needed`` bytes).

    ``path`` may be None for an error raised inside a library that did not name its file; the
    message then names the current directory's file system.
    """
    target = Path(path) if path else Path.cwd() / "(a file)"
    directory = target.parent
    details = []
    if needed is not None:
        details.append(f"this write needed {_size(needed)}")
    if err.errno in _NO_SPACE:
        free = _free_bytes(directory)
        if free is not None:
            details.append(f"{_size(free)} free")
        detail = f" ({', '.join(details)})" if details else ""
        return StorageError(
            f"could not write {target.name} in {directory}: the file system is full{detail}. "
            "Files written before are intact. Free some space there (or choose another output "
            "directory with hydra.run.dir=... / out_dir=...) and rerun the same command; a "
            "search resumes where it stopped."
        )
    details.insert(0, os.strerror(err.errno or errno.EACCES))
    return StorageError(
        f"could not write {target.name} in {directory}: the directory is not writable "
        f"({', '.join(details)}). Files written before are intact. Make it writable, or choose "
        "another output directory with hydra.run.dir=... / out_dir=..., and rerun the same "
        "command."
    )


def write_bytes(path: str | os.PathLike, data: bytes, *, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` atomically.

    The bytes go to ``.<name>.<random>.tmp`` in the same directory (so the rename never crosses
    file systems) through ``os.write``, are fsynced, and the file is renamed over ``path``; the
    directory is fsynced after the rename so the new name survives a power cut.
    """
    target = Path(path)
    directory = target.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as err:
        if is_storage_error(err):
            raise storage_error(err, target, len(data)) from None
        raise
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp_name, mode if mode is not None else _default_mode(target))
        os.replace(tmp_name, target)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        if isinstance(err, OSError) and is_storage_error(err):
            raise storage_error(err, target, len(data)) from None
        raise
    _fsync_dir(directory)
    return target


def write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` atomically."""
    return write_bytes(path, text.encode(encoding))


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2, **dumps: Any) -> Path:
    """Write ``obj`` as JSON (with a final newline) atomically."""
    return write_text(path, json.dumps(obj, indent=indent, **dumps) + "\n")


def write_yaml(path: str | os.PathLike, obj: Any, **dump: Any) -> Path:
    """Write plain data as YAML (``yaml.safe_dump``) atomically."""
    import yaml

    dump.setdefault("sort_keys", False)
    dump.setdefault("default_flow_style", False)
    return write_text(path, yaml.safe_dump(obj, **dump))


def torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` atomically. Save plain data only (tensors, dicts, lists, numbers,
    strings), so that ``torch.load(weights_only=True)`` reads it back."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_bytes(path, buffer.getvalue())


def savefig(fig: Any, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Render a matplotlib figure to memory, then write it atomically (format from the suffix)."""
    kwargs.setdefault("format", Path(path).suffix.lstrip(".") or "png")
    buffer = io.BytesIO()
    fig.savefig(buffer, **kwargs)
    return write_bytes(path, buffer.getvalue())


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line to an append-only journal, fsynced before returning.

    A torn last line (a writer killed mid-line) is ended first so the new record starts on its
    own line. If the append itself fails (disk full), the file is cut back to its old length,
    so the journal never keeps half a record from this call.
    """
    target = Path(path)
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as err:
        if is_storage_error(err):
            raise storage_error(err, target, len(data)) from None
        raise
    try:
        size = os.fstat(fd).st_size
        if size > 0 and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        try:
            _write_all(fd, data)
            os.fsync(fd)
        except OSError as err:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
                os.fsync(fd)
            if is_storage_error(err):
                raise storage_error(err, target, len(data)) from None
            raise
    finally:
        os.close(fd)


def replace_dir(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Move the finished directory ``src`` to ``dst``, replacing an older ``dst``.

    The old ``dst`` is renamed aside first and removed only after ``src`` is in place, so a
    crash leaves either the old or the new directory under ``dst`` (plus a ``.old`` sibling
    to clean up), never none.
    """
    src, dst = Path(src), Path(dst)
    aside = None
    if dst.exists():
        aside = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, aside)
    try:
        os.replace(src, dst)
    except BaseException:
        if aside is not None:
            os.replace(aside, dst)
        raise
    _fsync_dir(dst.parent)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _default_mode(target: Path) -> int:
    """Keep an existing file's permissions; new files get 0o666 minus the umask (as open())."""
    try:
        return target.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _free_bytes(directory: Path) -> int | None:
    for candidate in (directory, *directory.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def _size(n: int) -> str:
    """Bytes for people: 812 B, 21.2 kB, 3.4 MB, 1.2 GB."""
    if n < 1000:
        return f"{n} B"
    for unit in ("kB", "MB", "GB"):
        n /= 1000
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}"
    return f"{n} B"  # pragma: no cover
