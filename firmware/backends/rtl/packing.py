"""Integer codes ↔ the packed bit vectors of the design's ports, for a whole batch at once.

Why: alkaid packs a port as the concatenation of its elements, element 0 in the lowest bits,
each element as narrow as its own (signed, integer, fractional) format — which differs from
element to element (an output that is always ≥ 0 loses its sign bit, a per-element grid gives
each output its own width). The testbench exchanges one hex line per sample with the simulator;
this module turns code matrices into those lines and back, vectorised in numpy so the whole
test split is packed in well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from hqrun.errors import FirmwareError

__all__ = ["Field", "PortLayout", "pack_hex", "unpack_hex"]

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


@dataclass(frozen=True)
class Field:
    """One element of a port: two's complement when ``signed``; ``fractional`` bits right of the
    binary point; ``width = signed + integers + fractional`` bits (0: a constant zero)."""

    signed: bool
    integers: int
    fractional: int

    @property
    def width(self) -> int:
        return max(int(self.signed) + self.integers + self.fractional, 0)


@dataclass(frozen=True)
class PortLayout:
    """The elements of one port in order (element 0 at bit 0)."""

    fields: tuple[Field, ...]

    @classmethod
    def from_precisions(cls, precisions: Sequence[Sequence[int]]) -> "PortLayout":
        return cls(tuple(Field(bool(p[0]), int(p[1]), int(p[2])) for p in precisions))

    @property
    def width(self) -> int:
        return sum(f.width for f in self.fields)

    @property
    def offsets(self) -> list[int]:
        out, pos = [], 0
        for f in self.fields:
            out.append(pos)
            pos += f.width
        return out

    def to_list(self) -> list[list[int]]:
        return [[int(f.signed), f.integers, f.fractional] for f in self.fields]


def _n_hex(width: int) -> int:
    return max((width + 3) // 4, 1)


def pack_hex(codes: np.ndarray, frac: int, layout: PortLayout) -> list[str]:
    """Rows of integer codes (``frac`` fractional bits) → one hex string per row for ``$readmemh``."""
    c = np.asarray(codes, dtype=np.int64).reshape(codes.shape[0], -1)
    if c.shape[1] != len(layout.fields):
        raise FirmwareError(f"the design's input port has {len(layout.fields)} elements, the samples "
                            f"{c.shape[1]}; the project does not belong to this model.")
    n = c.shape[0]
    width = 4 * _n_hex(layout.width)
    bits = np.zeros((n, width), dtype=np.uint8)
    for j, (field, off) in enumerate(zip(layout.fields, layout.offsets)):
        if field.width == 0:
            continue
        shift = field.fractional - frac
        v = c[:, j] << shift if shift >= 0 else c[:, j] >> (-shift)
        v = v & ((np.int64(1) << field.width) - 1) if field.width < 63 else v
        for b in range(field.width):
            bits[:, off + b] = (v >> b) & 1
    nibbles = bits.reshape(n, -1, 4) @ np.array([1, 2, 4, 8], dtype=np.uint8)
    chars = _HEX[nibbles[:, ::-1]]
    return [row.tobytes().decode("ascii") for row in chars]


def unpack_hex(lines: Sequence[str], layout: PortLayout, frac: int | Sequence[int], what: str) -> np.ndarray:
    """Hex lines written by the testbench → integer codes with ``frac`` fractional bits (one
    number for every element, or one per element).

    Raises:
        FirmwareError: a line is malformed or holds undefined (x/z) bits.
    """
    n_hex = _n_hex(layout.width)
    rows = [ln.strip().lower() for ln in lines if ln.strip()]
    if any(len(r) != n_hex for r in rows):
        raise FirmwareError(f"{what}: the simulator wrote lines of an unexpected length (expected "
                            f"{n_hex} hex digits); the testbench and the design disagree.")
    if any(set(r) - set("0123456789abcdef") for r in rows):
        bad = next(i for i, r in enumerate(rows) if set(r) - set("0123456789abcdef"))
        raise FirmwareError(f"{what}: the design output undefined (x/z) bits for sample {bad}; the "
                            "generated Verilog is incomplete or its latency is not what the "
                            "project records.")
    n = len(rows)
    if n == 0:
        return np.zeros((0, len(layout.fields)), dtype=np.int64)
    raw = np.frombuffer("".join(rows).encode("ascii"), dtype=np.uint8).reshape(n, n_hex)
    nib = np.where(raw >= ord("a"), raw - ord("a") + 10, raw - ord("0")).astype(np.uint8)
    bits = ((nib[:, ::-1, None] >> np.arange(4, dtype=np.uint8)) & 1).reshape(n, -1).astype(np.int64)
    out = np.zeros((n, len(layout.fields)), dtype=np.int64)
    fracs = np.broadcast_to(np.asarray(frac, dtype=np.int64), (len(layout.fields),))
    for j, (field, off) in enumerate(zip(layout.fields, layout.offsets)):
        if field.width == 0:
            continue
        v = np.zeros(n, dtype=np.int64)
        for b in range(field.width):
            v |= bits[:, off + b] << b
        if field.signed:
            v = np.where(v >> (field.width - 1) & 1, v - (np.int64(1) << field.width), v)
        shift = int(fracs[j]) - field.fractional
        if shift < 0:
            if np.any(v & ((np.int64(1) << -shift) - 1)):
                raise FirmwareError(f"{what}: output element {j} has {field.fractional} fractional "
                                    f"bits, finer than the layer's type ({int(fracs[j])}).")
            v = v >> (-shift)
        else:
            v = v << shift
        out[:, j] = v
    return out
