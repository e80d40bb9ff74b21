"""Training speed side by side: hqrun vs QKeras (its own Python), in turns, in one run.

Why: the issue's targets are ratios (hqrun Q6 QAT >= 2x QKeras per core, QAT/float <= 1.1), and
on a shared machine only numbers measured in the same run, alternating, are comparable. QKeras
is never a project dependency: ``--peer-python`` names an interpreter that has tensorflow-cpu
2.21, tf-keras 2.21 and qkeras 0.9.0 (docs/data_and_training.md says how to build one); that process runs
bench/peer/qkeras_train.py and never imports hqrun. Without ``--peer-python`` only hqrun's
numbers are printed, and the output says the peer was not run.

Both sides: jet model 16->64->32->32->5, float and Q6 (quantized_bits(6,0,alpha=1) weights,
quantized_relu(6,0) activations), Adam, batch 1024, one thread, a validation pass per epoch,
the same synthetic data (handed to the peer as an .npz of arrays). Each round runs the peer and
then hqrun; the best round per side is reported, by wall clock and by CPU time.

    OMP_NUM_THREADS=1 python bench/peer_throughput.py [--peer-python /path/to/python]
                      [--samples 64000] [--epochs 3] [--rounds 3] [--compile]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from train_throughput import make_data, make_model

PEER_SCRIPT = Path(__file__).with_name("peer") / "qkeras_train.py"


def hqrun_fit(splits, quant: str | None, epochs: int, batch_size: int, compile: bool) -> list[float]:
    """[wall_s, cpu_s] of hqrun's training (Lightning, trainer.fit only)."""
    from hqrun.train.config import TrainerConfig
    from hqrun.train.runner import fit_and_evaluate

    cfg = TrainerConfig(max_epochs=epochs, batch_size=batch_size, early_stopping=False, scheduler="none",
                        progress_bar="false", checkpoint=False, csv_log=False, compile=compile)
    torch.manual_seed(0)
    result = fit_and_evaluate(splits, cfg, model=make_model(quant), seed=0, evaluate_test=False)
    return [result.metrics["train_time_s"], result.metrics["train_cpu_s"]]


def peer_fit(python: str, data_file: str, epochs: int, batch_size: int) -> dict:
    """The peer's JSON line: {"qat": [wall, cpu], "float": [wall, cpu], "versions": ...}."""
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([python, str(PEER_SCRIPT), data_file, "--epochs", str(epochs),
                           "--batch-size", str(batch_size)], capture_output=True, text=True, env=env,
                          timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"the peer ({python}) failed with exit status {done.returncode}:\n"
                         f"{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer-python", default=None, help="interpreter with qkeras 0.9 / tf-keras 2.21")
    parser.add_argument("--samples", type=int, default=64_000)
    parser.add_argument("--val", type=int, default=16_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="hqrun with trainer.compile=true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    splits = make_data(args.samples, args.val)
    seen = args.samples * args.epochs
    inf = [float("inf"), float("inf")]
    best = {("hqrun", "qat"): inf, ("hqrun", "float"): inf, ("qkeras", "qat"): inf, ("qkeras", "float"): inf}
    versions = None
    loads = []
    with tempfile.TemporaryDirectory() as tmp:
        data_file = os.path.join(tmp, "jets.npz")
        np.savez(data_file, Xt=splits.X_train, yt=splits.y_train, Xv=splits.X_val, yv=splits.y_val)
        for _ in range(args.rounds):
            loads.append(os.getloadavg()[0])
            if args.peer_python:
                peer = peer_fit(args.peer_python, data_file, args.epochs, args.batch_size)
                versions = peer["versions"]
                for kind in ("qat", "float"):
                    best["qkeras", kind] = [min(a, b) for a, b in zip(best["qkeras", kind], peer[kind])]
            for kind, quant in (("qat", "q6"), ("float", None)):
                times = hqrun_fit(splits, quant, args.epochs, args.batch_size, args.compile)
                best["hqrun", kind] = [min(a, b) for a, b in zip(best["hqrun", kind], times)]
    rate = {k: (seen / v[0], seen / v[1]) for k, v in best.items() if v[0] < float("inf")}
    print(f"jet model, {args.samples} samples x {args.epochs} epochs, batch {args.batch_size}, 1 thread, "
          f"best of {args.rounds} rounds taken in turns; load average at round starts "
          f"{', '.join(f'{x:.1f}' for x in loads)} on {os.cpu_count()} cores")
    print(f"{'':24s}{'wall samples/s':>16s}{'CPU samples/s':>16s}")
    for (tool, kind), (wall, cpu) in rate.items():
        print(f"{tool + ' ' + kind:24s}{wall:>16,.0f}{cpu:>16,.0f}")

    def ratio(a, b) -> str:
        return f"{rate[a][0] / rate[b][0]:.2f} (wall), {rate[a][1] / rate[b][1]:.2f} (CPU)"

    print(f"hqrun QAT/float slowdown: {rate['hqrun', 'float'][0] / rate['hqrun', 'qat'][0]:.2f} (wall), "
          f"{rate['hqrun', 'float'][1] / rate['hqrun', 'qat'][1]:.2f} (CPU)   target <= 1.1")
    if args.peer_python:
        print(f"hqrun/QKeras Q6 QAT     : {ratio(('hqrun', 'qat'), ('qkeras', 'qat'))}   target >= 2")
        print(f"hqrun/QKeras float      : {ratio(('hqrun', 'float'), ('qkeras', 'float'))}")
        print(f"QKeras QAT/float slowdown: {rate['qkeras', 'float'][0] / rate['qkeras', 'qat'][0]:.2f} (wall)")
        print(f"peer versions: {versions}")
    else:
        print("peer (QKeras) not run: give --peer-python PATH to an interpreter with tensorflow-cpu 2.21, "
              "tf-keras 2.21 and qkeras 0.9.0 to measure the ratios.")
    print(f"hqrun trainer.compile={str(args.compile).lower()}, python {sys.version.split()[0]}, "
          f"torch {torch.__version__}, measured {time.strftime('%Y-%m-%d %H:%M')}")


if __name__ == "__main__":
    main()
