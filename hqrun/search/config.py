"""Structured config of ``hqrun search`` (the ``search`` config group).

The keys here are exactly the keys of ``conf/search/*.yaml``: ``hqrun.config.validate_config``
merges the composed group into :class:`SearchConfig`, so a typo in an override is refused before
Ray starts instead of being silently ignored by a trial.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hqrun.errors import SearchError


@dataclass
class GoalConfig:
    """What a trial's cost is and how AutoQKeras's forgiving factor weighs it."""

    type: str = "energy"          # bits | energy | ebops | lut
    delta_p: float = 8.0          # % accuracy bonus per `rate`-fold cost decrease
    delta_n: float = 8.0          # % accuracy penalty per `rate`-fold cost increase
    rate: float = 2.0
    stress: float = 1.0           # reference = stress x reference model's cost
    max_cost: Optional[float] = None   # cap in the goal's unit: costlier configs are never trained


@dataclass
class WidthConfig:
    """Layer-width tuning, AutoQKeras's ``tune_filters`` (shapes change: no weight transfer)."""

    mode: str = "none"            # none | layer | block
    multipliers: List[float] = field(default_factory=lambda: [0.5, 0.75, 1.0, 1.5, 2.0])
    exceptions: Optional[str] = None   # regex of layers never resized (the output layer always is)


@dataclass
class SpaceConfig:
    """The search space: candidate quantizers per kind, limits, which layers are searched."""

    # kind (kernel | bias | activation | linear) -> {spec: bit cost}; null = AutoQKeras's menu
    menu: Optional[Dict[str, Any]] = None
    # layer class (Dense, Conv2D, Activation, ...) or layer-name regex or "default" ->
    # max bits | [kernel, bias, activation] | {kernel:, bias:, activation:} (each max bits or a
    # list of specs). Layers matched by one regex share one sampled choice per slot.
    limits: Dict[str, Any] = field(default_factory=dict)
    layers: Optional[List[str]] = None   # regexes of searched layers; null = every quantizable one
    input: bool = False                   # also search the input quantizer (from the linear menu)
    width: WidthConfig = field(default_factory=WidthConfig)


@dataclass
class BlocksConfig:
    """AutoQKeras's block scheduler (``algorithm: blocks``)."""

    patterns: List[str] = field(default_factory=list)   # one regex per block
    schedule: str = "sequential"                         # sequential | cost
    search: str = "random"                               # per-block algorithm: random | bayesian
    min_trials: int = 10                                 # AutoQKeras's floor of trials per block


@dataclass
class AshaConfig:
    grace_period: int = 1
    reduction_factor: int = 3


@dataclass
class EvolutionConfig:
    """Regularized evolution (``algorithm: evolution``, hqrun/search/evolution.py)."""

    population: int = 16          # random trials first; parents come from the last `population`
    tournament: int = 4           # trials drawn per parent choice; the best one is mutated
    batch: int = 4                # children bred per Ray round (they train in parallel)


@dataclass
class BayesianConfig:
    n_startup_trials: int = 5


@dataclass
class BetaSweepConfig:
    """The learned-bit-width beta sweep (``algorithm: beta``, hqrun/search/algorithms/beta.py)."""

    beta_min: float = 1.0e-7          # log-uniform draws in [beta_min, beta_max] (when grid is null)
    beta_max: float = 3.0e-5
    grid: Optional[List[float]] = None    # explicit beta values, one trial each (max_trials ignored)
    plan: Dict[str, Any] = field(default_factory=dict)     # learned-plan knobs (conf/quant/learned.yaml)
    trainer: Dict[str, Any] = field(default_factory=dict)  # trainer settings (conf/trainer/learned.yaml); max_epochs = search.epochs
    from_reference: bool = False      # start each trial from the float reference's weights


@dataclass
class RayConfig:
    address: Optional[str] = None     # null: local Ray; "auto" or host:port: join a cluster
    num_cpus: Optional[int] = None    # CPUs the local Ray may use (null: all)
    cpus_per_trial: int = 1           # also the torch threads of a trial


@dataclass
class SearchConfig:
    algorithm: str = "random"         # random | bayesian | asha | blocks | evolution | beta
    objective: str = "forgiving"      # forgiving (AutoQKeras score) | pareto (accuracy vs cost) | accuracy (needs goal.max_cost)
    max_trials: int = 20
    population: int = 1               # configurations one Ray trial trains at once as one batched model (docs/search.md)
    epochs: int = 10                  # QAT epochs per trial (at most)
    patience: Optional[int] = None    # early stop on val loss; null: AutoQKeras's min(20, epochs//5); 0: off
    batch_size: int = 1024
    trainer: str = "lightning"        # lightning (hqrun.train's trainer) | lean (hand-written in-memory loop)
    learning_rate: float = 0.001
    train_samples: Optional[int] = None   # cap of training rows a trial sees (null: all)
    reference_epochs: int = 10        # float reference, trained once per search
    final_epochs: int = 30            # retraining of the winner / front points
    retrain: str = "winner"           # winner | front | none
    retries: int = 1                  # times a failed trial is retried
    seed: Optional[int] = None        # null: the top-level seed
    run_dir: Optional[str] = None     # null: Hydra's run dir; rerun on the same dir to resume
    progress: bool = True
    goal: GoalConfig = field(default_factory=GoalConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    blocks: BlocksConfig = field(default_factory=BlocksConfig)
    asha: AshaConfig = field(default_factory=AshaConfig)
    bayesian: BayesianConfig = field(default_factory=BayesianConfig)
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    beta: BetaSweepConfig = field(default_factory=BetaSweepConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    @staticmethod
    def check_raw(raw: Any) -> None:
        """Refuse values the schema's types would report without naming the fix (called by
        :func:`hqrun.config.validate_config` and :func:`parse_search_config` before merging)."""
        if raw is not None and hasattr(raw, "get") and "population" in raw:
            check_population(raw.get("population"))

    def to_plain(self) -> dict:
        """The settings as plain, JSON-ready containers (search.json, fingerprints)."""
        from omegaconf import OmegaConf

        return OmegaConf.to_container(OmegaConf.structured(self), resolve=True)


OBJECTIVES = ("forgiving", "pareto", "accuracy")
GOALS = ("bits", "energy", "ebops", "lut")


def check_population(value: Any) -> int:
    """``search.population`` as an int K >= 1, or one paragraph naming the setting and the fix.

    Not to be confused with ``search.evolution.population`` (the evolution algorithm's pool).
    """
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if not ok:
        raise SearchError(
            f"search.population={value!r} must be a whole number >= 1: how many search "
            "configurations one Ray trial trains at once as one batched model (1 trains each "
            "configuration alone). Set e.g. search.population=1 or search.population=8 (the "
            "evolution algorithm's pool size is the separate search.evolution.population).")
    return int(value)


def parse_search_config(cfg: Any) -> SearchConfig:
    """The ``search`` group as a :class:`SearchConfig` object, parsed once (types checked).

    Accepts a composed DictConfig, a plain mapping or a SearchConfig; everything downstream
    (runner, algorithms) reads attributes of the result instead of looking keys up by string.
    """
    if isinstance(cfg, SearchConfig):
        return cfg
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    SearchConfig.check_raw(cfg)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(SearchConfig), cfg if cfg is not None else {})
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise SearchError(f"invalid search setting: {getattr(err, 'msg', err)}. Check the spelling "
                          "and type of the search.* override (`hqrun search --cfg job` shows the "
                          "valid keys).") from None
