"""Learned bit widths given bad settings (issue #14, item 6): the cost weight, the knobs, a
learned quantizer where it cannot go, a trained learned model without its width tensors, and a
per-element model sent to the hls4ml backend."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from catalogue import QUICK_TRAIN, Case, Env


def train(e: Env, *more: str) -> list[str]:
    return ["train", "data=jets_file", f"data.path={e.data}", "quant=learned", *QUICK_TRAIN, *more]


def learned_run(e: Env) -> Path:
    """A finished one-epoch learned-bits run, trained once per module beside the q6 run."""
    done = e.finished.parent / "finished_learned"
    if not (done / "model.pt").is_file():
        from hqrun.cli import main

        main(["train", "data=jets_file", f"data.path={e.data}", "quant=learned", *QUICK_TRAIN,
              f"hydra.run.dir={done}"])
    return done


def without_widths(e: Env) -> Path:
    """A copy of the learned run whose model.pt (and best.ckpt) kept only weights and biases,
    as a state dict filtered to ``.weight``/``.bias`` would: the width tensors are gone."""
    run = e.tmp / "no_widths"
    shutil.copytree(learned_run(e), run)
    state = torch.load(run / "model.pt", weights_only=True)
    torch.save({k: v for k, v in state.items() if k.endswith((".weight", ".bias"))}, run / "model.pt")
    (run / "best.ckpt").unlink(missing_ok=True)
    return run


def per_element_copy(e: Env) -> Path:
    run = e.tmp / "per_element"
    shutil.copytree(learned_run(e), run)
    return run


def pool_plan(e: Env) -> Path:
    return e.write("avg.yaml", 'name: avg\nlayers:\n  pool_1: {average: "learned_bits()"}\n')


CASES = [
    Case("learned-beta-negative", lambda e: train(e, "quant.beta=-1"),
         "beta=-1 must be a finite number >= 0"),
    Case("learned-granularity-unknown", lambda e: train(e, "quant.granularity=neuron"),
         "granularity='neuron' is unknown; use one of element, channel, layer"),
    Case("learned-beta-schedule-unknown", lambda e: train(e, "quant.beta_schedule=wobble"),
         "beta_schedule='wobble' is unknown"),
    Case("learned-learn-unknown-slot", lambda e: train(e, "quant.learn=[weights]"),
         "learn names unknown slot(s) ['weights']"),
    Case("learned-relu-in-a-kernel-slot",
         lambda e: train(e, "quant.learn=[activation]", 'quant.default.kernel="learned_relu()"'),
         "learned_relu() cannot serve the 'kernel' slot"),
    Case("learned-bits-in-a-pooling-slot",
         lambda e: ["cost", "model=cnn", f"plan={pool_plan(e)}"],
         "learned_bits() cannot serve the 'average' slot"),
    Case("learned-run-without-widths-cost", lambda e: ["cost", f"run={without_widths(e)}"],
         "lacks the learned bit widths of this model", subprocess=True),
    Case("learned-run-without-widths-firmware",
         lambda e: ["firmware", f"run={without_widths(e)}", "firmware.backend=rtl"],
         "lacks the learned bit widths of this model"),
    Case("learned-per-element-activations-to-hls4ml",
         lambda e: ["firmware", f"run={per_element_copy(e)}", "firmware.backend=hls4ml"],
         "the hls4ml backend casts each layer's result to one type"),
]
