"""Schema of the ``study`` config node (``hqrun study`` and ``experiment=jet_tagging``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class StudyConfig:
    #: Homogeneous baselines trained first, by plan name (``float`` is the reference BF).
    baselines: List[str] = field(default_factory=lambda: ["float", "q6"])
    #: One AutoQ search per goal; its winner is retrained as Q<goal initial> (QE, QB, ...).
    goals: List[str] = field(default_factory=lambda: ["energy", "bits"])
    #: Start the winners' retraining from the float baseline's weights (AutoQKeras transfers too).
    init_from_float: bool = True
    #: Build and verify firmware for every model.
    firmware: bool = True
    #: Firmware backends built for every model, in order: the first writes ``<model>/firmware``
    #: (the report's main build), each further one ``<model>/firmware_<backend>``. ``rtl``
    #: (Verilog through alkaid, RTL simulation, Yosys synthesis) adds the measured LUT/FF.
    #: null = ``[firmware.backend]``.
    backends: Optional[List[str]] = None
    #: Models (labels: BF, Q6, QE, ...) the backends after the first build; null = every model.
    #: Why: Yosys takes minutes per jet model, and BF's 16-bit post-training-quantized build is
    #: no design anyone deploys in LUTs.
    extra_backend_models: Optional[List[str]] = None
    #: Firmware builds run at once (hqrun/study/firmware_jobs.py; each is mostly one external
    #: tool on one core: g++, Verilator, Yosys). 1 = one after another.
    firmware_workers: int = 1
    #: Plan under which the float baseline's weights go to firmware (post-training quantization;
    #: the paper's BF ran at hls4ml's default ap_fixed<16,6>).
    float_firmware_plan: Dict[str, Any] = field(default_factory=lambda: {
        "name": "bf_ptq16", "input": None, "layers": {},
        "default": {"kernel": "quantized_bits(16,5,alpha=1)", "bias": "quantized_bits(16,5,alpha=1)",
                    "activation": "quantized_relu(16,6)"}})
    #: Front points of each search listed in the report (0 = none).
    pareto_points: int = 5
    #: Cost cap per goal (goal -> cap in its unit, e.g. {energy: 19168}): passed to that goal's
    #: search as search.goal.max_cost, so every trial fits it (random, asha and evolution searches).
    max_cost: Dict[str, Optional[float]] = field(
        default_factory=lambda: {"energy": None, "bits": None, "ebops": None, "lut": None})
    #: Best-scoring trials per search retrained in full; the one with the best validation
    #: accuracy becomes QE/QB (1 = AutoQKeras's way: retrain only the winner).
    candidates: int = 1
    #: Spread the candidates over families of activation widths: the best trial of each family
    #: first, then the next best (hqrun/study/diversity.py). False: the k best trials.
    spread_candidates: bool = True
    #: Raise each capped candidate's kernel and bias quantizers to the most precise menu option
    #: that keeps it under study.max_cost (hqrun.search.costcap.fill_to_cap) before training it.
    fill_to_cap: bool = True
    #: Each goal's search gets its own seed (search.seed, else seed, plus the goal's position in
    #: goals), so two uncapped searches do not train the same configurations. False: one seed.
    distinct_search_seeds: bool = True
    #: Full trainings of every model (baselines and each candidate), with training seeds
    #: trainer.seed (or seed), +1, +2, ...; the best validation accuracy is kept. The data split
    #: stays the same. 1 = one training each.
    restarts: int = 1
    #: Learned bit widths (hqrun/study/learned.py): a beta sweep (search=beta, changed by
    #: ``search``) beside the AutoQ searches; per EBOPs level in ``budgets``, the candidate with
    #: the best validation accuracy at or under it becomes a model (LB3k, ...), as trained.
    learned: Dict[str, Any] = field(default_factory=lambda: {
        "enabled": False, "budgets": [3000, 12000], "search": {}})
