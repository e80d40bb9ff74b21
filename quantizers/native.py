"""The quantizers' fused C loops (``quantizer_kernels.c``): built once, cached, optional.

Why: a learned quantizer's training step is a dozen full passes over the batch in eager torch
(bench/learned_throughput.py measured the learned jet model at 0.39-0.44x Q6's training speed);
one C loop forward and one backward do the same arithmetic with the same results. QKeras's
quantized_bits and quantized_relu fast paths use two more loops for their rounding residue. Why not a
torch C++ extension: that build needs torch's headers and ninja and takes a minute; this file is
plain C99, compiled by the system C compiler in well under a second and called through ctypes.

Nothing here is required: without a C compiler (or with ``HQRUN_NATIVE=0``) the quantizers run
their torch code, which computes the same values. The compiled library lives in a cache
directory keyed by a hash of the source, the compiler flags and the machine, written atomically
(compiled to a temporary name, then renamed), so concurrent processes (Ray trials) never load a
half-written file. The only file compiled is the one shipped beside this module; no user input
reaches the compiler, and no shell runs.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

__all__ = ["kernels", "kernels_for", "cache_dir", "SOURCE"]

log = logging.getLogger(__name__)

#: The C source, shipped with the package.
SOURCE = Path(__file__).with_name("quantizer_kernels.c")
#: Flags: IEEE results (no -ffast-math; no FMA contraction, so values equal torch's); no
#: trapping math, so the loops' comparisons become vector selects.
_FLAGS = ["-O3", "-fPIC", "-shared", "-std=c99", "-ffp-contract=off", "-fno-trapping-math",
          "-fno-math-errno"]
_COMPILE_TIMEOUT_S = 120

_FLOAT32 = torch.float32
_P = ctypes.c_void_p
_I64 = ctypes.c_int64
_I32 = ctypes.c_int32
_F = ctypes.c_float
#: name -> (argument types, return type)
_SIGNATURES = {
    "hq_sat_round_fwd": ([_P, _P, _P, _P, _I32, _P, _I64, _I64], _I32),
    "hq_sat_round_bwd": ([_P, _P, _P, _P, _I32, _P, _F, _P, _P, _P, _P, _I64, _I64], _I32),
    "hq_dense_ebops": ([_P, _P, _I64, _I64, _P, _I64, _P], ctypes.c_double),
    "hq_weight_round_fwd": ([_P, _P, _P, _P, _I64], None),
    "hq_weight_frac_grad": ([_P, _P, _P, _P, _P, _F, _I32, _P, _I64, _I64], None),
    "hq_bits_residue": ([_P, _P, _F, _F, _F, _F, _I64], None),
    "hq_relu_residue": ([_P, _P, _F, _F, _F, _F, _I32, _I64], None),
    "hq_bits_value": ([_P, _P, _F, _F, _F, _F, _I32, _I64], None),
    "hq_relu_value": ([_P, _P, _F, _F, _F, _F, _I32, _I64], None),
    "hq_relu_grad_": ([_P, _P, _F, _I64], None),
    "hq_tf_log2_round": ([_P, _P, _I32, _I64], None),
    "hq_channel_scale": ([_P, _P, _I64, _I64, _I32, _P], _I32),
    "hq_ternary": ([_P, _P, _I64, _I64, _I32, _I32, _P], _I32),
    "hq_binary": ([_P, _P, _I64, _I64, _I32, _I32, _P], _I32),
    "hq_bits_value_many": ([_I32, _P, _P, _P, _P], None),
    "hq_po2_value": ([_P, _P, _I32, _F, _I32, _I32, _F, _F, _I32, _I32, _I64], None),
}


def cache_dir() -> Path:
    """``HQRUN_CACHE_DIR`` or ``$XDG_CACHE_HOME/hqrun`` (default ``~/.cache/hqrun``), then
    ``kernels/``; a temporary directory when none of them is writable."""
    root = os.environ.get("HQRUN_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "hqrun")
    return Path(root) / "kernels"


def _machine_flags() -> list[str]:
    """Wider vectors where the CPU has them (the cache key includes the flags)."""
    if platform.machine() in ("x86_64", "AMD64"):
        try:
            if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
                return ["-mavx2"]
        except Exception:  # pragma: no cover - torch always answers on supported builds
            return []
    return []


def _compile(compiler: str, flags: list[str], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.stem + ".", suffix=".tmp.so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([compiler, *flags, "-o", tmp, str(SOURCE), "-lm"], check=True,
                       capture_output=True, timeout=_COMPILE_TIMEOUT_S)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _built(compiler: str, flags: list[str], name: str) -> Path:
    """The cached library, compiled first if missing; the temp dir when the cache is read-only."""
    target = cache_dir() / name
    if target.is_file():
        return target
    try:
        _compile(compiler, flags, target)
    except PermissionError:
        target = Path(tempfile.gettempdir()) / f"hqrun-kernels-{getattr(os, 'getuid', lambda: 0)()}" / name
        if not target.is_file():
            _compile(compiler, flags, target)
    return target


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    for name, (args, result) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = result
    return lib


@lru_cache(maxsize=1)
def kernels() -> ctypes.CDLL | None:
    """The compiled library, or None (no compiler, ``HQRUN_NATIVE=0``, or a failed build:
    the quantizers then run their torch code; the reason is logged once)."""
    if os.environ.get("HQRUN_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not compiler or not SOURCE.is_file():
        log.info("hqrun: no C compiler found; quantizers use their torch code (slower)")
        return None
    flags = _FLAGS + _machine_flags()
    key = hashlib.sha256(SOURCE.read_bytes() + repr((compiler, flags, platform.machine(),
                                                     platform.system())).encode()).hexdigest()[:16]
    try:
        return _load(_built(compiler, flags, f"quantizer_kernels-{key}.so"))
    except (OSError, subprocess.SubprocessError, AttributeError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        log.warning("hqrun: building the quantizers' C loops failed (%s%s); using their "
                    "torch code, which gives the same numbers more slowly", exc,
                    (": " + detail.decode(errors="replace")[:500]) if detail else "")
        return None


def kernels_for(x: Any) -> ctypes.CDLL | None:
    """The library when its loops can take tensor ``x`` (float32, on the CPU), else None."""
    if x.dtype != _FLOAT32 or x.device.type != "cpu":
        return None
    return kernels()
