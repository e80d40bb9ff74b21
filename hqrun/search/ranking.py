"""Ranking a search's trials: the best, the top k with distinct plans, what "same model" means.

Plain functions on journal records, shared by the result writers, the block scheduler and the
study's candidate selection.
"""

from __future__ import annotations

import json

from hqrun.search.journal import scored_trials

__all__ = ["plan_key", "ranked_records", "best_record"]


def plan_key(record: dict) -> str:
    """What makes two trials the same model: their plan and layer widths, as canonical text."""
    return json.dumps([record.get("plan"), record.get("widths") or {}], sort_keys=True, default=str)


def ranked_records(records: list[dict], k: int) -> list[dict]:
    """The ``k`` best-scoring trials with distinct plans, best first: completed trials before
    early-stopped ones (a stopped trial's accuracy is from fewer epochs), then by score."""
    out: list[dict] = []
    seen: set[str] = set()
    for statuses in (("ok",), ("stopped",)):
        group = scored_trials(records, statuses)
        for r in sorted(group, key=lambda r: (r["score"], r["accuracy"], -r["cost"]), reverse=True):
            key = plan_key(r)
            if key not in seen and len(out) < k:
                seen.add(key)
                out.append(r)
    return out


def best_record(records: list[dict]) -> dict | None:
    """Highest score among completed trials (early-stopped ones only if none completed)."""
    ranked = ranked_records(records, 1)
    return ranked[0] if ranked else None
