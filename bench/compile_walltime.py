"""trainer.compile on or off: end-to-end wall time of a short Q6 training, and its step rate.

Why: compiling must pay for itself within a short run (a search trial trains a few epochs), so
the number that decides the default is the whole ``fit_and_evaluate`` call, compilation
included, on the same data, alternating the two settings in one process (so machine load hits
both alike). The first compiled run fills Inductor's on-disk cache; later ones reuse it, which is
what a search's trials see, so both the first and the best later run are reported.

    OMP_NUM_THREADS=1 python bench/compile_walltime.py [--epochs 3] [--samples 64000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from train_throughput import make_data, make_model


def one_run(splits, epochs: int, compile: bool, seed: int) -> tuple[float, float]:
    """(end-to-end wall seconds, training samples per CPU-second) of one 3-epoch Q6 run."""
    from hqrun.train.config import TrainerConfig
    from hqrun.train.runner import fit_and_evaluate

    cfg = TrainerConfig(max_epochs=epochs, early_stopping=False, scheduler="none", progress_bar="false",
                        checkpoint=False, csv_log=False, compile=compile)
    started = time.perf_counter()
    torch.manual_seed(seed)
    result = fit_and_evaluate(splits, cfg, model=make_model("q6"), seed=seed, evaluate_test=False)
    wall = time.perf_counter() - started
    return wall, len(splits.y_train) * epochs / result.metrics["train_cpu_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=64_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    splits = make_data(args.samples, args.samples // 4)
    runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for r in range(args.repeats):
        for compile in (False, True):
            runs[compile].append(one_run(splits, args.epochs, compile, r))
    print(f"Q6 jet model, {args.samples} samples x {args.epochs} epochs, batch 1024, 1 thread, "
          f"load average {os.getloadavg()[0]:.1f}")
    for compile, rows in runs.items():
        walls = ", ".join(f"{w:.1f}" for w, _ in rows)
        print(f"compile={str(compile).lower():5s}: end-to-end wall s per run [{walls}]  "
              f"best {max(s for _, s in rows):,.0f} training samples per CPU-second")


if __name__ == "__main__":
    main()
