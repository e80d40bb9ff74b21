"""IR → hls4ml model (and HLS project on disk), through hls4ml's public PyTorch API only.

Why a "shadow" torch model: hls4ml's PyTorch front end traces ``torch.nn`` layers with FX; it
cannot see inside hqrun's quantized layers. So the writer rebuilds the IR as plain ``nn.Linear``
/ ``nn.Conv*d`` / ``nn.ReLU`` layers in float64 whose weights are the exact quantized values
(codes × 2^-f; float64 and hls4ml's weight printer, which prints ``f`` decimals for a type with
``f`` fractional bits, both hold them exactly), and pins every layer's precision (weight, bias,
accumulator, result) explicitly in hls4ml's per-layer config — nothing is left to hls4ml's
``auto`` inference. Several IRs can share one project (one input and one output per model):
that is how the tests C-simulate many small models for the price of one compile.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from hqrun.errors import FirmwareError
from hqrun.firmware_options import WriterFields
from hqrun.quantizers.fixedpoint import FixedPointType
from hqrun.safenames import check_identifier

from ...ir import FirmwareIR, IRLayer
from ...pypi_import import import_beside_checkout

__all__ = ["WriterOptions", "import_hls4ml", "to_hls4ml", "hls_precision", "layer_name_map"]


@dataclass
class WriterOptions(WriterFields):
    """Knobs of the generated HLS project (the firmware config's ``hls`` part).

    Fields and defaults: :class:`hqrun.firmware_options.WriterFields`.
    """

    def validate(self) -> None:
        if self.vendor not in ("Vitis", "Vivado"):
            raise FirmwareError(f"firmware.vendor={self.vendor!r} is not supported by the hls4ml "
                                "backend; use Vitis (default) or Vivado.")
        if self.io_type != "io_parallel":
            raise FirmwareError(f"io_type={self.io_type!r}: hqrun exports io_parallel only (the "
                                "latency-optimised, fully unrolled design of the paper).")
        if self.strategy not in ("Latency", "Resource"):
            raise FirmwareError(f"strategy={self.strategy!r}: use Latency or Resource.")
        # project_name becomes a C++ name, file names and a word in hls4ml's build_lib.sh,
        # which runs through a shell: only a plain identifier is safe there.
        check_identifier(self.project_name, "firmware.project_name", error=FirmwareError)
        if int(self.reuse_factor) < 1:
            raise FirmwareError(f"reuse_factor={self.reuse_factor} must be ≥ 1.")
        if float(self.clock_period) <= 0:
            raise FirmwareError(f"clock_period={self.clock_period} must be positive (ns).")


def import_hls4ml():
    """Import hls4ml, even from a checkout's root directory (see :mod:`hqrun.firmware.pypi_import`)."""
    return import_beside_checkout("hls4ml", "`pip install hls4ml==1.3.0` (no TensorFlow needed)",
                                  quiet=True)


def hls_precision(t: FixedPointType, modes: bool = True) -> str:
    """hls4ml precision string of a type; ``modes=False`` drops rounding/overflow (exact values)."""
    if not modes:
        base = "ap_fixed" if t.signed else "ap_ufixed"
        return f"{base}<{t.width},{t.integer}>"
    base = "ap_fixed" if t.signed else "ap_ufixed"
    return f"{base}<{t.width},{t.integer},AP_{t.rounding},AP_{t.overflow}>"


# ----------------------------------------------------------------------------- shadow model
def _shadow_layer(layer: IRLayer, column_order: np.ndarray | None = None) -> nn.Module:
    if layer.op in ("dense", "conv1d", "conv2d"):
        w = np.ldexp(layer.weight.astype(np.float64), -layer.weight_type.fractional)
        if column_order is not None:
            # hls4ml's PyTorch front end gives Flatten PyTorch's channels-first order; a Keras-order
            # flatten (hqrun's Flatten) is the same thing with the next dense's columns permuted.
            shadow = np.empty_like(w)
            shadow[:, column_order] = w
            w = shadow
        if layer.op == "dense":
            mod: nn.Module = nn.Linear(w.shape[1], w.shape[0], bias=True)
        elif layer.op == "conv1d":
            mod = nn.Conv1d(w.shape[1], w.shape[0], w.shape[2], stride=layer.attrs["stride"][0])
        else:
            mod = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]),
                            stride=tuple(layer.attrs["stride"]))
        mod = mod.double()
        with torch.no_grad():
            mod.weight.copy_(torch.from_numpy(w))
            if layer.bias is not None:
                mod.bias.copy_(torch.from_numpy(np.ldexp(layer.bias.astype(np.float64),
                                                         -layer.bias_type.fractional)))
            else:
                mod.bias.zero_()
        return mod
    if layer.op == "relu":
        return nn.ReLU()
    if layer.op == "softmax":
        return nn.Softmax(dim=-1)
    if layer.op == "flatten":
        return nn.Flatten()
    if layer.op == "avgpool2d":
        return nn.AvgPool2d(tuple(layer.attrs["pool"]))
    if layer.op == "zeropad1d":
        (a, b), = layer.attrs["pads"]
        return nn.ConstantPad1d((a, b), 0.0)
    if layer.op == "zeropad2d":
        (t, b), (left, r) = layer.attrs["pads"]
        return nn.ConstantPad2d((left, r, t, b), 0.0)
    raise FirmwareError(f"IR op {layer.op!r} of layer {layer.name!r} has no hls4ml mapping.")


def _prefix(index: int, many: bool) -> str:
    return f"m{index}_" if many else ""


def _shadow_model(irs: Sequence[FirmwareIR]) -> nn.Module:
    many = len(irs) > 1
    orders: list[list[str]] = []
    mods: "OrderedDict[str, nn.Module]" = OrderedDict()
    for i, ir in enumerate(irs):
        names = []
        pending: np.ndarray | None = None
        for layer in ir.layers[1:]:
            # the key is spliced into the generated forward() below and into hls4ml's C++
            key = check_identifier(_prefix(i, many) + layer.name, "firmware layer name",
                                   error=FirmwareError)
            if layer.op == "flatten" and layer.attrs.get("channels_last") and len(layer.in_shape) > 1:
                idx = np.arange(int(np.prod(layer.in_shape))).reshape(layer.in_shape)
                pending = np.moveaxis(idx, 0, -1).reshape(-1)
            if layer.op == "dense":
                mods[key] = _shadow_layer(layer, pending)
                pending = None
            else:
                mods[key] = _shadow_layer(layer)
            names.append(key)
        orders.append(names)
    args = ["x"] if not many else [f"x{i}" for i in range(len(irs))]
    lines = [f"def forward(self, {', '.join(args)}):"]
    for arg, names in zip(args, orders):
        for key in names:
            lines.append(f"    {arg} = self.{key}({arg})")
    lines.append(f"    return {args[0] if not many else '(' + ', '.join(args) + ',)'}")
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), namespace)  # noqa: S102 - only identifiers checked above are spliced in
    cls = type("HqrunShadow", (nn.Module,), {"forward": namespace["forward"]})
    model = cls()
    for key, mod in mods.items():
        model.add_module(key, mod)
    return model.double().eval()


def layer_name_map(irs: Sequence[FirmwareIR]) -> list[dict[str, str]]:
    """For each IR: IR layer name → hls4ml layer name (inputs map to the forward argument)."""
    many = len(irs) > 1
    out = []
    for i, ir in enumerate(irs):
        m = {ir.layers[0].name: ("x" if not many else f"x{i}")}
        for layer in ir.layers[1:]:
            m[layer.name] = _prefix(i, many) + layer.name
        out.append(m)
    return out


# ----------------------------------------------------------------------------- config
def _layer_config(entry: dict[str, Any], layer: IRLayer, opts: WriterOptions) -> None:
    prec = entry.setdefault("Precision", {})
    if layer.op in ("dense", "conv1d", "conv2d"):
        prec["weight"] = hls_precision(layer.weight_type, modes=False)
        prec["bias"] = hls_precision(layer.bias_type, modes=False) if layer.bias_type is not None \
            else hls_precision(layer.weight_type, modes=False)
        prec["accum"] = hls_precision(layer.accum_type, modes=False)
        prec["result"] = hls_precision(layer.out_type)
        entry["ReuseFactor"] = int(opts.reuse_factor)
        entry["Strategy"] = opts.strategy
    elif layer.op == "avgpool2d":
        prec["accum"] = hls_precision(layer.accum_type, modes=False)
        prec["result"] = hls_precision(layer.out_type, modes=False)
    elif layer.op == "softmax":
        prec["result"] = opts.softmax_result
        # Two tables with two index types: exp's is indexed by x_max - x (at most 2^width codes),
        # the inverse's by the sum of exponentials (ap_fixed<18,8>). hls4ml sizes both from one
        # table_size and shrinks it to the logits' width; for narrow logits the inverse table
        # then maps every sum below 2 to 1/0 and saturates all outputs (a trained QB model with
        # ap_fixed<7,4> logits: 32 % argmax agreement). So they are sized apart.
        exp_size = softmax_table_size(layer, opts)
        entry["TableSize"] = exp_size
        entry["exp_table_size"] = exp_size
        entry["inv_table_size"] = max(int(opts.softmax_table_size), 1024, exp_size)
        if layer.in_type is not None:
            diff = softmax_difference_type(layer.in_type)
            types = import_hls4ml().model.types
            # a layer attribute (as hls4ml's own HGQ converter sets it); hls4ml names and declares it
            entry["inp_norm_t"] = types.FixedPrecisionType(diff.width, diff.integer, signed=diff.signed)
    elif layer.out_type is not None:
        prec["result"] = hls_precision(layer.out_type)
    entry["Trace"] = True


def softmax_difference_type(t: FixedPointType) -> FixedPointType:
    """Type of ``x_max - x`` inside hls4ml's stable softmax for logits of type ``t``.

    hls4ml derives ``ap_ufixed<W-1, I-1>`` from logits ``ap_fixed<W, I>``, but the difference of
    two such logits reaches ``2**I``: once the logits spread over more than half their range it
    wraps and that class gets a far too large exponential. ``ap_ufixed<W, I>`` holds every
    difference exactly. The logits themselves, and the bit-exact check on them, are untouched.
    """
    return FixedPointType(t.width, t.integer, False, "TRN", "WRAP") if t.signed else t


def softmax_table_size(layer: IRLayer, opts: WriterOptions) -> int:
    """Softmax exp-table size: the configured one, grown for wide logits (at most 2^14).

    hls4ml's stable softmax indexes its exp table with the top bits of ``x_max - x`` in the
    logits' own integer range; logits with many integer bits (po2 biases, wide accumulators)
    would otherwise get a table step of 1 or more and a near-uniform output. Aim at a step of
    1/32 or finer.
    """
    size = int(opts.softmax_table_size)
    t = layer.in_type
    if t is not None:
        want = 1 << max(0, min(14, t.integer + 4))
        size = max(size, want)
        # the table is indexed by the top bits of the difference: no more entries than codes
        size = min(size, 1 << softmax_difference_type(t).width)
    return size


def _hls_config(irs: Sequence[FirmwareIR], model: nn.Module, opts: WriterOptions) -> dict[str, Any]:
    hls4ml = import_hls4ml()
    shapes = [tuple(ir.input_shape) for ir in irs]
    with contextlib.redirect_stdout(io.StringIO()):
        cfg = hls4ml.utils.config_from_pytorch_model(
            model, shapes[0] if len(shapes) == 1 else shapes, granularity="name",
            backend=opts.vendor, default_precision=hls_precision(irs[0].input_type),
            default_reuse_factor=int(opts.reuse_factor), channels_last_conversion="full",
            transpose_outputs=False,
        )
    cfg["Model"]["Strategy"] = opts.strategy
    cfg["Model"]["TraceOutput"] = True
    names = cfg["LayerName"]
    for ir, mapping in zip(irs, layer_name_map(irs)):
        for layer in ir.layers:
            hname = mapping[layer.name]
            if hname not in names:
                raise FirmwareError(
                    f"hls4ml did not produce a layer named {hname!r} for IR layer {layer.name!r} "
                    f"(it made {sorted(names)}); please report this as an hqrun bug."
                )
            _layer_config(names[hname], layer, opts)
    # Layers hls4ml adds itself (channels-last transposes) carry values through unchanged.
    for entry in names.values():
        entry["Trace"] = True
    return cfg


def to_hls4ml(irs: FirmwareIR | Sequence[FirmwareIR], out_dir: str, opts: WriterOptions):
    """Build the hls4ml ModelGraph for one IR (or several in one project) and write it to disk."""
    opts.validate()
    ir_list = [irs] if isinstance(irs, FirmwareIR) else list(irs)
    hls4ml = import_hls4ml()
    model = _shadow_model(ir_list)
    cfg = _hls_config(ir_list, model, opts)
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), warnings.catch_warnings():
            # hls4ml shrinks softmax tables to the input width and says so; expected here.
            warnings.filterwarnings("ignore", message=".*table size.*")
            hls_model = hls4ml.converters.convert_from_pytorch_model(
                model, output_dir=str(out_dir), project_name=opts.project_name,
                backend=opts.vendor, hls_config=cfg, io_type=opts.io_type, part=opts.part,
                clock_period=opts.clock_period,
            )
            hls_model.write()
    except FirmwareError:
        raise
    except Exception as err:  # noqa: BLE001 - turn hls4ml's internal errors into one paragraph
        raise FirmwareError(
            f"hls4ml could not convert the model ({type(err).__name__}: {err}). The IR was "
            f"{[layer.op for ir in ir_list for layer in ir.layers]}; hls4ml's log ends with: "
            f"{log.getvalue()[-400:]!r}"
        ) from None
    _check_types(hls_model, ir_list)
    return hls_model


def _check_types(hls_model: Any, irs: Sequence[FirmwareIR]) -> None:
    """hls4ml's optimizer passes must not have changed a type we pinned (a silent mismatch)."""
    layers = {layer.name: layer for layer in hls_model.get_layers()}
    for ir, mapping in zip(irs, layer_name_map(irs)):
        for layer in ir.layers[1:]:
            h = layers.get(mapping[layer.name])
            if h is None:
                raise FirmwareError(
                    f"hls4ml removed layer {mapping[layer.name]!r} during optimisation; its "
                    "output could not be checked. Please report this as an hqrun bug."
                )
            if layer.out_type is None:
                continue
            prec = h.get_output_variable().type.precision
            want = layer.out_type
            got = (int(prec.width), int(prec.integer), bool(prec.signed))
            if got != (want.width, want.integer, want.signed):
                raise FirmwareError(
                    f"hls4ml changed the result type of layer {layer.name!r} to {prec} (wanted "
                    f"{want.hls_name}); the firmware would not be exact. Please report this."
                )
