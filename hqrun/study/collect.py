"""What the study report says, read back from the study directory (never recomputed from scratch).

The report only reads what the steps left behind (``metrics.json``, ``cost.json``,
``firmware/report.json``, each search's ``trials.csv`` and ``search_summary.json``), so it can
be rebuilt at any time with the same result. This module turns those files into plain records:
:class:`ModelResult` (one built model), :class:`SearchResult` (one goal's search and its front).
The renderers (``tables``, ``plots``, ``deploy``) only format these records.

Costs: every model's cost is its *deployed* cost (``cost.json``, written by
:func:`hqrun.cost.deployed.deployed_cost`, the same function the firmware report uses). Search
trials were ranked by the search under QTools's 8-bit-input convention; for this report their
plans are re-priced the same deployed way, so one axis holds one kind of number.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import yaml

#: A goal's key in a cost report's totals, its unit and what the number is.
GOAL_KEYS = {"energy": "energy", "bits": "size_bits", "ebops": "ebops", "lut": "lut"}
GOAL_UNITS = {"energy": "pJ per inference", "bits": "bits", "ebops": "EBOPs",
              "lut": "LUTs of the RTL build"}
GOAL_WORDS = {"energy": "energy", "bits": "size", "ebops": "EBOPs", "lut": "LUTs"}
#: Goals whose cost a plan alone determines (EBOPs count non-zero trained weights).
REPRICED_GOALS = ("energy", "bits")


def load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def number(value: Any) -> Optional[float]:
    """A finite float, or None for anything else (missing, NaN, text)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def binomial_sigma(accuracy: Optional[float], n: Optional[int]) -> Optional[float]:
    """One standard deviation of an accuracy measured on ``n`` independent samples."""
    if accuracy is None or not n:
        return None
    return math.sqrt(max(accuracy * (1.0 - accuracy), 0.0) / n)


@dataclass
class FirmwareInfo:
    """The firmware built for one model, as its report says (measured = simulation/synthesis)."""

    built: bool = False
    bit_exact: Optional[bool] = None
    error: str = ""
    project_dir: Optional[Path] = None
    report_dir: Optional[Path] = None
    backend: str = ""
    vendor: str = ""
    part: str = ""
    clock_period_ns: Optional[float] = None
    reuse_factor: Optional[int] = None
    input_type: str = ""
    n_samples: Optional[int] = None
    model_accuracy: Optional[float] = None
    firmware_accuracy: Optional[float] = None
    argmax_agreement: Optional[float] = None
    check_layer: str = ""
    synthesis_status: str = ""
    synthesis_command: str = ""
    measured: dict = field(default_factory=dict)    # lut, ff, dsp, latency_cycles, tool
    synthesis_seconds: Optional[float] = None       # the synthesis's own run time
    simulator: str = ""                             # what verified it (RTL: iverilog/verilator)
    estimate: dict = field(default_factory=dict)    # the report's estimated totals

    def verdict(self) -> str:
        """One table cell: bit-exact, NOT bit-exact, refused (first sentence) or not built."""
        if not self.built:
            return f"refused: {self.error.split('. ')[0]}" if self.error else "not built"
        return "bit-exact" if self.bit_exact else "**NOT bit-exact**"

    @classmethod
    def read(cls, fw_dir: Path, error_file: Path) -> "FirmwareInfo":
        report = load_json(fw_dir / "report.json")
        if not report:
            error = load_json(error_file).get("error", "")
            return cls(built=False, bit_exact=False if error else None, error=str(error))
        ver = report.get("verification") or {}
        acc = ver.get("accuracy") or {}
        config = report.get("config") or {}
        syn = report.get("synthesis") or {}
        return cls(
            built=True, bit_exact=report.get("status") == "PASSED",
            project_dir=Path(report["project_dir"]) if report.get("project_dir") else None,
            report_dir=fw_dir, backend=str(report.get("backend", "")),
            vendor=str(config.get("vendor", "")), part=str(config.get("part", "")),
            clock_period_ns=number(config.get("clock_period")),
            reuse_factor=int(config["reuse_factor"]) if config.get("reuse_factor") else None,
            input_type=str(report.get("input_type", "")), n_samples=ver.get("n_samples"),
            model_accuracy=number(acc.get("model")), firmware_accuracy=number(acc.get("firmware")),
            argmax_agreement=number((ver.get("softmax") or {}).get("argmax_agreement")),
            check_layer=str(ver.get("check_layer", "")),
            synthesis_status=str(syn.get("status", "")),
            synthesis_command=str(syn.get("command", "")),
            measured=measured_resources(syn),
            synthesis_seconds=number(syn.get("seconds")) if syn.get("status") == "done" else None,
            simulator=str(report.get("simulator") or ver.get("simulator") or ""),
            estimate=dict(((report.get("estimate") or {}).get("totals")) or {}))


def measured_resources(synthesis: Mapping[str, Any]) -> dict:
    """LUT/FF/DSP/latency a finished synthesis measured, under hqrun's key names.

    A backend reports them either as ``synthesis.resources`` (``lut``, ``ff``, ``dsp``,
    ``latency_cycles``: the form a new backend should use, e.g. Yosys counts of an RTL design)
    or, for hls4ml, as the vendor report's ``synthesis.report.summary`` (``LUT``, ``FF``,
    ``DSP``, ``BestLatency``). Nothing is returned unless the synthesis finished.
    """
    if synthesis.get("status") != "done":
        return {}
    out: dict = {}
    given = synthesis.get("resources") or {}
    summary = (synthesis.get("report") or {}).get("summary") or {}
    for key, vendor_key in (("lut", "LUT"), ("ff", "FF"), ("dsp", "DSP"),
                            ("latency_cycles", "BestLatency")):
        value = number(given.get(key, summary.get(vendor_key)))
        if value is not None:
            out[key] = value
    if out:
        out["tool"] = str(synthesis.get("tool") or "synthesis")
    return out


@dataclass
class ModelResult:
    """One model the study built: what it is, how good, what it costs, where its firmware is."""

    label: str
    directory: Path          # the run directory the row describes (BF: its post-training quantized copy)
    description: str
    goal: Optional[str]      # the search goal it answers (None for baselines)
    test_accuracy: Optional[float]
    n_test: Optional[int]
    val_accuracy: Optional[float]
    auc: dict
    cost: dict               # deployed cost totals (cost.json)
    cost_basis: dict
    firmware: FirmwareInfo
    training: dict           # best epoch (1-based), epochs run, max epochs, still improving
    plan: dict
    float_accuracy: Optional[float] = None   # BF: the float model itself
    #: Firmware of further backends (``study.backends`` after the first), by backend name,
    #: read from ``firmware_<backend>/``: e.g. the RTL build with its Yosys counts.
    builds: dict = field(default_factory=dict)

    @property
    def sigma(self) -> Optional[float]:
        return binomial_sigma(self.test_accuracy, self.n_test)

    def goal_cost(self, goal: str) -> Optional[float]:
        return number(self.cost.get(GOAL_KEYS.get(goal, goal)))

    def deployed_build(self) -> "FirmwareInfo":
        """The build this model deploys with: the main build when it is bit-exact, else the first
        further build that is (a learned-bits model, which hls4ml refuses, deploys as RTL)."""
        return next((fw for fw in (self.firmware, *self.builds.values()) if fw.bit_exact),
                    self.firmware)

    def synthesised_build(self) -> Optional["FirmwareInfo"]:
        """The first build (main build first, then ``builds``) with synthesis counts."""
        return next((fw for fw in (self.firmware, *self.builds.values()) if fw.measured), None)

    def synthesis_counts(self) -> dict:
        """LUT/FF/DSP/latency and tool of :meth:`synthesised_build` (empty when none)."""
        fw = self.synthesised_build()
        return dict(fw.measured) if fw is not None else {}

    def values(self) -> dict[str, Any]:
        """The numbers table columns look up by key (measured ones as ``measured_<key>``)."""
        out: dict[str, Any] = {"model": self.label, "test_accuracy": self.test_accuracy,
                               "test_sigma": self.sigma, **self.cost}
        out.update({f"measured_{k}": v for k, v in self.synthesis_counts().items() if k != "tool"})
        for name, fw in self.builds.items():
            out[f"{name}_firmware"] = fw.verdict()
            out[f"{name}_synthesis_s"] = fw.synthesis_seconds
        out.update({f"auc_{k}": v for k, v in self.auc.items()})
        return out


def _training(metrics: dict) -> dict:
    best = metrics.get("best_epoch")
    run = metrics.get("epochs_run")
    out = {"best_epoch": int(best) + 1 if isinstance(best, int) and best >= 0 else None,
           "epochs_run": run, "max_epochs": metrics.get("max_epochs"),
           "still_improving": bool(metrics.get("still_improving"))}
    if out["max_epochs"] is None and run:   # older runs: judge from the history alone
        out["still_improving"] = best == run - 1
    return out


def read_model(label: str, directory: Path, goal: Optional[str] = None,
               extra_backends: Sequence[str] = ()) -> ModelResult:
    """One model's record. BF (a float model) is described by what its firmware is built from:
    its weights post-training-quantized (``<dir>_ptq``), with the float model's accuracy noted.
    ``extra_backends``: the firmware of further backends, in ``firmware_<backend>/``."""
    ptq = directory.parent / f"{directory.name}_ptq"
    source = ptq if (ptq / "metrics.json").exists() else directory
    metrics = load_json(source / "metrics.json")
    test = metrics.get("test") or {}
    cost_file = load_json(source / "cost.json")
    plan_file = source / "plan.yaml"
    plan = (yaml.safe_load(plan_file.read_text()) or {}) if plan_file.exists() else {}
    description = _describe(label, plan, goal)
    float_acc = None
    training = _training(metrics)
    if source is ptq:
        float_metrics = load_json(directory / "metrics.json")
        float_acc = number((float_metrics.get("test") or {}).get("accuracy"))
        training = _training(float_metrics)     # the weights are the float model's training
        kernel = _hls_name((plan.get("default") or {}).get("kernel"))
        activation = _hls_name((plan.get("default") or {}).get("activation"))
        description = (f"the float model (test accuracy {float_acc:.4f}) as its firmware is "
                       f"built: its weights post-training quantized to {kernel}, activations to "
                       f"{activation}; this row is that model's" if float_acc is not None else
                       f"the float model, post-training quantized to {kernel}")
    fw = FirmwareInfo.read(source / "firmware", directory / "firmware_error.json")
    builds = {backend: FirmwareInfo.read(source / f"firmware_{backend}",
                                         directory / f"firmware_{backend}_error.json")
              for backend in extra_backends}
    return ModelResult(
        label=label, directory=source, description=description, goal=goal,
        test_accuracy=number(test.get("accuracy")), n_test=test.get("n"),
        val_accuracy=number((metrics.get("val") or {}).get("accuracy")),
        auc=dict(test.get("roc_auc") or {}), cost=dict(cost_file.get("totals") or {}),
        cost_basis=dict(cost_file.get("basis") or {}), firmware=fw,
        training=training, plan=plan, float_accuracy=float_acc,
        builds={k: v for k, v in builds.items() if v.built or v.error})


def _hls_name(spec: Any) -> str:
    """``quantized_bits(16,5,alpha=1)`` as the firmware type a physicist knows (ap_fixed<16,6>)."""
    try:
        from hqrun.quantizers import get

        fixed = get(str(spec)).fixed_point_type()
    except Exception:  # noqa: BLE001 - a spec the parser refuses is shown as written
        return str(spec)
    return f"{fixed.hls_name.split(',AP_')[0]}>" if fixed is not None else str(spec)


def _describe(label: str, plan: dict, goal: Optional[str]) -> str:
    if goal:
        return f"found by the search for {GOAL_WORDS.get(goal, goal)}, retrained in full"
    name = str(plan.get("name", label))
    if plan.get("beta") is not None:     # a learned-bits model (hqrun/study/learned.py)
        return (f"learned bit widths (β = {float(plan['beta']):g}, {name}): the β sweep's "
                "candidate with the best validation accuracy within this EBOPs budget, as trained")
    return "homogeneous " + name.upper().replace("Q", "") + "-bit quantization" \
        if name.lower().startswith("q") and name[1:].isdigit() else f"plan {name}"


# ----------------------------------------------------------------------------- searches
@dataclass
class Trial:
    """One search trial: validation accuracy after the search's epochs, its plan, both costs."""

    trial_id: str
    accuracy: Optional[float]
    learned: bool
    search_cost: Optional[float]     # as the search priced it (QTools's convention)
    plan: dict
    widths: dict
    cost: dict = field(default_factory=dict)   # re-priced as deployed (energy, size_bits)


@dataclass
class SearchResult:
    goal: str
    label: str                 # the model it produced (QE, QB, ...)
    directory: Path
    seed: Optional[int]
    epochs: Optional[int]
    cap: Optional[float]
    floor_rule: str
    trials: list[Trial]
    n_finished: int
    repriced: bool            # trial costs re-priced as deployed (else: as the search priced them)

    @property
    def learned(self) -> list[Trial]:
        return [t for t in self.trials if t.learned]

    @property
    def n_failed_to_learn(self) -> int:
        return self.n_finished - len(self.learned)


def read_search(goal: str, label: str, directory: Path, cap: Optional[float],
                reprice: Any = None) -> SearchResult:
    """A finished search's trials; ``reprice(plan, widths) -> totals`` re-prices the learned
    ones as deployed (None, or a goal such as EBOPs that depends on trained weights: each trial
    keeps the cost the search gave it)."""
    from hqrun.search.learning import LearningFloor

    summary = load_json(directory / "search_summary.json")
    floor = LearningFloor.from_dict(summary.get("learning_floor"))
    trials: list[Trial] = []
    finished = 0
    rows = []
    if (directory / "trials.csv").exists():
        with (directory / "trials.csv").open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    for row in rows:
        if row.get("status") not in ("ok", "stopped"):
            continue
        finished += 1
        acc = number(row.get("accuracy"))
        learned = (floor.learned(acc) if floor is not None
                   else str(row.get("learned", "True")).lower() != "false" and acc is not None)
        trial = Trial(str(row.get("trial_id")), acc, learned, number(row.get("cost")),
                      _json(row.get("plan")), _json(row.get("widths")))
        repriced = reprice is not None and goal in REPRICED_GOALS
        if learned and repriced:
            trial.cost = reprice(trial.plan, trial.widths)
        elif trial.search_cost is not None:
            trial.cost = {GOAL_KEYS.get(goal, goal): trial.search_cost}
        trials.append(trial)
    return SearchResult(goal, label, directory, summary.get("seed"),
                        summary.get("epochs_per_trial"), cap,
                        floor.describe() if floor else "", trials, finished,
                        reprice is not None and goal in REPRICED_GOALS)


def _json(text: Any) -> dict:
    try:
        value = json.loads(text) if text else {}
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def front(trials: list[Trial], goal: str) -> list[Trial]:
    """The learned trials no other learned trial beats on accuracy and deployed cost,
    cheapest first."""
    from hqrun.search.pareto import pareto_front

    key = GOAL_KEYS.get(goal, goal)
    usable = [t for t in trials if t.learned and number(t.cost.get(key)) is not None]
    idx = pareto_front([(float(t.accuracy), float(t.cost[key])) for t in usable])
    return [usable[i] for i in idx]


def spread_points(points: list[Trial], goal: str, limit: int) -> list[Trial]:
    """At most ``limit`` front points spread over its cost range, the most accurate always in.

    The front sorted by cost is also sorted by accuracy; evenly spaced positions along it (in
    log cost, so a front spanning decades is not all taken from its dear end) always include
    both ends: the cheapest point that learned and the most accurate one.
    """
    if limit <= 0 or not points:
        return []
    if len(points) <= limit:
        return list(points)
    key = GOAL_KEYS.get(goal, goal)
    logs = [math.log(max(float(p.cost[key]), 1e-12)) for p in points]
    lo, hi = logs[0], logs[-1]
    chosen: list[int] = []
    for i in range(limit):
        target = hi if limit == 1 else lo + (hi - lo) * i / (limit - 1)
        order = sorted(range(len(points)), key=lambda j: (abs(logs[j] - target), -j))
        chosen.append(next(j for j in order if j not in chosen))
    return [points[j] for j in sorted(chosen)]


def repricer(study_cfg: Mapping[str, Any]) -> Any:
    """``reprice(plan, widths) -> totals``: a trial's plan priced as deployed (the study's model,
    cost and firmware settings). Energy and size depend on the quantizers only; the FPGA figures
    would depend on trained weights a trial does not keep, so only the former are returned."""
    from hqrun.cost.deployed import deployed_cost
    from hqrun.search.backend import HqrunBackend

    backend = HqrunBackend(study_cfg.get("model") or {}, study_cfg.get("cost"))
    cost_cfg, fw_cfg = study_cfg.get("cost"), study_cfg.get("firmware")

    def reprice(plan: dict, widths: dict) -> dict:
        try:
            model = backend.build(plan, widths or {})
            totals = deployed_cost(model, cost_cfg, fw_cfg).totals
        except Exception:  # noqa: BLE001 - a plan that no longer builds is shown without a cost
            return {}
        return {"energy": totals["energy"], "size_bits": totals["size_bits"]}

    return reprice
