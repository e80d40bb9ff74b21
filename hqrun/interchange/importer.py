"""``import_qonnx``: a QONNX graph → an hqrun model, plan and weights, proven equal to the source.

The graph is cleaned with qonnx's transformations and walked into layer specs
(:mod:`~hqrun.interchange.read_graph`). From those come a model config — ``mlp`` when the layers
are exactly what the ``mlp`` builder makes, else the generic ``layers`` list — a plan with one
entry per quantized slot, and the weights as the values qonnx computes for the graph's constants.
For every weight slot the first candidate spec whose quantized weights equal those values is kept
(:mod:`~hqrun.interchange.spec_formats`). Finally the model and qonnx's execution of the source
are compared, logits bit for bit, on the inputs given (the user's data) or on random inputs drawn
on the graph's declared input grid; any difference is an :class:`~hqrun.errors.InterchangeError`.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hqrun.errors import HqrunError, InterchangeError
from hqrun.quantizers.fixedpoint import FixedPointType

from .clean import clean, with_batch_size
from .deps import require_qonnx
from .execute import GraphRunner
from .read_graph import LayerSpec, ReadGraph, read_graph
from .verify import Comparison, compare_logits, model_logits

__all__ = ["ImportResult", "import_qonnx", "load_qonnx", "random_inputs"]

_PREFIX = {"dense": "dense", "conv1d": "conv", "conv2d": "conv", "depthwise_conv2d": "conv",
           "avgpool2d": "pool", "relu": "relu", "activation": "act"}
_WEIGHT_TYPES = ("dense", "conv1d", "conv2d", "depthwise_conv2d")


@dataclass
class ImportResult:
    """The imported model and what proves it: ``comparison`` against qonnx on ``n`` inputs."""

    model: nn.Module
    model_config: dict[str, Any]
    plan: Any
    comparison: Comparison
    inputs: str
    report: dict[str, Any]
    layers: list[LayerSpec] = field(default_factory=list)


def load_qonnx(source: Any) -> Any:
    """A cleaned qonnx ModelWrapper (batch size 1) from a path, bytes, ModelProto or wrapper.

    Files are read as ONNX protobuf data only (no external data files, nothing executed).
    """
    require_qonnx()
    import onnx
    from qonnx.core.modelwrapper import ModelWrapper

    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise InterchangeError(f"source={source} is not a file; pass the path of a QONNX "
                                   ".onnx model.")
        try:
            proto = onnx.load_model_from_string(path.read_bytes())
        except Exception as err:  # noqa: BLE001 - the parser's message is the detail
            raise InterchangeError(f"{path} is not an ONNX model ({type(err).__name__}: {err}).") from None
    elif isinstance(source, (bytes, bytearray)):
        proto = onnx.load_model_from_string(bytes(source))
    elif isinstance(source, ModelWrapper):
        proto = source.model
    else:
        proto = source
    for init in proto.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            raise InterchangeError(f"initializer {init.name!r} is stored in an external data file; "
                                   "hqrun reads self-contained .onnx files only (save the model "
                                   "without external data).")
    try:
        wrapper = clean(ModelWrapper(proto))
        return with_batch_size(wrapper, 1)
    except HqrunError:
        raise
    except Exception as err:  # noqa: BLE001 - qonnx's own failure, reported as a user error
        raise InterchangeError(f"qonnx could not clean the graph ({type(err).__name__}: {err}); "
                               "check that it is a valid QONNX model with static shapes.") from None


# ---------------------------------------------------------------------- names, config, plan
def _names(layers: list[LayerSpec]) -> list[str]:
    """Hinted names where unique, else ``dense_1``-style names counted per type."""
    hinted = [layer.name for layer in layers]
    taken = {n for n in hinted if n is not None and hinted.count(n) == 1}
    counters: dict[str, int] = {}
    out = []
    for layer, name in zip(layers, hinted):
        if name is None or name not in taken:
            prefix = _PREFIX.get(layer.type)
            if prefix is None:
                name = layer.type
            else:
                counters[prefix] = counters.get(prefix, 0) + 1
                name = f"{prefix}_{counters[prefix]}"
            while name in taken or name in out:
                name = f"{name}_"
        out.append(name)
    return out


def _config(read: ReadGraph, names: list[str]) -> dict[str, Any]:
    entries = [{"type": layer.type, "name": name, **layer.options}
               for layer, name in zip(read.layers, names)]
    shape = list(read.input_shape)
    key = {"n_inputs": shape[0]} if len(shape) == 1 else {"input_shape": shape}
    return {"name": "layers", **key, "layers": entries}


def _plan(read: ReadGraph, names: list[str], choice: dict[tuple[str, str], str], name: str) -> Any:
    from hqrun.models import Plan

    plan = Plan(name=name, description="imported from QONNX by hqrun import")
    for layer, lname in zip(read.layers, names):
        for slot, spec in layer.slots.items():
            chosen = choice[(lname, slot)]
            if layer.type == "input":
                plan.input = chosen
            else:
                plan.layers.setdefault(lname, {})[slot] = chosen
    return plan


def _structure(model: nn.Module) -> list[tuple]:
    return [(n, type(m).__name__, tuple(tuple(p.shape) for p in m.parameters()),
             getattr(m, "float_function", None), getattr(m, "keras_order", None))
            for n, m in model.named_children()]


def _simplest_config(cfg: dict[str, Any], read: ReadGraph, model: nn.Module) -> dict[str, Any]:
    """``mlp`` when it builds exactly these layers (a config users know), else ``cfg``."""
    from hqrun.models import build_model

    dense = [layer for layer in read.layers if layer.type == "dense"]
    if len(read.input_shape) != 1 or not dense or read.layers[-1].type != "softmax":
        return cfg
    mlp = {"name": "mlp", "n_inputs": int(read.input_shape[0]),
           "n_classes": int(dense[-1].options["units"]),
           "hidden": [int(layer.options["units"]) for layer in dense[:-1]]}
    try:
        candidate = build_model(mlp)
    except HqrunError:
        return cfg
    return mlp if _structure(candidate) == _structure(model) else cfg


# ---------------------------------------------------------------------- weights
_PARAM_KEY = {"kernel": "weight", "bias": "bias"}


def _options(read: ReadGraph, names: list[str]) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """Per slot: (spec, stored weights) pairs to try, best first. ``float`` stores the graph's
    float constant (the source's shadow weights), ``quantized`` what its Quant makes of it."""
    from .spec_formats import param_candidates

    out: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for layer, name in zip(read.layers, names):
        for slot, spec in layer.slots.items():
            key = _PARAM_KEY.get(slot)
            if key is None:
                out[(name, slot)] = [(c, "") for c in spec.candidates]
                continue
            derived = param_candidates(spec.fmt, layer.quantized[key], spec.where)
            specs = list(dict.fromkeys(spec.candidates + derived))
            same = np.array_equal(layer.weights[key], layer.quantized[key])
            out[(name, slot)] = [(c, src) for c in specs
                                 for src in (("quantized",) if same else ("float", "quantized"))]
    return out


def _state(read: ReadGraph, names: list[str], choice: dict[tuple[str, str], tuple[str, str]]
           ) -> dict[str, torch.Tensor]:
    state = {}
    for layer, name in zip(read.layers, names):
        for slot, key in _PARAM_KEY.items():
            if key in layer.weights:
                stored = choice.get((name, slot), ("", "quantized"))[1]
                values = layer.weights[key] if stored == "float" else layer.quantized[key]
                state[f"{name}.{key}"] = torch.from_numpy(np.array(values, dtype=np.float32))
    return state


def _quantized(model: nn.Module, name: str, key: str) -> np.ndarray:
    layer = getattr(model, name)
    with torch.no_grad():
        t = layer.quantized_kernel() if key == "weight" else layer.quantized_bias()
    return t.detach().cpu().numpy()


def _build(read: ReadGraph, plan_name: str) -> tuple[nn.Module, dict[str, Any], Any, list[str], list[str]]:
    """Build the model, choosing for each weight slot the first (spec, stored weights) pair
    whose quantized weights equal the graph's; returns notes on every fallback taken."""
    from hqrun.models import build_model

    names = _names(read.layers)
    cfg = _config(read, names)
    options = _options(read, names)
    index = {key: 0 for key in options}
    while True:
        choice = {key: opts[index[key]] for key, opts in options.items()}
        plan = _plan(read, names, {k: v[0] for k, v in choice.items()}, plan_name)
        try:
            model = build_model(cfg, plan)
        except HqrunError as err:
            raise InterchangeError(f"hqrun cannot build the imported layers: {err}") from None
        missing, _ = model.load_state_dict(_state(read, names, choice), strict=False)
        model.eval()
        wrong = [key for key in options if key[1] in _PARAM_KEY and not np.array_equal(
            _quantized(model, key[0], _PARAM_KEY[key[1]]).astype(np.float64),
            read.layers[names.index(key[0])].quantized[_PARAM_KEY[key[1]]].astype(np.float64))]
        if not wrong:
            notes = [f"{read.layers[names.index(k[0])].slots[k[1]].where}: kept as {choice[k][0]} "
                     f"({choice[k][1]} weights stored); {options[k][0][0]} did not reproduce its "
                     "values" for k in options if index[k] > 0 and choice[k][0] != options[k][0][0]]
            return model, cfg, plan, names, notes
        for key in wrong:
            index[key] += 1
            if index[key] >= len(options[key]):
                tried = ", ".join(dict.fromkeys(spec for spec, _ in options[key]))
                raise InterchangeError(
                    f"{read.layers[names.index(key[0])].slots[key[1]].where}: no hqrun quantizer "
                    f"reproduces its values exactly (tried {tried}). hqrun needs power-of-two "
                    "scales, per tensor or per output channel (QKeras's alpha='auto_po2')."
                )


# ---------------------------------------------------------------------- inputs and proof
def random_inputs(read: ReadGraph, n: int, seed: int, input_type: FixedPointType) -> tuple[np.ndarray, str]:
    """``n`` random inputs on the graph's declared input grid (its input Quant, else
    ``input_type``): uniform over the codes, plus the two extreme codes and zero."""
    first = read.layers[0]
    spec = first.slots.get("activation")
    rng = np.random.default_rng(seed)
    if spec is not None and spec.fmt is not None and spec.fmt.is_scalar:
        fmt = spec.fmt
        lo, hi, scale = fmt.min_code, fmt.max_code, float(fmt.scale)
        what = f"uniform on the input Quant's codes [{lo}, {hi}] x {scale:g}"
    else:
        lo, hi, scale = input_type.min_code, input_type.max_code, input_type.lsb
        what = f"uniform on {input_type.hls_name} (the graph declares no input format)"
    shape = (int(n),) + tuple(read.input_shape)
    codes = rng.integers(lo, hi + 1, size=shape, dtype=np.int64)
    if n >= 3:
        codes[0], codes[1], codes[2] = lo, hi, 0
    return (codes * scale).astype(np.float32), what


def import_qonnx(source: Any, *, inputs: np.ndarray | None = None, n_random: int = 10000,
                 seed: int = 0, input_type: str = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>",
                 batch_size: int = 5000, name: str = "imported") -> ImportResult:
    """Read a QONNX model into hqrun, proven equal to qonnx's execution of it.

    Args:
        source: a ``.onnx`` path, bytes, ModelProto or qonnx ModelWrapper.
        inputs: samples to prove equality on (``(N, *input_shape)``, as the graph takes them);
            None draws ``n_random`` inputs on the graph's input grid (seeded by ``seed``).
        input_type: the grid of the random inputs when the graph has no input Quant.
        name: the plan's name.

    Raises:
        InterchangeError: a node hqrun cannot read (named, with what hqrun reads), or the
            imported model's logits differ from qonnx's.
    """
    start = time.perf_counter()
    wrapper = load_qonnx(source)
    read = read_graph(wrapper)
    model, cfg, plan, names, notes = _build(read, name)
    cfg = _simplest_config(cfg, read, model)
    if inputs is None:
        x, what = random_inputs(read, n_random, seed, FixedPointType.from_hls_name(input_type))
    else:
        x = np.asarray(inputs, dtype=np.float32)
        what = "the samples given"
        if tuple(x.shape[1:]) != tuple(read.input_shape):
            raise InterchangeError(f"the samples have shape {list(x.shape[1:])} per sample but the "
                                   f"graph takes {list(read.input_shape)}.")
    runner = GraphRunner(wrapper, batch_size)
    comparison = compare_logits(runner.logits(x), model_logits(model, x))
    if not comparison.exact:
        raise InterchangeError(
            f"the imported hqrun model does not equal qonnx's execution of the source: "
            f"{comparison.summary()} on {what}. hqrun refuses to write a model that differs; "
            "please report this with the .onnx file."
        )
    report = {
        "cleaned_graph_sha256": hashlib.sha256(wrapper.model.SerializeToString()).hexdigest(),
        "inputs": what, "verification": comparison.to_dict(),
        "executor": "qonnx.core.onnx_exec.execute_onnx (float32)",
        "layers": [{"name": n, "type": layer.type, "nodes": layer.nodes,
                    "slots": {s: plan.input if layer.type == "input" else plan.layers[n][s]
                              for s in layer.slots}}
                   for layer, n in zip(read.layers, names)],
        "seconds": round(time.perf_counter() - start, 3), "notes": read.notes + notes,
    }
    return ImportResult(model, cfg, plan, comparison, what, report, read.layers)
