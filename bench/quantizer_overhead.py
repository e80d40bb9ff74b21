"""QAT overhead: one training epoch of the jet model with quantizers everywhere vs in float.

    python bench/quantizer_overhead.py                 # 800,000 x 16 samples, batch 1024, q6
    python bench/quantizer_overhead.py --samples 200000 --repeats 2 --plan q4

Both models are ``hqrun.models.build_model({"name": "jet_dnn"}, plan)`` (16 -> 64 -> 32 -> 32 -> 5),
trained with the trainer's Adam (``make_optimizer``: fused, flat buffers) plus QKeras's weight-clip
constraints (``attach_weight_constraints``) on the
same in-memory random data, batched by contiguous slices, one torch thread. A plain
``torch.nn.Sequential`` is timed too, as a reference for what the layer classes themselves cost.

Noise control for a shared machine: every epoch is cut into chunks of ``--chunk`` steps and the
models take turns chunk by chunk (float, QAT, plain, float, QAT, ...), so load from other
processes hits all of them alike. Each model trains ``--repeats`` full epochs. Reported per model:

- *clean epoch*: the sum over chunk positions of the fastest time seen for that chunk — the
  epoch as it runs when undisturbed (by wall clock and by process CPU time);
- *median epoch*: the median of the repeats' total wall time.

The headline ratio is QAT/float of the clean epochs. Targets (issue 2): ratio <= 1.3; QAT >= 900k
samples/s on one thread (QKeras 0.9: about 612k samples/s for the 6-bit model, float Keras about
850k, on this class of machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from hqrun.models import attach_weight_constraints, build_model  # noqa: E402
from hqrun.train.losses import cross_entropy  # noqa: E402
from hqrun.train.module import make_optimizer  # noqa: E402


def plain_jet() -> torch.nn.Module:
    """The same network as plain PyTorch modules (reference for the layer overhead)."""
    return torch.nn.Sequential(
        torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32), torch.nn.ReLU(),
        torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 5),
    )


def train_steps(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
                y: torch.Tensor, batch: int) -> tuple[float, float]:
    """Train over (x, y) in contiguous batches; returns (wall seconds, CPU seconds)."""
    loss_fn = cross_entropy  # the trainer's loss
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
    parser.add_argument("--repeats", type=int, default=3, help="epochs per model")
    parser.add_argument("--chunk", type=int, default=25, help="steps per interleaved chunk")
    parser.add_argument("--plan", default="q6", help="plan of the QAT model (name or YAML path)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--no-plain", action="store_true", help="skip the plain-torch reference")
    parser.add_argument("--no-constraints", action="store_true",
                        help="train without QKeras's weight clipping after each step")
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
    # hqrun's models get the trainer's optimizer (fused Adam on flat buffers), the plain model
    # torch's default Adam: the reference is what a PyTorch user writes without hqrun
    opts = {k: make_optimizer(m.parameters(), lr=args.lr) if k != "plain_torch"
            else torch.optim.Adam(m.parameters(), lr=args.lr) for k, m in models.items()}
    for k in ("float", "qat"):  # QKeras's Clip constraints (a float model has none to apply)
        if not args.no_constraints:
            attach_weight_constraints(models[k], opts[k])
    for m in models.values():
        m.train()
    warm = min(args.samples, 20 * args.batch)
    for k, m in models.items():  # warm-up: allocator, autograd graph caches
        train_steps(m, opts[k], x[:warm], y[:warm], args.batch)

    span = args.chunk * args.batch
    starts = list(range(0, args.samples, span))
    best_wall = {k: [float("inf")] * len(starts) for k in models}
    best_cpu = {k: [float("inf")] * len(starts) for k in models}
    totals: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(args.repeats):
        total = dict.fromkeys(models, 0.0)
        for j, s in enumerate(starts):
            for k, m in models.items():
                w, c = train_steps(m, opts[k], x[s:s + span], y[s:s + span], args.batch)
                best_wall[k][j] = min(best_wall[k][j], w)
                best_cpu[k][j] = min(best_cpu[k][j], c)
                total[k] += w
        for k in models:
            totals[k].append(total[k])

    n = args.samples
    clean_wall = {k: sum(v) for k, v in best_wall.items()}
    clean_cpu = {k: sum(v) for k, v in best_cpu.items()}
    print(f"jet_dnn 16-64-32-32-5, {n:,} samples x 16, batch {args.batch}, Adam, "
          f"{torch.get_num_threads()} thread, plan {args.plan!r}, {args.repeats} epochs each, "
          f"interleaved in chunks of {args.chunk} steps, weight constraints "
          f"{'off' if args.no_constraints else 'on'}")
    print(f"  {'samples/s':12s} {'clean wall':>12s} {'clean cpu':>12s} {'median wall':>12s}")
    for k in models:
        print(f"  {k:12s} {n / clean_wall[k]:>12,.0f} {n / clean_cpu[k]:>12,.0f} "
              f"{n / statistics.median(totals[k]):>12,.0f}")
    result = {
        "float": n / clean_wall["float"], "qat": n / clean_wall["qat"],
        "ratio": clean_wall["qat"] / clean_wall["float"],
        "ratio_cpu": clean_cpu["qat"] / clean_cpu["float"],
        "ratio_median": statistics.median(totals["qat"]) / statistics.median(totals["float"]),
    }
    print(f"  QAT/float time ratio: {result['ratio']:.3f} (clean wall), {result['ratio_cpu']:.3f} "
          f"(clean cpu), {result['ratio_median']:.3f} (median wall); target <= 1.3")
    return result


if __name__ == "__main__":
    main()
