"""Labels that stay inside their axes: the one placement rule every hqrun plot uses.

Why: matplotlib's ``annotate`` puts text where it is told, also across the axes border (the
study plot's "BF" ran off its right edge and "QB" over its top). :func:`place_labels` tries a
few offsets around each point and keeps the first whose rendered extent lies inside the axes
and off the labels placed before it; tests check the result with the renderer's extents.
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["place_labels", "outside_area"]


#: Where a label may go relative to its point: (dx, dy) in points and the text alignment.
_OFFSETS = ((7, 5, "left", "bottom"), (7, -5, "left", "top"), (-7, 5, "right", "bottom"),
            (-7, -5, "right", "top"), (0, 10, "center", "bottom"), (0, -10, "center", "top"))


def outside_area(inner: Any, outer: Any) -> float:
    """Area of the box ``inner`` that lies outside ``outer`` (display units)."""
    w = max(0.0, min(inner.x1, outer.x1) - max(inner.x0, outer.x0))
    h = max(0.0, min(inner.y1, outer.y1) - max(inner.y0, outer.y0))
    return inner.width * inner.height - w * h


def place_labels(ax: Any, renderer: Any, items: Sequence[tuple[float, float, str]],
                 fontsize: float = 9, fontweight: str = "bold") -> list:
    """Annotate each point with the first offset that keeps the text inside the axes and off
    the labels already placed (the least-bad one when none does). Call it after the axes'
    limits and the figure layout are final (they move the text)."""
    box = ax.get_window_extent(renderer)
    placed: list = []
    texts = []
    for x, y, text in items:
        best = None
        for dx, dy, ha, va in _OFFSETS:
            ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points",
                              ha=ha, va=va, fontsize=fontsize, fontweight=fontweight, zorder=6)
            ext = ann.get_window_extent(renderer)
            clash = any(ext.overlaps(other) for other in placed)
            bad = outside_area(ext, box) + (1e6 if clash else 0.0)
            if best is None or bad < best[0]:
                if best is not None:
                    best[1].remove()
                best = (bad, ann, ext)
            else:
                ann.remove()
            if bad == 0.0:
                break
        placed.append(best[2])
        texts.append(best[1])
    return texts
