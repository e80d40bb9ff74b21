"""QAT overhead: one training epoch of the jet model with quantizers everywhere vs in float.

    python bench/quantizer_overhead.py                 # 800,000 x 16 samples, batch 1024, q6
    python bench/quantizer_overhead.py --samples 200000 --repeats 2 --plan q4

Both models are ``hqrun.models.build_model({"name": "jet_dnn"}, plan)`` (16 -> 64 -> 32 -> 32 -> 5),
trained with Adam (plus QKeras's weight-clip constraints, ``attach_weight_constraints``) on the
same in-memory random data, batched by contiguous slices, one torch thread. Epochs of the two models are interleaved (float, QAT, float, QAT, ...) so that load from
other processes on a shared machine hits both alike; the best epoch of each is reported (the
least disturbed one) together with the median. A plain ``torch.nn.Sequential`` epoch is timed too,
as a reference for what the layer classes themselves cost.

Targets (issue 2): QAT/float time ratio <= 1.3; QAT >= 900k samples/s on one thread (QKeras 0.9:
about 612k samples/s for the 6-bit model, float Keras about 850k, on this class of machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from hqrun.models import attach_weight_constraints, build_model  # noqa: E402


def plain_jet() -> torch.nn.Module:
    """The same network as plain PyTorch modules (reference for the layer overhead)."""
    return torch.nn.Sequential(
        torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32), torch.nn.ReLU(),
        torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 5),
    )


def epoch(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
          batch: int) -> tuple[float, float]:
    """One epoch over (x, y) in contiguous slices; returns (wall seconds, CPU seconds)."""
    loss_fn = torch.nn.functional.cross_entropy
    model.train()
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, x.shape[0], batch):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[i:i + batch]), y[i:i + batch])
        loss.backward()
        opt.step()
    return time.perf_counter() - start, time.process_time() - cpu


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=800_000)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3, help="epochs per model (interleaved)")
    parser.add_argument("--plan", default="q6", help="plan of the QAT model (name or YAML path)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--no-plain", action="store_true", help="skip the plain-torch reference")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.samples, 16, generator=gen)
    y = torch.randint(0, 5, (args.samples,), generator=gen)

    models: dict[str, torch.nn.Module] = {
        "float": build_model({"name": "jet_dnn"}, "float", seed=0),
        "qat": build_model({"name": "jet_dnn"}, args.plan, seed=0),
    }
    if not args.no_plain:
        torch.manual_seed(0)
        models["plain_torch"] = plain_jet()
    opts = {k: torch.optim.Adam(m.parameters(), lr=args.lr) for k, m in models.items()}
    for k in ("float", "qat"):  # QKeras's Clip constraints, as QAT with hqrun's trainer runs
        attach_weight_constraints(models[k], opts[k])
    warm = min(args.samples, 20 * args.batch)
    for k, m in models.items():  # warm-up: allocator, autograd graph caches
        epoch(m, opts[k], x[:warm], y[:warm], args.batch)

    wall: dict[str, list[float]] = {k: [] for k in models}
    cpu: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(args.repeats):
        for k, m in models.items():
            w, c = epoch(m, opts[k], x, y, args.batch)
            wall[k].append(w)
            cpu[k].append(c)

    n = args.samples
    print(f"jet_dnn 16-64-32-32-5, {n:,} samples x 16, batch {args.batch}, Adam, "
          f"{torch.get_num_threads()} thread, plan {args.plan!r}, {args.repeats} interleaved epochs each")
    print("  samples/s by wall clock (best / median epoch) and by process CPU time (best epoch;")
    print("  CPU time is the steadier measure on a shared machine)")
    for k in models:
        print(f"  {k:12s} wall {n / min(wall[k]):>10,.0f} / {n / statistics.median(wall[k]):>10,.0f}"
              f"   cpu {n / min(cpu[k]):>10,.0f}")
    result = {}
    for label, t in (("wall", wall), ("cpu", cpu)):
        result[f"{label}_ratio"] = min(t["qat"]) / min(t["float"])
        result[f"{label}_qat"] = n / min(t["qat"])
        result[f"{label}_float"] = n / min(t["float"])
    per_round = statistics.median(q / f for q, f in zip(wall["qat"], wall["float"]))
    print(f"  QAT/float time ratio: wall {result['wall_ratio']:.3f} (best epochs; median of "
          f"per-round ratios {per_round:.3f}), cpu {result['cpu_ratio']:.3f}; target <= 1.3")
    return result


if __name__ == "__main__":
    main()
