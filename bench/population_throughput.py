"""Population training speed: member-samples/s for K = 1, 4, 16, 64 against one model alone.

Why: training K candidate plans as one batched model (hqrun.train.population) pays the
per-operation overhead once for all K; this prints how far that goes per member. Members are
jet models (16->64->32->32->5) with homogeneous plans of 3..8 bits (quantized_bits(b,0,alpha=1)
weights, quantized_relu(b,0) activations), cycling, so widths differ inside each population.
The solo reference is hqrun's ordinary Lightning training (fit_and_evaluate) of the Q6 member.
Everything runs in one process, alternating, one thread; best of ``--repeats`` per setting, by
wall clock and by CPU time.

    OMP_NUM_THREADS=1 python bench/population_throughput.py [--samples 16000] [--epochs 2]
                                                           [--sizes 1 4 16 64] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from train_throughput import make_data


def member(bits: int, seed: int) -> torch.nn.Module:
    from omegaconf import OmegaConf

    from hqrun.models import build_model, load_plan

    torch.manual_seed(seed)
    plan = {"name": f"q{bits}", "input": None, "layers": {},
            "default": {"kernel": f"quantized_bits({bits},0,alpha=1)", "bias": f"quantized_bits({bits},0,alpha=1)",
                        "activation": f"quantized_relu({bits},0)"}}
    cfg = OmegaConf.create({"name": "jet_dnn", "n_inputs": 16, "n_classes": 5, "hidden": [64, 32, 32]})
    return build_model(cfg, load_plan(plan))


def trainer_cfg(epochs: int):
    from hqrun.train.config import TrainerConfig

    return TrainerConfig(max_epochs=epochs, early_stopping=False, scheduler="none", progress_bar="false",
                         checkpoint=False, csv_log=False)


def time_population(splits, k: int, epochs: int) -> tuple[float, float]:
    from hqrun.train.population_runner import fit_population

    members = [member(3 + (i + 3) % 6, i) for i in range(k)]  # Q6 first, then 7, 8, 3, 4, 5, ...
    wall, cpu = time.perf_counter(), time.process_time()
    fit_population(splits, trainer_cfg(epochs), members, seed=0)
    return time.perf_counter() - wall, time.process_time() - cpu


def time_solo(splits, epochs: int) -> tuple[float, float]:
    from hqrun.train.runner import fit_and_evaluate

    model = member(6, 0)
    wall, cpu = time.perf_counter(), time.process_time()
    fit_and_evaluate(splits, trainer_cfg(epochs), model=model, seed=0, evaluate_test=False)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=16_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    splits = make_data(args.samples, args.samples // 4)
    inf = (float("inf"), float("inf"))
    best = {"solo": inf, **{k: inf for k in args.sizes}}
    loads = []
    small = make_data(2048, 512)  # warm-up: imports and first-call costs stay out of the timings
    time_solo(small, 1)
    time_population(small, 2, 1)
    for _ in range(args.repeats):
        loads.append(os.getloadavg()[0])
        best["solo"] = tuple(map(min, best["solo"], time_solo(splits, args.epochs)))
        for k in args.sizes:
            best[k] = tuple(map(min, best[k], time_population(splits, k, args.epochs)))
    seen = args.samples * args.epochs
    solo_wall, solo_cpu = seen / best["solo"][0], seen / best["solo"][1]
    print(f"jet model Q3..Q8 members, {args.samples} samples x {args.epochs} epochs (+ validation on "
          f"{args.samples // 4}), batch 1024, 1 thread, best of {args.repeats}; load average at repeat "
          f"starts {', '.join(f'{x:.1f}' for x in loads)} on {os.cpu_count()} cores "
          "(end-to-end fit incl. Trainer setup and final evaluation)")
    print(f"{'':14s}{'member-samples/s wall':>24s}{'per CPU-s':>14s}{'speed-up/member (wall, CPU)':>30s}")
    print(f"{'solo (Q6)':14s}{solo_wall:>24,.0f}{solo_cpu:>14,.0f}{'1.00, 1.00':>30s}")
    for k in args.sizes:
        wall, cpu = k * seen / best[k][0], k * seen / best[k][1]
        print(f"{'K=' + str(k):14s}{wall:>24,.0f}{cpu:>14,.0f}{f'{wall / solo_wall:.2f}, {cpu / solo_cpu:.2f}':>30s}")


if __name__ == "__main__":
    main()
