"""Checkpoints and run directories read as models: crafted files whose unpickling would run
code (issue #16), damaged and foreign files, and weights that do not fit the model."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from catalogue import QUICK_TRAIN, Case, Env
from catalogue.files import pickled_list, random_bytes, saved, truncated, write_evil_run
from catalogue.data_cases import idx_dir


def marker(e: Env) -> Path:
    return e.tmp / "PWNED"


def no_marker(e: Env) -> None:
    assert not marker(e).exists(), "the checkpoint's code ran"


def train(e: Env, *more: str) -> list[str]:
    return ["train", "data=jets_file", f"data.path={e.data}", *QUICK_TRAIN, *more]


#: Every entry point that reads a model file, given a run-like directory: (name, argv).
ENTRY_POINTS: list[tuple[str, Callable[[Env, Path], list[str]]]] = [
    ("train-checkpoint-file", lambda e, d: train(e, "quant=q6", f"checkpoint={d / 'model.pt'}")),
    ("train-checkpoint-dir", lambda e, d: train(e, f"checkpoint={d}")),
    ("cost-checkpoint-file", lambda e, d: ["cost", f"checkpoint={d / 'best.ckpt'}"]),
    ("cost-run-dir", lambda e, d: ["cost", f"run={d}"]),
    ("firmware-checkpoint-file", lambda e, d: ["firmware", "data=jets_file", f"data.path={e.data}",
                                               "quant=q6", f"checkpoint={d / 'model.pt'}"]),
    ("firmware-run-dir", lambda e, d: ["firmware", f"run={d}"]),
]


def crafted(name: str, argv, legacy: bool) -> Case:
    fmt = "legacy-pickle" if legacy else "zip-pickle"
    return Case(f"crafted-{fmt}-{name}",
                lambda e: argv(e, write_evil_run(e.tmp / "evil", marker(e), legacy)),
                "cannot be read as data: it needs Python objects to be unpickled",
                check=no_marker, subprocess=(name == "firmware-run-dir" and not legacy))


CRAFTED = [crafted(name, argv, legacy) for name, argv in ENTRY_POINTS for legacy in (False, True)]


def bad_file(make: Callable[[Env], Path]):
    """Entry points given a damaged file: (train, cost, firmware) argv builders."""
    return {
        "train": lambda e: train(e, "quant=q6", f"checkpoint={make(e)}"),
        "cost": lambda e: ["cost", f"checkpoint={make(e)}"],
        "firmware": lambda e: ["firmware", "data=jets_file", f"data.path={e.data}", "quant=q6",
                               f"checkpoint={make(e)}"],
    }


DAMAGED_KINDS: dict[str, tuple[Callable[[Env], Path], str]] = {
    "truncated": (lambda e: truncated(e.finished / "model.pt", e.tmp / "cut.pt"),
                  "is not a readable model file"),
    "random-bytes": (lambda e: random_bytes(e.tmp / "rand.pt"), "is not a readable model file"),
    "empty": (lambda e: random_bytes(e.tmp / "empty.pt", 0), "is not a readable model file"),
    "pickled-list": (lambda e: pickled_list(e.tmp / "list.pt"), "cannot be read as data"),
    "saved-list": (lambda e: saved(e.tmp / "tlist.pt", [torch.zeros(2)]),
                   "holds list, not a state dict of tensors"),
    "saved-number": (lambda e: saved(e.tmp / "num.pt", 3), "holds int, not a state dict"),
    "saved-text-values": (lambda e: saved(e.tmp / "txt.pt", {"dense_1.weight": "abc"}),
                          "is not a state dict of tensors"),
    "lightning-state-not-mapping": (lambda e: saved(e.tmp / "l.ckpt", {"state_dict": [1, 2]}),
                                    "holds list, not a state dict"),
}

DAMAGED = [
    Case(f"checkpoint-{kind}-{command}", argv, fragment,
         subprocess=(kind == "random-bytes" and command == "cost"))
    for kind, (make, fragment) in DAMAGED_KINDS.items()
    for command, argv in bad_file(make).items()
    if command != "firmware" or kind in ("truncated", "random-bytes", "pickled-list")
]


def jet_checkpoint_without_record(e: Env) -> Path:
    """The finished jet run's weights without model.json (nothing says what they are)."""
    dst = e.tmp / "bare" / "model.pt"
    dst.parent.mkdir()
    dst.write_bytes((e.finished / "model.pt").read_bytes())
    return dst


def changed_plan(e: Env) -> Path:
    from hqrun.models import load_plan

    run = e.copy_finished()
    load_plan("q4").to_yaml(run / "plan.yaml")
    return run


MISFIT = [
    Case("checkpoint-jet-into-cnn-train", lambda e: ["train", "data=idx", "model=cnn", *QUICK_TRAIN,
                                                     f"data.path={idx_dir(e)}",
                                                     f"checkpoint={e.finished / 'model.pt'}"],
         "the initial weights lack the parameter(s)", subprocess=True),
    Case("checkpoint-jet-into-cnn-cost", lambda e: ["cost", "model=cnn",
                                                    f"checkpoint={jet_checkpoint_without_record(e)}"],
         "does not fit the model built from the configuration: dense_1.weight has shape (64, 16)"),
    Case("checkpoint-jet-into-cnn-cost-says-so", lambda e: ["cost", "model=cnn",
                                                            f"checkpoint={e.finished / 'model.pt'}"],
         "holds a 'jet_dnn' model (its record says so), so that model is used and model=cnn is not",
         code=0, leaves_run_dir=True),
    Case("checkpoint-other-widths-train", lambda e: train(e, "quant=q6", "model.hidden=[32,16,16]",
                                                          f"checkpoint={e.finished / 'model.pt'}"),
         "shape mismatch"),
    Case("checkpoint-other-widths-cost", lambda e: ["cost", "model.hidden=[32,16,16]",
                                                    f"checkpoint={jet_checkpoint_without_record(e)}"],
         "dense_1.weight has shape (64, 16) in the file but (32, 16) in the model"),
    Case("checkpoint-missing-file", lambda e: train(e, f"checkpoint={e.tmp / 'nope.pt'}"),
         "no such file or directory"),
    Case("checkpoint-dir-without-model", lambda e: train(e, f"checkpoint={e.tmp}"),
         "the directory holds no model.pt or best.ckpt"),
    Case("cost-checkpoint-missing", lambda e: ["cost", f"checkpoint={e.tmp / 'nope.ckpt'}"],
         "does not exist"),
    Case("cost-run-not-a-dir", lambda e: ["cost", f"run={e.tmp / 'nope'}"], "is not a directory"),
    Case("cost-run-without-checkpoint", lambda e: ["cost", f"run={e.tmp}"],
         "holds no model.pt or checkpoint"),
    Case("firmware-without-model", lambda e: ["firmware"], "firmware needs"),
    Case("firmware-run-missing", lambda e: ["firmware", f"run={e.tmp / 'nope'}"], "nope"),
    Case("firmware-run-a-file", lambda e: ["firmware", f"run={e.write('f.txt', 'x')}"], "f.txt"),
    Case("firmware-damaged-model-json", lambda e: ["firmware", "data=jets_file", f"data.path={e.data}",
                                                   f"checkpoint={_damaged_sidecar(e)}"],
         "is not readable JSON"),
    Case("firmware-damaged-scaler", lambda e: ["firmware", f"run={_damaged_scaler(e)}"],
         "scaler.json is not a readable scaler"),
    Case("firmware-plan-changed-after-training", lambda e: ["firmware", f"run={changed_plan(e)}"],
         "does not match the plan recorded with the weights"),
    Case("firmware-damaged-config-yaml", lambda e: ["firmware", f"run={_damaged_config(e)}"],
         "config.yaml"),
]


def _damaged_sidecar(e: Env) -> Path:
    run = e.copy_finished()
    (run / "model.json").write_text('{"format": "hqrun-model/1", "rec')
    return run / "model.pt"


def _damaged_scaler(e: Env) -> Path:
    run = e.copy_finished()
    (run / "scaler.json").write_text("[1, 2]")
    return run


def _damaged_config(e: Env) -> Path:
    run = e.copy_finished()
    (run / "config.yaml").write_text("model: [unclosed\n")
    return run


CASES = CRAFTED + DAMAGED + MISFIT
