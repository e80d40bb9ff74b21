"""The report's opening section: which model to deploy for each goal, and what that means.

For each search goal (energy, bits, ...) the study built one searched model (QE, QB, ...). That
model is recommended unless another built model with bit-exact firmware is at least as accurate
*and* no dearer in that goal's unit (then that one is, and the section says why): a physicist
choosing firmware wants the best deployable trade-off, not the search's name for it. Accuracies
come with their binomial uncertainty; two models whose difference is inside it are called what
they are, indistinguishable on this test set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from hqrun.study.collect import GOAL_UNITS, GOAL_WORDS, ModelResult

#: The heading of each goal's recommendation.
GOAL_HEADINGS = {"energy": "Lowest energy", "bits": "Smallest size (bits)",
                 "ebops": "Fewest EBOPs", "lut": "Fewest LUTs (RTL build)"}

__all__ = ["Recommendation", "recommend", "deploy_markdown"]


@dataclass
class Recommendation:
    goal: str
    model: ModelResult
    searched: Optional[ModelResult]    # the goal's own searched model
    reason: str


def _deployable(models: Sequence[ModelResult]) -> list[ModelResult]:
    built = [m for m in models if m.deployed_build().bit_exact and m.test_accuracy is not None]
    return built or [m for m in models if m.test_accuracy is not None]


def _dominates(a: ModelResult, b: ModelResult, goal: str) -> bool:
    ca, cb = a.goal_cost(goal), b.goal_cost(goal)
    if ca is None or cb is None:
        return False
    return (a.test_accuracy >= b.test_accuracy and ca <= cb
            and (a.test_accuracy > b.test_accuracy or ca < cb))


def recommend(goal: str, models: Sequence[ModelResult]) -> Optional[Recommendation]:
    """The model to deploy for ``goal`` (None when no model has an accuracy and a cost)."""
    pool = [m for m in _deployable(models) if m.goal_cost(goal) is not None]
    if not pool:
        return None
    searched = next((m for m in models if m.goal == goal), None)
    if searched is not None and searched in pool:
        better = [m for m in pool if m is not searched and _dominates(m, searched, goal)]
        if not better:
            return Recommendation(goal, searched, searched,
                                  f"no other built model is as accurate at the same or a lower "
                                  f"{GOAL_WORDS.get(goal, goal)}")
        best = min(better, key=lambda m: (m.goal_cost(goal), -m.test_accuracy))
        return Recommendation(goal, best, searched,
                              f"{best.label} is at least as accurate as {searched.label} and no "
                              f"dearer in {GOAL_WORDS.get(goal, goal)}, so it replaces it")
    front = [m for m in pool if not any(_dominates(o, m, goal) for o in pool if o is not m)]
    best = min(front, key=lambda m: (m.goal_cost(goal), -m.test_accuracy))
    return Recommendation(goal, best, searched, "the cheapest model no other built model beats")


def _rel(path: Optional[Path], root: Path) -> str:
    if path is None:
        return "—"
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _accuracy(m: ModelResult) -> str:
    sigma = m.sigma
    n = f" ({m.n_test:,} test samples)" if m.n_test else ""
    return (f"{m.test_accuracy:.4f} ± {sigma:.4f}{n}" if sigma is not None
            else f"{m.test_accuracy:.4f}{n}")


def _cost_line(m: ModelResult, goal: str) -> str:
    unit = GOAL_UNITS.get(goal, goal)
    cost = m.goal_cost(goal)
    text = f"{cost:,.0f} {unit} (estimated)"
    measured = m.synthesis_counts()
    if measured.get("lut") is not None:
        text += (f"; LUT {measured['lut']:,.0f}, FF {measured.get('ff', 0):,.0f}, DSP "
                 f"{measured.get('dsp', 0):,.0f} (measured by {measured.get('tool')})")
    elif m.cost.get("lut") is not None:
        latency = f"latency {m.cost.get('hls_latency_cycles', 0):,.0f} cycles"
        if m.cost.get("hls_latency_ns") is not None:
            latency += f" = {m.cost['hls_latency_ns']:,.0f} ns"
        text += (f"; LUT {m.cost['lut']:,.0f} (RTL build), DSP {m.cost.get('hls_dsp', 0):,.0f} and "
                 f"{latency} (hls4ml build) (estimated; no synthesis run)")
    return text


def _exactness(m: ModelResult) -> str:
    fw = m.deployed_build()
    if not fw.built:
        return f"no firmware ({fw.error or 'not built: study.firmware=false'})"
    if not fw.bit_exact:
        return "**no**: the simulation differs from the model (see the firmware report)"
    text = (f"yes, the simulation equals the PyTorch model bit for bit on {fw.n_samples:,} of "
            f"{fw.n_samples:,} test samples up to the logits") if fw.n_samples else "yes"
    if fw.argmax_agreement is not None and fw.argmax_agreement < 1.0:
        text += (f"; the output softmax is a lookup table (not required exact) that picks the "
                 f"model's class on {100 * fw.argmax_agreement:.1f} % of them")
        if fw.firmware_accuracy is not None and fw.model_accuracy is not None:
            text += (f", so on those samples the firmware's accuracy is "
                     f"{fw.firmware_accuracy:.4f} and the model's {fw.model_accuracy:.4f}")
    return text


def _firmware_line(m: ModelResult, root: Path) -> str:
    fw = m.deployed_build()
    if not fw.built:
        return "not built"
    where = _rel(fw.project_dir, root)
    tool = f"{fw.backend}" + (f" ({fw.vendor})" if fw.vendor and fw.backend == "hls4ml" else "")
    clock = f"{fw.clock_period_ns:g} ns clock" if fw.clock_period_ns else "clock —"
    return (f"`{where}` — {tool}, part {fw.part}, {clock}, reuse factor "
            f"{fw.reuse_factor if fw.reuse_factor is not None else '—'}")


def _alternatives(rec: Recommendation, models: Sequence[ModelResult]) -> str:
    """The other built models in this goal's unit, relative to the recommendation."""
    chosen, goal = rec.model, rec.goal
    base = chosen.goal_cost(goal)
    parts = []
    for m in models:
        if m is chosen or m.test_accuracy is None or m.goal_cost(goal) is None or not base:
            continue
        diff = m.test_accuracy - chosen.test_accuracy
        joint = math.hypot(m.sigma or 0.0, chosen.sigma or 0.0)
        same = f" (accuracy within 1σ of {chosen.label}'s)" if joint and abs(diff) <= joint else ""
        parts.append(f"{m.label} {m.test_accuracy:.4f} at {m.goal_cost(goal) / base:.2g}× the "
                     f"{GOAL_WORDS.get(goal, goal)}{same}")
    return "; ".join(parts)


def deploy_markdown(recs: Sequence[Recommendation], models: Sequence[ModelResult],
                    root: Path) -> list[str]:
    """The "Deploy this" section: per goal, the model and what a physicist needs to use it."""
    lines = ["## Deploy this", ""]
    if not recs:
        return lines + ["No model has both a test accuracy and a cost yet.", ""]
    for rec in recs:
        m = rec.model
        word = GOAL_WORDS.get(rec.goal, rec.goal)
        lines += [f"### {GOAL_HEADINGS.get(rec.goal, 'Lowest ' + word)}: {m.label}", ""]
        lines.append(f"- why: {rec.reason}")
        lines.append(f"- what: {m.description}")
        lines.append(f"- test accuracy: {_accuracy(m)}")
        lines.append(f"- {word}: {_cost_line(m, rec.goal)}")
        lines.append(f"- firmware project: {_firmware_line(m, root)}")
        fw = m.deployed_build()
        if fw.built and fw.synthesis_status != "done" and fw.synthesis_command:
            lines.append(f"- synthesis: not run here (no vendor tool); to run it: "
                         f"`{fw.synthesis_command}`")
        lines.append(f"- bit-exact: {_exactness(m)}")
        if m.training.get("still_improving"):
            lines.append(f"- training: its best epoch was the last of {m.training.get('epochs_run')}"
                         " (still improving when the budget ended; trainer.max_epochs could be "
                         "raised)")
        alternatives = _alternatives(rec, models)
        if alternatives:
            lines.append(f"- the other models: {alternatives}")
        lines.append("")
    return lines
