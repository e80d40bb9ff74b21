"""Settings of the cost model (the ``cost`` config group; keys of conf/cost/default.yaml).

The defaults reproduce AutoQKeras's ``ForgivingFactorPower`` defaults (parameters in "fixed"
memory, activations in DRAM, ``rd_wr_on_io``, fp32 reference) with QTools's Horowitz 45 nm
coefficients from its ``config_public``; pairs are ``[reference, trial]`` as in AutoQKeras.
``NOTEBOOK_SETTINGS`` are the settings of the AutoQKeras tutorial notebook.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, Optional

from hqrun.errors import ConfigError

MEMORY_MODES = ("dram", "sram", "fixed")
REFERENCE_INTERNALS = ("fp16", "fp32", "int8")
REFERENCE_ACCUMULATORS = ("int16", "int32", "fp16", "fp32")
SRAM_MODELS = ("qtools", "per_word")


@dataclass
class HorowitzConfig:
    """Polynomial coefficients (highest power first, as numpy.poly1d) in pJ.

    fpm_*: fixed-point add (of b bits) and multiply (of g = sqrt(b_in b_w)); fp*: per float op;
    sram_rd: per-bit read energy as a cubic in log2(array size in bits); dram_rd: per bit.
    """

    fpm_add: list[float] = field(default_factory=lambda: [0.003125, 0.0])
    fpm_mul: list[float] = field(default_factory=lambda: [0.002994791667, 0.001041666667, 0.0])
    fp16_add: list[float] = field(default_factory=lambda: [0.4])
    fp16_mul: list[float] = field(default_factory=lambda: [1.1])
    fp32_add: list[float] = field(default_factory=lambda: [0.9])
    fp32_mul: list[float] = field(default_factory=lambda: [3.7])
    sram_rd: list[float] = field(
        default_factory=lambda: [9.02427321e-04, -2.68847858e-02, 2.08900804e-01, 0.0])
    dram_rd: list[float] = field(default_factory=lambda: [20.3125, 0.0])
    sram_word_bits: int = 64


@dataclass
class SizeConfig:
    """AutoQKeras ForgivingFactorBits: bits of inputs/outputs/float tensors, what to count."""

    input_bits: int = 8
    output_bits: int = 8
    ref_bits: int = 8
    parameters: bool = True
    activations: bool = True
    count_input: bool = True  # a functional Keras model lists its InputLayer; a Sequential does not


@dataclass
class FpgaConfig:
    """Rules of the hls4ml-style (io_parallel, latency strategy, reuse 1) resource estimate
    (the ``hls_*`` totals; the RTL build's calibrated estimate is :class:`RtlCostConfig`)."""

    clock_period_ns: float = 5.0
    dsp_min_width: int = 10  # a constant multiply goes to a DSP when both operands are this wide
    adder_delay_ns: float = 1.5  # one adder-tree level; floor(clock / this) levels per cycle
    mult_cycles_lut: int = 1
    mult_cycles_dsp: int = 2
    activation_cycles: int = 1
    softmax_cycles: int = 3
    assumed_input: str = "quantized_bits(8,0,alpha=1)"  # used when the model input is float


@dataclass
class RtlCostConfig:
    """The calibrated estimate of the RTL (distributed-arithmetic) build (hqrun.cost.lut_model).

    ``latency_cycles``: register stages of the pipeline priced (as ``firmware.rtl.latency_cycles``;
    0 = combinational, no flip-flops). ``calibration``: a calibration JSON written by
    ``bench/calibrate_lut.py --fit``; null = the one shipped with hqrun.
    """

    latency_cycles: int = 0
    calibration: Optional[str] = None


@dataclass
class CostConfig:
    """The ``cost`` config group. Two-element lists are ``[reference, trial]``."""

    policy: str = "qtools"  # accumulator policy of the energy/bits report: qtools | exact
    input_shape: Optional[list[int]] = None  # per-sample input shape; null = read off the model
    source_quantizers: Optional[str] = None  # trial input type; null = quantized_bits(8,0,1)
    parameters_on_memory: list[str] = field(default_factory=lambda: ["fixed", "fixed"])
    activations_on_memory: list[str] = field(default_factory=lambda: ["dram", "dram"])
    min_sram_size: list[int] = field(default_factory=lambda: [0, 0])
    rd_wr_on_io: list[bool] = field(default_factory=lambda: [True, True])
    reference_internal: str = "fp32"
    reference_accumulator: str = "fp32"
    trained_model: bool = False
    sram_model: str = "qtools"  # qtools (words x per-bit energy, QTools's quirk) | per_word
    qtools_quirks: bool = True  # keep QTools's other quirks (see docs/cost.md)
    horowitz: HorowitzConfig = field(default_factory=HorowitzConfig)
    size: SizeConfig = field(default_factory=SizeConfig)
    fpga: FpgaConfig = field(default_factory=FpgaConfig)
    rtl: RtlCostConfig = field(default_factory=RtlCostConfig)
    print_table: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "CostConfig":
        """Refuse impossible settings with a message naming the key."""
        if self.policy not in ("qtools", "exact"):
            _bad("policy", self.policy, "qtools | exact")
        for key in ("parameters_on_memory", "activations_on_memory"):
            val = list(getattr(self, key))
            if len(val) != 2 or any(v not in MEMORY_MODES for v in val):
                _bad(key, val, "two of dram | sram | fixed ([reference, trial])")
        for key in ("min_sram_size", "rd_wr_on_io"):
            if len(list(getattr(self, key))) != 2:
                _bad(key, getattr(self, key), "a [reference, trial] pair")
        if self.reference_internal not in REFERENCE_INTERNALS:
            _bad("reference_internal", self.reference_internal, " | ".join(REFERENCE_INTERNALS))
        if self.reference_accumulator not in REFERENCE_ACCUMULATORS:
            _bad("reference_accumulator", self.reference_accumulator,
                 " | ".join(REFERENCE_ACCUMULATORS))
        if self.sram_model not in SRAM_MODELS:
            _bad("sram_model", self.sram_model, " | ".join(SRAM_MODELS))
        if self.fpga.clock_period_ns <= 0:
            _bad("fpga.clock_period_ns", self.fpga.clock_period_ns, "a positive number")
        if self.fpga.adder_delay_ns <= 0:
            _bad("fpga.adder_delay_ns", self.fpga.adder_delay_ns, "a positive number")
        lat = self.rtl.latency_cycles
        if isinstance(lat, bool) or not isinstance(lat, int) or not 0 <= lat <= 64:
            _bad("rtl.latency_cycles", lat, "0 (combinational) or a number of register stages "
                 "from 1 to 64, as firmware.rtl.latency_cycles")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def _bad(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"cost.{key}={value!r} is not valid; use {allowed}.")


#: The AutoQKeras tutorial notebook's energy goal (SRAM everywhere, no DRAM I/O, int8/int32 ref).
NOTEBOOK_SETTINGS: dict[str, Any] = {
    "parameters_on_memory": ["sram", "sram"],
    "activations_on_memory": ["sram", "sram"],
    "rd_wr_on_io": [False, False],
    "min_sram_size": [0, 0],
    "source_quantizers": "int8",
    "reference_internal": "int8",
    "reference_accumulator": "int32",
}

#: AutoQKeras's ForgivingFactorPower defaults (what CostConfig() is).
AUTOQKERAS_DEFAULT_SETTINGS: dict[str, Any] = {}

PRESETS = {"autoqkeras": AUTOQKERAS_DEFAULT_SETTINGS, "notebook": NOTEBOOK_SETTINGS}


def make_config(settings: Any = None, **overrides: Any) -> CostConfig:
    """A CostConfig from None, a preset name, a dict (AutoQKeras goal params accepted), a
    DictConfig or a CostConfig, with keyword overrides on top."""
    if isinstance(settings, CostConfig):
        base = asdict(settings)
    elif settings is None:
        base = {}
    elif isinstance(settings, str):
        if settings not in PRESETS:
            raise ConfigError(
                f"unknown cost settings preset {settings!r}; use one of {', '.join(PRESETS)} or "
                "a dict of CostConfig keys."
            )
        base = dict(PRESETS[settings])
    else:
        try:
            from omegaconf import DictConfig, OmegaConf

            if isinstance(settings, DictConfig):
                settings = OmegaConf.to_container(settings, resolve=True)
        except ImportError:  # pragma: no cover
            pass
        if is_dataclass(settings):
            settings = asdict(settings)
        base = dict(settings)
    base.update(overrides)
    # AutoQKeras goal params: source_quantizers may be a list, extra keys are ignored
    sq = base.get("source_quantizers")
    if isinstance(sq, (list, tuple)):
        base["source_quantizers"] = sq[0] if sq else None
    for k in ("delta_p", "delta_n", "rate", "stress", "process", "config_json"):
        base.pop(k, None)
    known = {f.name for f in fields(CostConfig)}
    unknown = sorted(set(base) - known)
    if unknown:
        raise ConfigError(
            f"unknown cost setting(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}."
        )
    nested = {"horowitz": HorowitzConfig, "size": SizeConfig, "fpga": FpgaConfig,
              "rtl": RtlCostConfig}
    for key, cls in nested.items():
        if key in base and isinstance(base[key], dict):
            sub = {**asdict(cls()), **base[key]}
            bad = sorted(set(sub) - {f.name for f in fields(cls)})
            if bad:
                raise ConfigError(f"unknown cost.{key} setting(s) {', '.join(bad)}.")
            base[key] = cls(**sub)
    for key in ("parameters_on_memory", "activations_on_memory", "min_sram_size", "rd_wr_on_io"):
        if key in base and not isinstance(base[key], (list, tuple)):
            base[key] = [base[key], base[key]]
        if key in base:
            base[key] = list(base[key])
    return CostConfig(**base)
