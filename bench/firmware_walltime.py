"""Wall time of the RTL backend on the Q6 jet model: write, simulate, synthesise, per stage.

    python bench/firmware_walltime.py                         # combinational and 3 stages
    python bench/firmware_walltime.py --latencies 0 --samples 500 --simulator iverilog
    python bench/firmware_walltime.py --epochs 0 --no-synth   # random weights, no Yosys

The model is ``build_model({"name": "jet_dnn"}, "q6")`` (16 -> 64 -> 32 -> 32 -> 5, 6-bit
kernels, biases and ReLUs) trained for ``--epochs`` epochs (plain Adam loop, one thread) on the
jet sample shipped with hqrun; the samples simulated are its whole test split (4,000 jets) unless
``--samples`` caps them. For each latency (0 = combinational, L = L register stages) it times:

- *write*: IR → alkaid trace → Verilog project on disk;
- *simulate*: one simulator build and run over every sample, compared bit for bit with
  hqrun's emulation (which the firmware tests tie to the PyTorch model);
- *synthesise*: Yosys ``synth_xilinx -family xcup -noiopad -flatten`` (LUT mapping ``--mapper``,
  classic ABC by default) → LUT/FF/CARRY/DSP/BRAM.

It prints seconds per stage, the Yosys counts and alkaid's own LUT/FF estimate with its relative
error, and writes everything to ``--out`` (JSON) when given. Run it under ``nice`` on a shared
machine; a synthesis of the jet model takes minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hqrun.data.datasets import load_dataset  # noqa: E402
from hqrun.firmware import build_ir, emulate  # noqa: E402
from hqrun.firmware.backends import rtl  # noqa: E402
from hqrun.firmware.emulate import quantize_input, to_values  # noqa: E402
from hqrun.models import build_model  # noqa: E402


def trained_q6(epochs: int, seed: int = 0) -> tuple[torch.nn.Module, np.ndarray, np.ndarray]:
    """The Q6 jet model after ``epochs`` epochs of Adam, and the test split (x, y)."""
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    data = load_dataset({"name": "jets_sample", "source": "sample"}, seed=seed)
    model = build_model({"name": "jet_dnn"}, "q6", seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = torch.as_tensor(data.X_train)
    y = torch.as_tensor(data.y_train)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 256):
            idx = perm[i:i + 256]
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    return model, data.X_test, data.y_test


def run_one(ir, x_codes, emu, latency: int, root: Path, args) -> dict:
    opts = rtl.RtlOptions(latency_cycles=latency, simulator=args.simulator,
                          synth_timeout_s=args.synth_timeout, mapper=args.mapper,
                          yosys=args.yosys)
    row: dict = {"latency_cycles": latency}
    t0 = time.perf_counter()
    project = rtl.write(ir, root / f"q6_L{latency}", opts)
    row["write_s"] = round(time.perf_counter() - t0, 2)
    row["estimate"] = project.estimate
    t0 = time.perf_counter()
    check = rtl.verify(project, ir, x_codes, emu)
    row["simulate_s"] = round(time.perf_counter() - t0, 2)
    row["simulation"] = check.to_dict()
    if not args.no_synth:
        t0 = time.perf_counter()
        syn = rtl.synthesis_status(project, opts)
        row["synthesise_s"] = round(time.perf_counter() - t0, 2)
        row["synthesis"] = {k: v for k, v in syn.items() if k != "script"}
        row["synthesis_script"] = syn.get("script")
        if "lut" in syn:
            row["lut_relative_error"] = rtl.report.relative_error(project.estimate["lut"], syn["lut"])
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="training epochs (0: random weights)")
    parser.add_argument("--samples", type=int, default=0, help="cap on simulated samples (0: all)")
    parser.add_argument("--latencies", type=int, nargs="+", default=[0, 3])
    parser.add_argument("--simulator", default="auto", choices=["auto", "iverilog", "verilator"])
    parser.add_argument("--synth-timeout", type=float, default=1800.0)
    parser.add_argument("--mapper", default="abc", choices=["abc", "abc9"],
                        help="Yosys LUT mapping (abc9 did not finish Q6 within 30 min in yowasp)")
    parser.add_argument("--yosys", default="auto", choices=["auto", "yowasp", "path"])
    parser.add_argument("--no-synth", action="store_true")
    parser.add_argument("--keep", type=Path, default=None, help="keep the projects in this folder")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    model, x_test, y_test = trained_q6(args.epochs)
    train_s = time.perf_counter() - t0
    if args.samples:
        x_test, y_test = x_test[: args.samples], y_test[: args.samples]
    ir = build_ir(model, (16,))
    x_codes = quantize_input(x_test, ir.input_type)
    emu = emulate(ir, to_values(x_codes, ir.input_type))
    logits = emu.values(ir.last_quantized().name)
    print(f"Q6 jet model: {args.epochs} epochs in {train_s:.1f} s; {len(x_codes)} test samples; "
          f"emulated accuracy {np.mean(np.argmax(logits, 1) == y_test):.4f}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="hqrun-bench-rtl-") as tmp:
        root = args.keep or Path(tmp)
        for latency in args.latencies:
            row = run_one(ir, x_codes, emu, latency, root, args)
            rows.append(row)
            sim, syn = row["simulation"], row.get("synthesis", {})
            print(f"\nlatency {latency} cycles: write {row['write_s']} s, simulate {row['simulate_s']} s "
                  f"({sim['simulator']}, {sim['summary']})")
            print(f"  alkaid estimate: {row['estimate']['lut']} LUT, {row['estimate']['ff']} FF")
            if "lut" in syn:
                print(f"  yosys ({syn['tool_version'].split('(')[0].strip()}, {syn['family']}, "
                      f"{syn['abc']}): synthesise {row['synthesise_s']} s -> LUT {syn['lut']}, "
                      f"FF {syn['ff']}, "
                      f"CARRY {syn['carry']}, DSP {syn['dsp']}, BRAM {syn['bram']}, INV {syn['inv']}, "
                      f"MUXF {syn['muxf']}; estimate error {row['lut_relative_error']:+.1%}")
            elif syn:
                print(f"  synthesis {syn.get('status')}: {syn.get('reason')}")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
