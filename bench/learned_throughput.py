"""Training speed of learned bit widths vs Q6 QAT: samples/s of the jet model, same data, one run.

    python bench/learned_throughput.py                      # 200,000 x 16 samples, batch 1024
    python bench/learned_throughput.py --samples 64000 --repeats 5 --plan learned

Both models are ``hqrun.models.build_model({"name": "jet_dnn"}, plan)`` trained with Adam on the
same in-memory data with the trainer's fused Adam (standard-normal features, random labels; ``--data file.npz`` uses the first
``--samples`` rows of a jet file instead), batched by contiguous slices, one torch thread. The
learned model's step is what ``hqrun train`` runs for it: cross-entropy plus ``beta * EBOPs``
(``EbopsPenalty``, the differentiable count over every layer); Q6's step carries QKeras's weight
clips, as in training. Noise control as bench/quantizer_overhead.py: the models take turns in
chunks of ``--chunk`` steps, and the *clean epoch* is the sum over chunk positions of the fastest
time seen. Reported: samples/s of each (clean wall and CPU time) and learned/Q6 throughput
(target >= 0.8).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from hqrun.models import attach_weight_constraints, build_model, load_plan  # noqa: E402
from hqrun.models.penalty import BetaSchedule, EbopsPenalty  # noqa: E402
from hqrun.models.state import learned_state_keys  # noqa: E402
from hqrun.train.losses import cross_entropy  # noqa: E402
from hqrun.train.module import make_optimizer, param_groups  # noqa: E402


def make_step(model: torch.nn.Module, penalty: EbopsPenalty | None, beta: float,
              width_lr_scale: float = 1.0):
    """One optimiser step on a batch, as the trainer runs it (penalty only when given): the
    trainer's Adam (fused, flat buffers) with the learned widths in their own parameter group
    when the plan scales their learning rate."""
    scales = dict.fromkeys(learned_state_keys(model), width_lr_scale) if width_lr_scale != 1.0 else None
    opt = make_optimizer(param_groups(model, 1e-3, scales), lr=1e-3)
    attach_weight_constraints(model, opt)
    loss_fn = cross_entropy  # the trainer's loss

    def steps(x: torch.Tensor, y: torch.Tensor, batch: int) -> tuple[float, float]:
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(0, x.shape[0], batch):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[i:i + batch]), y[i:i + batch])
            if penalty is not None:
                loss = loss + beta * penalty(model)
            loss.backward()
            opt.step()
        return time.perf_counter() - start, time.process_time() - cpu

    return steps


def plan_mapping(source: str) -> dict:
    """The plan's YAML as a mapping (a packaged name such as ``learned``, or a file)."""
    from importlib import resources
    from pathlib import Path

    if source.endswith((".yaml", ".yml")):
        return yaml.safe_load(Path(source).read_text())
    return yaml.safe_load((resources.files("hqrun.conf") / "quant" / f"{source}.yaml").read_text())


def load_data(path: str | None, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    if path is None:
        gen = torch.Generator().manual_seed(0)
        return torch.randn(n, 16, generator=gen), torch.randint(0, 5, (n,), generator=gen)
    with np.load(path) as d:
        X, y = d["X"][:n].astype(np.float32), d["y"][:n].astype(np.int64)
    X = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1.0)
    return torch.from_numpy(X), torch.from_numpy(y)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3, help="epochs per model")
    parser.add_argument("--chunk", type=int, default=25, help="steps per interleaved chunk")
    parser.add_argument("--plan", default="learned", help="the learned plan (name or YAML path)")
    parser.add_argument("--reference", default="q6", help="the QAT plan it is compared with")
    parser.add_argument("--beta", type=float, default=None, help="beta (default: the plan's)")
    parser.add_argument("--data", default=None, help="a jet .npz file (default: random data)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the learned plan, e.g. --set int_bits=range")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    x, y = load_data(args.data, args.samples)
    raw = plan_mapping(args.plan)
    for item in args.set:
        key, value = item.split("=", 1)
        raw[key] = yaml.safe_load(value)
    plan = load_plan(raw)
    schedule = plan.penalty or BetaSchedule(beta=3e-6)
    beta = schedule.beta if args.beta is None else args.beta
    learned = build_model({"name": "jet_dnn"}, plan, seed=0)
    reference = build_model({"name": "jet_dnn"}, args.reference, seed=0)
    runs = {"q_ref": make_step(reference, None, 0.0),
            "learned": make_step(learned, EbopsPenalty(learned, schedule), beta, plan.width_lr_scale)}
    learned.train()
    reference.train()
    warm = min(args.samples, 20 * args.batch)
    for fn in runs.values():
        fn(x[:warm], y[:warm], args.batch)

    span = args.chunk * args.batch
    starts = list(range(0, args.samples, span))
    best = {k: [[float("inf")] * len(starts), [float("inf")] * len(starts)] for k in runs}
    for _ in range(args.repeats):
        for j, s in enumerate(starts):
            for k, fn in runs.items():
                w, c = fn(x[s:s + span], y[s:s + span], args.batch)
                best[k][0][j] = min(best[k][0][j], w)
                best[k][1][j] = min(best[k][1][j], c)
    n = args.samples
    rate = {k: (n / sum(v[0]), n / sum(v[1])) for k, v in best.items()}
    print(f"jet_dnn 16-64-32-32-5, {n:,} samples, batch {args.batch}, Adam, 1 thread, "
          f"{args.repeats} epochs each in chunks of {args.chunk} steps; learned plan "
          f"{plan.name!r} {' '.join(args.set)} with beta {beta:g}, reference {args.reference!r}")
    print(f"  {'samples/s':10s} {'clean wall':>12s} {'clean cpu':>12s}")
    for k, (w, c) in rate.items():
        print(f"  {k:10s} {w:>12,.0f} {c:>12,.0f}")
    result = {"reference": rate["q_ref"][0], "learned": rate["learned"][0],
              "ratio": rate["learned"][0] / rate["q_ref"][0],
              "ratio_cpu": rate["learned"][1] / rate["q_ref"][1]}
    print(f"  learned/{args.reference} throughput: {result['ratio']:.3f} (clean wall), "
          f"{result['ratio_cpu']:.3f} (clean cpu); target >= 0.8")
    return result


if __name__ == "__main__":
    main()
