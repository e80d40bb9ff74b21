"""Training throughput: hqrun's Lightning training vs a plain PyTorch loop, same run, same data.

Why: Lightning buys checkpoints, early stopping, schedules and logs, but each training step passes
through its hooks. The search runs thousands of short trainings, so that per-step overhead must
stay small (target: Lightning >= 0.8x the plain loop's samples/s).

Both sides train the same architecture (the jet model 16→64→32→32→5, built by
``hqrun.models`` when ``--quant`` is given and that package is present, else an equivalent
``nn.Sequential``), on the same in-memory data, with the same optimiser, batch size and per-epoch
reshuffle, and both run a validation pass after every epoch (a real training loop needs it to pick
the best epoch). Runs alternate (plain, Lightning, plain, ...) and the best of ``--repeats`` is
reported for each, both by wall clock and by this process's CPU time: on a machine shared with
other jobs the wall clock swings by 2x run to run, the CPU time much less.

    OMP_NUM_THREADS=1 python bench/train_throughput.py [--samples 64000] [--epochs 5] [--quant q6]
                                                       [--batches-per-step 1]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def make_data(n_train: int, n_val: int, seed: int = 0):
    """Synthetic 16-feature, 5-class data (the bench must not need a data file)."""
    from hqrun.data.datasets import Splits
    from hqrun.data.preprocess import Scaler

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, 16))
    n_test = n_val

    def draw(n):
        y = rng.integers(0, 5, size=n)
        X = (centres[y] + rng.normal(size=(n, 16))).astype(np.float32)
        return X, y.astype(np.int64)

    (Xt, yt), (Xv, yv), (Xs, ys) = draw(n_train), draw(n_val), draw(n_test)
    names = [f"f{i}" for i in range(16)]
    return Splits(Xt, yt, Xv, yv, Xs, ys, names, list("gqtwz"), Scaler.identity(16, names), "synthetic")


def make_model(quant: str | None) -> nn.Module:
    if quant:
        from omegaconf import OmegaConf

        from hqrun.models import build_model, load_plan

        root = os.path.join(os.path.dirname(__file__), "..", "conf")
        model_cfg = OmegaConf.load(os.path.join(root, "model", "jet_dnn.yaml"))
        return build_model(model_cfg, load_plan(os.path.join(root, "quant", f"{quant}.yaml")))
    return nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(),
                         nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 5))


def plain_loop(splits, model: nn.Module, epochs: int, batch_size: int, seed: int) -> tuple[float, float]:
    """The reference: shuffle, slice, step; validate once per epoch. Returns (wall, CPU) seconds."""
    from hqrun.train.module import make_optimizer

    X = torch.from_numpy(splits.X_train)
    y = torch.from_numpy(splits.y_train)
    Xv = torch.from_numpy(splits.X_val)
    yv = torch.from_numpy(splits.y_val)
    optimizer = make_optimizer(model.parameters(), lr=1e-3)
    start, start_cpu = time.perf_counter(), time.process_time()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed + epoch))
        Xe, ye = X[order], y[order]
        for i in range(0, len(ye), batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(Xe[i : i + batch_size]), ye[i : i + batch_size])
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            float(F.cross_entropy(model(Xv), yv))
    return time.perf_counter() - start, time.process_time() - start_cpu


def lightning_loop(splits, model: nn.Module, epochs: int, batch_size: int, seed: int,
                   batches_per_step: int | None = None) -> tuple[float, float]:
    """hqrun's training (Lightning), timed around ``trainer.fit`` only (build/eval excluded)."""
    from hqrun.train.config import TrainerConfig
    from hqrun.train.runner import fit_and_evaluate

    cfg = TrainerConfig(max_epochs=epochs, batch_size=batch_size, early_stopping=False,
                        scheduler="none", progress_bar="false", checkpoint=False, csv_log=False)
    if batches_per_step is not None:
        cfg.batches_per_step = batches_per_step
    result = fit_and_evaluate(splits, cfg, model=model, seed=seed, evaluate_test=False)
    return result.metrics["train_time_s"], result.metrics["train_cpu_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=64_000, help="training samples (paper: 64k)")
    parser.add_argument("--val", type=int, default=16_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quant", default=None, help="plan name under conf/quant (needs hqrun.models)")
    parser.add_argument("--batches-per-step", type=int, default=None,
                        help="mini-batches per Lightning step (default: trainer config default, 8)")
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    args = parser.parse_args()
    from hqrun.train.config import TrainerConfig

    torch.set_num_threads(args.threads)
    splits = make_data(args.samples, args.val)
    seen = args.samples * args.epochs
    inf = float("inf")
    best = {"plain": [inf, inf], "lightning": [inf, inf]}  # [wall, cpu] seconds, best of repeats
    for r in range(args.repeats):
        torch.manual_seed(r)
        times = plain_loop(splits, make_model(args.quant), args.epochs, args.batch_size, r)
        best["plain"] = [min(a, b) for a, b in zip(best["plain"], times)]
        torch.manual_seed(r)
        times = lightning_loop(splits, make_model(args.quant), args.epochs, args.batch_size, r,
                               args.batches_per_step)
        best["lightning"] = [min(a, b) for a, b in zip(best["lightning"], times)]
    rates = {k: seen / v[0] for k, v in best.items()}
    cpu_rates = {k: seen / v[1] for k, v in best.items()}
    ratio = rates["lightning"] / rates["plain"]
    cpu_ratio = cpu_rates["lightning"] / cpu_rates["plain"]
    out = {"samples": args.samples, "epochs": args.epochs, "batch_size": args.batch_size,
           "threads": args.threads, "quant": args.quant or "float (nn.Sequential)",
           "batches_per_step": args.batches_per_step or TrainerConfig().batches_per_step,
           "plain_samples_per_s": round(rates["plain"]), "lightning_samples_per_s": round(rates["lightning"]),
           "ratio": round(ratio, 3),
           "plain_samples_per_cpu_s": round(cpu_rates["plain"]),
           "lightning_samples_per_cpu_s": round(cpu_rates["lightning"]),
           "cpu_ratio": round(cpu_ratio, 3), "target": ">= 0.8"}
    print(f"                   {'wall clock':>18} {'CPU time':>18}")
    print(f"plain torch loop : {rates['plain']:>12,.0f} samples/s {cpu_rates['plain']:>12,.0f} samples/s")
    print(f"hqrun (Lightning): {rates['lightning']:>12,.0f} samples/s {cpu_rates['lightning']:>12,.0f} samples/s")
    print(f"ratio            : {ratio:>18.3f} {cpu_ratio:>18.3f}")
    print(f"(target >= 0.8; {args.samples} x {args.epochs} epochs, "
          f"batch {args.batch_size}, {out['batches_per_step']} mini-batches per Lightning step, "
          f"{args.threads} thread(s), best of {args.repeats})")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(out, handle, indent=1)


if __name__ == "__main__":
    main()
