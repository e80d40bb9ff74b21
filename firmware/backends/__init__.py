"""Firmware backends, registered by name: each turns the fixed-point IR into a project it can
write, simulate bit for bit, synthesise and describe.

Why a registry: hqrun builds the same verified IR for several targets (an hls4ml HLS project, a
Verilog design); :func:`hqrun.firmware.export` runs the same steps for each — write, simulate,
compare with hqrun's integer emulation, synthesise, report — and only the backend differs. A new
backend is one class with the methods of :class:`Backend`, registered with
:func:`register_backend`; nothing else changes.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from hqrun.errors import FirmwareError

__all__ = ["Backend", "SimResult", "register_backend", "get_backend", "backend_names"]


@dataclass
class SimResult:
    """A simulation's outputs: per-IR-layer integer codes (where the backend can trace them),
    float outputs of layers off any grid (softmax), the final output and timing."""

    codes: dict[str, np.ndarray]
    floats: dict[str, np.ndarray]
    output: np.ndarray
    compile_s: float
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    """What :func:`hqrun.firmware.export` asks of a backend (``options`` is the ExportConfig)."""

    name: str

    def validate(self, options: Any) -> None:
        """Refuse (FirmwareError) settings this backend cannot use, before any work."""

    def check(self, ir: Any, options: Any) -> None:
        """Refuse (FirmwareError) what this backend cannot build exactly, before any file."""

    def write(self, ir: Any, project_dir: Path, options: Any) -> Any:
        """Write the project into ``project_dir``; return a handle for the later steps."""

    def simulate(self, project: Any, ir: Any, x: np.ndarray) -> SimResult:
        """Run samples ``x`` (values on the input grid) through the written design."""

    def synthesise(self, project: Any, options: Any) -> dict[str, Any]:
        """Synthesis results (``status`` done / not run / failed, counts, seconds, command)."""

    # Optional: ``diagnose(project, ir, emulation, x, samples) -> (layer, detail)`` names the first
    # divergent layer when the simulation can only be read at the output.

    def describe(self, project: Any, options: Any, synthesis: dict[str, Any]) -> dict[str, Any]:
        """Backend fields for report.json (tool versions, part, clock, what the design outputs,
        measured counts beside the backend's own estimate)."""

    def report_lines(self, report: dict[str, Any]) -> list[str]:
        """Markdown lines of the backend's own section of report.md."""


_REGISTRY: dict[str, Callable[[], Backend]] = {}

#: Backends shipped with hqrun, imported on first use (so importing hqrun.firmware stays light).
_BUILT_IN = {"hls4ml": "hqrun.firmware.backends.hls4ml", "rtl": "hqrun.firmware.backends.rtl"}


def register_backend(name: str) -> Callable[[type], type]:
    """Class decorator: make ``name`` (e.g. ``firmware.backend=name``) build with this class."""

    def add(cls: type) -> type:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return add


def backend_names() -> list[str]:
    """Every backend a user can choose: the registered ones and the shipped ones."""
    return sorted(set(_REGISTRY) | set(_BUILT_IN))


def get_backend(name: str) -> Backend:
    """A fresh instance of backend ``name``, or one paragraph listing the valid names."""
    if name not in _REGISTRY and name in _BUILT_IN:
        importlib.import_module(_BUILT_IN[name])
    factory = _REGISTRY.get(name)
    if factory is None:
        raise FirmwareError(
            f"firmware backend {name!r} is unknown; choose one of {', '.join(backend_names())} "
            "(e.g. firmware.backend=rtl for Verilog, firmware.backend=hls4ml for an HLS project)."
        )
    return factory()
