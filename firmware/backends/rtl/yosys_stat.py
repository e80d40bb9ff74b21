"""Parse Yosys's ``stat`` report into the resource counts hqrun reports.

Why a parser that accepts both layouts: Yosys 0.23 (Debian) prints ``   CARRY4     652`` (name,
then count) under ``Number of cells:``; recent Yosys (0.70, yowasp) prints ``   652   CARRY4``
in a table. Cell names differ by family and version too (LUT1..LUT6, CARRY4/CARRY8, DSP48E1/
DSP48E2, RAMB18E1/RAMB36E2, ...), so counts are summed by prefix, and every raw cell count is
kept beside the sums so nothing is lost when a new cell appears.
"""

from __future__ import annotations

import re

from hqrun.errors import FirmwareError

__all__ = ["parse_stat", "summarise_cells"]

_CELL = r"(\$?[A-Za-z_][A-Za-z0-9_$.:]*)"
_COUNT_FIRST = re.compile(rf"^\s*(\d+)\s+{_CELL}\s*$")
_NAME_FIRST = re.compile(rf"^\s*{_CELL}\s+(\d+)\s*$")
_NOT_CELLS = re.compile(r"wire|port|memor|process|cells|bits|chip area", re.IGNORECASE)


def parse_stat(text: str) -> dict[str, int]:
    """Cell type → count from the last ``=== <module> ===`` section of a ``stat`` output."""
    sections = re.split(r"^\s*===\s*(.+?)\s*===\s*$", text, flags=re.MULTILINE)
    if len(sections) < 3:
        raise FirmwareError("Yosys's stat output has no '=== module ===' section; the synthesis "
                            "log is incomplete (see synth.log in the project).")
    body = sections[-1]
    cells: dict[str, int] = {}
    for line in body.splitlines():
        if _NOT_CELLS.search(line) or "=" in line:
            continue
        m = _COUNT_FIRST.match(line)
        if m:
            count, name = int(m.group(1)), m.group(2)
        else:
            m = _NAME_FIRST.match(line)
            if not m:
                continue
            name, count = m.group(1), int(m.group(2))
        cells[name] = cells.get(name, 0) + count
    return cells


def _sum(cells: dict[str, int], pattern: str) -> int:
    rx = re.compile(pattern)
    return sum(n for name, n in cells.items() if rx.fullmatch(name))


def summarise_cells(cells: dict[str, int]) -> dict[str, float | int]:
    """The report's counts: ``lut`` (LUT1-6), ``ff`` (FD*), ``carry`` (CARRY4/8 cells), ``dsp``,
    ``bram`` (in 18 Kb units, as hls4ml's BRAM_18K: RAMB36 = 2), ``lutram``, ``muxf`` and ``inv``
    (Yosys keeps inverters as INV cells; Vivado would fold most into LUTs, so they are listed
    apart rather than added to ``lut``)."""
    return {
        "lut": _sum(cells, r"LUT[1-6](_2)?"),
        "ff": _sum(cells, r"FD\w*"),
        "carry": _sum(cells, r"CARRY\d+"),
        "dsp": _sum(cells, r"DSP\w*"),
        "bram": 2 * _sum(cells, r"RAMB36\w*") + _sum(cells, r"RAMB18\w*"),
        "lutram": _sum(cells, r"RAM(32|64|128|256)\w*"),
        "muxf": _sum(cells, r"MUXF\d"),
        "inv": _sum(cells, r"INV"),
    }
