"""Model size in bits, counted as AutoQKeras's ``ForgivingFactorBits`` counts it.

Per layer: parameters = sum over weight tensors of (quantizer bits or ``ref_bits``) x count;
activations = output count x the bits of what the layer outputs (input layer: ``input_bits``;
softmax/sigmoid: ``output_bits``; linear: 0; a float activation: ``ref_bits``). Batch norm is a
special case: a float BN counts ``ref_bits`` for its scale and for its center, a
QBatchNormalization counts a fixed 6 bits per scale and 5 bits per center value whatever its
quantizers are (AutoQKeras's rule, kept). The reference size is the same model in float.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from hqrun.cost.config import SizeConfig
from hqrun.quantizers.layers import QLayer
from hqrun.quantizers.typeinfer import MAC_KINDS, LayerTypes, _activation_info, _get


@dataclass
class LayerSize:
    parameters: int = 0
    activations: int = 0
    total: int = 0

    def as_dict(self) -> dict:
        return {"parameters": self.parameters, "activations": self.activations,
                "total": self.total}


def _qbits(q) -> int | None:
    if q is None or isinstance(q, str):
        return None
    b = getattr(q, "bits", None)
    return int(b) if b else None


def _is_float_layer(module: nn.Module) -> bool:
    return _get(module, "kernel_quantizer") is None and _get(module, "bias_quantizer") is None \
        and _activation_info(module)[0] is None


def _act_bits(module: nn.Module, cfg: SizeConfig, reference: bool) -> int:
    q, fname = _activation_info(module)
    if fname in ("linear", "none", "identity"):
        return 0
    if fname in ("softmax", "sigmoid"):
        return cfg.output_bits
    if reference or q is None:
        return cfg.ref_bits
    return _qbits(q) or cfg.ref_bits


def layer_sizes(types: list[LayerTypes], cfg: SizeConfig, reference: bool = False
                ) -> dict[str, LayerSize]:
    """Bits per layer; ``reference`` counts the model as its float version (AutoQKeras's
    reference is the float model it was given)."""
    out: dict[str, LayerSize] = {}
    for lt in types:
        m = lt.module
        p = a = 0
        if lt.kind == "input":
            if cfg.count_input:
                a = cfg.input_bits * lt.n_outputs
            if "identity_input" not in lt.flags and not reference:
                # an input quantizer is a QActivation after the InputLayer in QKeras
                a += (_qbits(getattr(m, "activation", None)) or cfg.ref_bits) * lt.n_outputs
            elif "identity_input" not in lt.flags:
                a += cfg.ref_bits * lt.n_outputs
        elif lt.kind in MAC_KINDS:
            float_layer = reference or _is_float_layer(m)
            wq = None if float_layer else _get(m, "kernel_quantizer")
            bq = None if float_layer else _get(m, "bias_quantizer")
            p = (_qbits(wq) or cfg.ref_bits) * lt.n_weights
            p += (_qbits(bq) or cfg.ref_bits) * lt.n_bias
            q, fname = _activation_info(m)
            if fname not in ("linear", "none", "identity"):
                a = _act_bits(m, cfg, reference) * lt.n_outputs
        elif lt.kind == "batchnorm":
            n = lt.n_channels
            quantized = not reference and isinstance(m, QLayer)
            # AutoQKeras counts weights[-1] (the moving variance, always there) as "scale",
            # whether or not the layer has a gamma
            p = (6 if quantized else cfg.ref_bits) * n
            if bool(getattr(m, "center", True)):
                p += (5 if quantized else cfg.ref_bits) * n
        elif lt.kind == "activation":
            a = _act_bits(m, cfg, reference) * lt.n_outputs
        p, a = int(p), int(a)
        tot = int(cfg.parameters) * p + int(cfg.activations) * a
        out[lt.name] = LayerSize(p, a, tot)
    return out


def total_size(sizes: dict[str, LayerSize]) -> int:
    return int(sum(s.total for s in sizes.values()))
