"""Generate QTools energies and AutoQKeras size/energy goals for the jet model, with QKeras 0.9.0.

Run (see docs/oracle.md):
    TF_USE_LEGACY_KERAS=1 /work/oracle-venv/bin/python tools/qkeras_oracle/gen_qtools.py

Writes
  tests/golden/qtools_energy.json     per-layer QTools energies + inferred data types
  tests/golden/autoqkeras_bits.json   ForgivingFactorBits reference/trial sizes per layer
  tests/golden/autoqkeras_defaults.json  AutoQKeras default menus, limits and goal settings

The jet model is built exactly as hqrun structures it (docs/architecture.md): Input(16) ->
dense_1 -> relu_1 -> dense_2 -> relu_2 -> dense_3 -> relu_3 -> dense_4 -> softmax, so QTools's
per-layer rows map one to one onto hqrun's named children.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import setup_env, versions, write_json  # noqa: E402

setup_env()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from qkeras import QActivation, QDense  # noqa: E402
from qkeras.autoqkeras import autoqkeras_internal  # noqa: E402
from qkeras.autoqkeras.forgiving_metrics import ForgivingFactorBits, ForgivingFactorPower  # noqa: E402
from qkeras.autoqkeras.quantization_config import default_quantization_config  # noqa: E402
from qkeras.qtools import run_qtools  # noqa: E402
from qkeras.qtools import settings as qtools_settings  # noqa: E402
from qkeras.qtools.config_public import config_settings  # noqa: E402

SEED = 20210511
LAYERS = [("dense_1", 64), ("relu_1", None), ("dense_2", 32), ("relu_2", None),
          ("dense_3", 32), ("relu_3", None), ("dense_4", 5), ("softmax", None)]

# Quantization plans, written as hqrun plans are (layer -> {kernel, bias, activation}).
Q6 = {
    "dense_1": {"kernel": "quantized_bits(6,0,alpha=1)", "bias": "quantized_bits(6,0,alpha=1)"},
    "relu_1": {"activation": "quantized_relu(6,0)"},
    "dense_2": {"kernel": "quantized_bits(6,0,alpha=1)", "bias": "quantized_bits(6,0,alpha=1)"},
    "relu_2": {"activation": "quantized_relu(6,0)"},
    "dense_3": {"kernel": "quantized_bits(6,0,alpha=1)", "bias": "quantized_bits(6,0,alpha=1)"},
    "relu_3": {"activation": "quantized_relu(6,0)"},
    "dense_4": {"kernel": "quantized_bits(6,0,alpha=1)", "bias": "quantized_bits(6,0,alpha=1)"},
}
HETERO = {
    "dense_1": {"kernel": "quantized_bits(4,0,alpha=1)", "bias": "quantized_bits(8,3,alpha=1)"},
    "relu_1": {"activation": "quantized_relu(3,1)"},
    "dense_2": {"kernel": "ternary(alpha=1)", "bias": "quantized_bits(4,0,alpha=1)"},
    "relu_2": {"activation": "quantized_relu(4,0)"},
    "dense_3": {"kernel": "quantized_po2(4,1)", "bias": "quantized_bits(8,3,alpha=1)"},
    "relu_3": {"activation": "quantized_relu(8,3)"},
    "dense_4": {"kernel": "quantized_bits(8,2,alpha=1)", "bias": "quantized_bits(8,3,alpha=1)"},
}
# What an AutoQKeras trial over the default menus can produce, written verbatim from the menus
# (so QDense turns the alpha-less kernels into alpha="auto_po2" as it does in a real search).
MENU = {
    "dense_1": {"kernel": "quantized_bits(4,0,1)", "bias": "quantized_bits(8,3,1)"},
    "relu_1": {"activation": "quantized_relu(4,2)"},
    "dense_2": {"kernel": "binary", "bias": "quantized_po2(4,8)"},
    "relu_2": {"activation": "quantized_relu_po2(4,4)"},
    "dense_3": {"kernel": "stochastic_ternary", "bias": "quantized_bits(4,0,1)"},
    "relu_3": {"activation": "quantized_relu(3,1)"},
    "dense_4": {"kernel": "quantized_po2(4,1)", "bias": "quantized_bits(8,3,1)"},
}
PLANS = {"float": None, "q6": Q6, "hetero": HETERO, "menu": MENU}

# ForgivingFactorPower's own defaults (autoqkeras/forgiving_metrics/forgiving_energy.py).
ENERGY_DEFAULT = {
    "process": "horowitz",
    "parameters_on_memory": ["fixed", "fixed"],
    "activations_on_memory": ["dram", "dram"],
    "min_sram_size": [0, 0],
    "rd_wr_on_io": [True, True],
    "source_quantizers": None,
    "trained_model": False,
    "reference_internal": "fp32",
    "reference_accumulator": "fp32",
}
# The energy goal of QKeras's AutoQKeras example notebook (google/qkeras notebook/AutoQKeras.ipynb).
ENERGY_NOTEBOOK = {
    "process": "horowitz",
    "parameters_on_memory": ["sram", "sram"],
    "activations_on_memory": ["sram", "sram"],
    "min_sram_size": [0, 0],
    "rd_wr_on_io": [False, False],
    "source_quantizers": ["int8"],
    "trained_model": False,
    "reference_internal": "int8",
    "reference_accumulator": "int32",
}
SETTINGS = {"autoqkeras_default": ENERGY_DEFAULT, "notebook": ENERGY_NOTEBOOK}
# The notebook's stand-alone QTools cell (float reference, fp32 internals, 16 MB SRAM).
NOTEBOOK_QTOOLS_CELL = {
    "source_quantizers": "quantized_bits(8,0,1) object", "keras_quantizer": "fp32",
    "keras_accumulator": "fp32", "for_reference": True, "weights_on_memory": "sram",
    "activations_on_memory": "sram", "min_sram_size": 8 * 16 * 1024 * 1024, "rd_wr_on_io": False,
}

BITS_GOAL_DEFAULT = {"delta_p": 8.0, "delta_n": 8.0, "rate": 2.0, "stress": 1.0,
                     "input_bits": 8, "output_bits": 8, "ref_bits": 8,
                     "config": {"default": ["parameters", "activations"]}}


def build_model(plan: dict | None) -> tf.keras.Model:
    """The jet DNN; plan=None gives the float Keras model AutoQKeras uses as reference."""
    init = tf.keras.initializers.GlorotUniform(seed=SEED)
    x = inp = tf.keras.layers.Input((16,), name="input")
    for i, (name, units) in enumerate(LAYERS):
        if name == "softmax":
            x = tf.keras.layers.Activation("softmax", name=name)(x)
        elif units is not None:
            if plan is None:
                x = tf.keras.layers.Dense(units, name=name, kernel_initializer=init)(x)
            else:
                x = QDense(units, name=name, kernel_initializer=init,
                           kernel_quantizer=plan[name]["kernel"],
                           bias_quantizer=plan[name].get("bias"))(x)
        else:
            if plan is None:
                x = tf.keras.layers.Activation("relu", name=name)(x)
            else:
                x = QActivation(plan[name]["activation"], name=name)(x)
    return tf.keras.Model(inp, x, name="jet_dnn")


def _q(qz) -> dict | None:
    """Plain description of a QTools quantizer object (the fields energies depend on)."""
    if qz is None:
        return None
    d = {"name": qz.name, "bits": _num(qz.bits), "int_bits": _num(getattr(qz, "int_bits", None)),
         "is_signed": _num(getattr(qz, "is_signed", None)),
         "is_floating_point": bool(getattr(qz, "is_floating_point", False)),
         "is_po2": bool(getattr(qz, "is_po2", False)), "mode": _num(getattr(qz, "mode", None))}
    if getattr(qz, "is_po2", False):
        d["max_val_po2"] = _num(getattr(qz, "max_val_po2", None))
    return d


def _num(v):
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return int(f) if f.is_integer() else f


def layer_types(q: run_qtools.QTools) -> dict:
    """Per-layer data types QTools inferred: operand/accumulator widths, op kind, op count."""
    out = {}
    lmap = q._layer_map["layer_data_type_map"]
    for layer, item in lmap.items():
        get = (lambda k: item.get(k)) if isinstance(item, dict) else (lambda k: getattr(item, k, None))
        row = {"class_name": layer.__class__.__name__,
               "operation_count": _num(get("operation_count")),
               "input_quantizers": [_q(x) for x in (get("input_quantizer_list") or [])],
               "weight_quantizer": _q(get("weight_quantizer")),
               "bias_quantizer": _q(get("bias_quantizer")),
               "output_quantizer": _q(get("output_quantizer")),
               "w_shapes": _shape(get("w_shapes")), "b_shapes": _shape(get("b_shapes")),
               "output_shapes": _shape(get("output_shapes"))}
        mult = get("multiplier")
        if mult is not None:
            row["multiplier"] = {"implemented_as": mult.implemented_as(),
                                 "gate_factor": _num(mult.gate_factor),
                                 "gate_bits": _num(mult.gate_bits),
                                 "output": _q(mult.output)}
        acc = get("accumulator")
        if acc is not None:
            row["accumulator"] = {"implemented_as": acc.implemented_as(), "output": _q(acc.output)}
        out[layer.name] = row
    return out


def _shape(s):
    if s is None:
        return None
    try:
        return [(-1 if d is None else int(d)) for d in s]
    except TypeError:
        return _num(s)


def _jsonable(o):
    return json.loads(json.dumps(o, default=lambda v: _num(v) if not isinstance(v, (list, tuple)) else list(v)))


def run_energy(model, s: dict, for_reference: bool) -> dict:
    """One QTools run exactly as ForgivingFactorPower.get_reference/get_trial make it."""
    idx = 0 if for_reference else 1
    q = run_qtools.QTools(
        model, process=s["process"],
        source_quantizers=s["reference_internal"] if for_reference else s["source_quantizers"],
        is_inference=s["trained_model"], weights_path=None,
        keras_quantizer=s["reference_internal"], keras_accumulator=s["reference_accumulator"],
        for_reference=for_reference)
    ed = q.pe(weights_on_memory=s["parameters_on_memory"][idx],
              activations_on_memory=s["activations_on_memory"][idx],
              min_sram_size=s["min_sram_size"][idx], rd_wr_on_io=s["rd_wr_on_io"][idx])
    inc = qtools_settings.cfg.include_energy
    return {
        "energy_dict": _jsonable(ed),
        "energy_sum": int(q.extract_energy_sum(inc, ed)),
        "energy_profile": _jsonable(q.extract_energy_profile(inc, ed)),
        "qtools_output_dict": _jsonable(q._output_dict),
        "layer_types": _jsonable(layer_types(q)),
    }


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--outdir", default=os.path.join(here, "..", "..", "tests", "golden"))
    args = ap.parse_args()
    outdir = os.path.abspath(args.outdir)
    tf.random.set_seed(SEED)

    models = {name: build_model(plan) for name, plan in PLANS.items()}

    energy = {"description": (
        "QTools (QKeras 0.9.0) energies in pJ for the jet DNN, generated by "
        "tools/qkeras_oracle/gen_qtools.py. For each energy setting: 'reference' is "
        "ForgivingFactorPower.get_reference on the float model (what AutoQKeras divides by), "
        "'trials[plan]' is get_trial on each model. energy_dict is QTools pe() output "
        "(per-layer inputs/outputs/parameters/op_cost rounded to 0.01 pJ by QTools, total_cost "
        "= int of the unrounded sum of all four over all layers); energy_sum is "
        "extract_energy_sum with cfg.include_energy (the number AutoQKeras uses); "
        "energy_profile[layer].total is that per-layer sum."),
        "generator": {"script": "tools/qkeras_oracle/gen_qtools.py", "seed": SEED,
                      "versions": versions()},
        "model": {"input": 16, "layers": [[n, u] for n, u in LAYERS]},
        "plans": {k: v for k, v in PLANS.items()},
        "settings": {}, "include_energy": None, "process_constants": None,
        "notebook_qtools_cell": NOTEBOOK_QTOOLS_CELL}

    for sname, s in SETTINGS.items():
        fp = ForgivingFactorPower(8.0, 8.0, 2.0, stress=1.0, **copy.deepcopy(s))
        ref_value = float(fp.get_reference(models["float"]))
        ref = run_energy(models["float"], s, for_reference=True)
        assert ref["energy_sum"] == int(fp.reference_size), (ref["energy_sum"], fp.reference_size)
        block = {"params": s, "reference": ref, "reference_size_times_stress": ref_value,
                 "trials": {}}
        for pname, model in models.items():
            trial_value = float(fp.get_trial(model))
            t = run_energy(model, s, for_reference=False)
            assert t["energy_sum"] == int(trial_value), (pname, t["energy_sum"], trial_value)
            t["forgiving_delta"] = float(fp.delta())
            # QTools with for_reference=True on this (quantized) model: every quantizer is
            # replaced by reference_internal, so this should equal the float-model reference.
            rt = run_energy(model, s, for_reference=True)
            t["reference_on_this_model"] = {"energy_sum": rt["energy_sum"],
                                            "energy_dict": rt["energy_dict"]}
            block["trials"][pname] = t
        energy["settings"][sname] = block
        print(sname, "reference", ref["energy_sum"],
              {p: block["trials"][p]["energy_sum"] for p in models})

    # The notebook's standalone QTools cell, on the float model.
    q = run_qtools.QTools(models["float"], process="horowitz",
                          source_quantizers=[__import__("qkeras").quantized_bits(8, 0, 1)],
                          is_inference=False, weights_path=None, keras_quantizer="fp32",
                          keras_accumulator="fp32", for_reference=True)
    ed = q.pe(weights_on_memory="sram", activations_on_memory="sram",
              min_sram_size=8 * 16 * 1024 * 1024, rd_wr_on_io=False)
    inc = qtools_settings.cfg.include_energy
    energy["notebook_qtools_cell"]["float_model"] = {
        "energy_dict": _jsonable(ed), "energy_sum": int(q.extract_energy_sum(inc, ed)),
        "layer_types": _jsonable(layer_types(q))}

    c = qtools_settings.cfg
    energy["include_energy"] = _jsonable(c.include_energy)
    energy["process_constants"] = {
        "note": "numpy poly1d coefficients, highest power first, after cfg.update('horowitz', "
                "config_settings) (QTools overrides settings.py's sram_rd with config_public's)",
        "fpm_add": list(map(float, c.fpm_add.coeffs)), "fpm_mul": list(map(float, c.fpm_mul.coeffs)),
        "fp16_add": list(map(float, c.fp16_add.coeffs)), "fp16_mul": list(map(float, c.fp16_mul.coeffs)),
        "fp32_add": list(map(float, c.fp32_add.coeffs)), "fp32_mul": list(map(float, c.fp32_mul.coeffs)),
        "sram_rd": list(map(float, c.sram_rd.coeffs)), "dram_rd": list(map(float, c.dram_rd.coeffs)),
        "sram_mul_factor": float(c.sram_mul_factor), "dram_mul_factor": float(c.dram_mul_factor),
        "default_source_quantizer": c.default_source_quantizer,
        "default_interm_quantizer": c.default_interm_quantizer,
        "config_public": _jsonable(config_settings)}
    write_json(os.path.join(outdir, "qtools_energy.json"), energy)

    # ---- AutoQKeras "bits" goal -------------------------------------------------------
    fb = ForgivingFactorBits(**copy.deepcopy(BITS_GOAL_DEFAULT))
    ref_size = float(fb.get_reference(models["float"]))
    bits = {"description": (
        "AutoQKeras ForgivingFactorBits (QKeras 0.9.0) with AutoQKeras's default bits goal, for "
        "the jet DNN; generated by tools/qkeras_oracle/gen_qtools.py. reference = float model; "
        "per_layer = compute_model_size's dict {parameters, activations, total} in bits."),
        "generator": {"script": "tools/qkeras_oracle/gen_qtools.py", "seed": SEED,
                      "versions": versions()},
        "goal_params": BITS_GOAL_DEFAULT, "plans": {k: v for k, v in PLANS.items()},
        "reference": {"size": ref_size, "parameters": _num(fb.ref_p),
                      "activations": _num(fb.ref_a),
                      "per_layer": _jsonable(fb.get_reference_stats())},
        "trials": {}}
    for pname, model in models.items():
        size = fb.get_trial(model)
        bits["trials"][pname] = {
            "size": _num(size), "parameters": _num(fb.total_p_bits),
            "activations": _num(fb.total_a_bits), "per_layer": _jsonable(fb.trial_size_dict),
            "forgiving_delta": float(fb.delta()), "total_factor": float(fb.get_total_factor())}
    print("bits reference", ref_size, {p: bits["trials"][p]["size"] for p in models})
    write_json(os.path.join(outdir, "autoqkeras_bits.json"), bits)

    # ---- AutoQKeras defaults ----------------------------------------------------------
    menus_bits = {kind: dict(menu) for kind, menu in default_quantization_config.items()}
    defaults = {
        "description": "AutoQKeras 0.9.0 defaults, read from the installed QKeras by "
                       "tools/qkeras_oracle/gen_qtools.py.",
        "generator": {"script": "tools/qkeras_oracle/gen_qtools.py", "versions": versions()},
        "default_quantization_config": menus_bits,
        "limit": {"default_when_absent": 8,
                  "note": "AutoQKeras(limit=None) -> {}. A 'default' key only pads the lists of "
                          "classes that ARE named (to [kernel, bias, activation], 8 bits when "
                          "'default' is absent); a layer is searched only if its class name or a "
                          "regex matching its name is a key of limit, so limit=None searches "
                          "nothing (AutoQKeras._get_quantizer returns None)."},
        "registered_layers": list(getattr(autoqkeras_internal, "REGISTERED_LAYERS", [])),
        "goals": {
            "bits": BITS_GOAL_DEFAULT,
            "bits_is_default_goal": True,
            "energy": {"delta_p": 8.0, "delta_n": 8.0, "rate": 2.0, "stress": 1.0,
                       **ENERGY_DEFAULT},
            "energy_notebook": {"delta_p": 8.0, "delta_n": 8.0, "rate": 2.0, "stress": 1.0,
                                **ENERGY_NOTEBOOK},
        },
        "forgiving_factor": "score = metric * (1 + delta); delta = (delta_p if trial < ref else "
                            "delta_n)/100 * ln(ref/trial)/ln(rate); delta_p, delta_n, rate are "
                            "cast to np.float32; ref = stress * reference size.",
        "autoqkeras_kwargs": {"mode": "random", "transfer_weights": False,
                              "activation_bits": 4, "tune_filters": "none",
                              "learning_rate_optimizer": False, "overwrite": True},
    }
    write_json(os.path.join(outdir, "autoqkeras_defaults.json"), defaults)
    print("wrote qtools_energy.json, autoqkeras_bits.json, autoqkeras_defaults.json to", outdir)


if __name__ == "__main__":
    main()
