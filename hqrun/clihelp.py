"""``hqrun --help`` and ``hqrun <command> --help``: the commands, then one command's knobs.

Why not Hydra's help: it starts "cli is powered by Hydra" and prints the whole composed config
(about 280 lines) for every command alike, without naming a single command. Here ``--help``
lists the commands and the overrides people use most; ``<command> --help`` lists that command's
config groups (with their options) and its knobs, each with its default and the comment of its
YAML line, read from the packaged ``conf/`` so the help never drifts from the config. Hydra's
own help stays available as ``hqrun --hydra-help``. Stdlib only: help comes back fast.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Iterable, Iterator

__all__ = ["COMMANDS", "main_help", "command_help", "wants_help"]

#: Every hqrun command and its one line (tests check that each command of hqrun.cli is here).
COMMANDS: dict[str, str] = {
    "train": "train one model, float or quantization-aware (quant=q<n> or plan=FILE)",
    "cost": "price a plan or a trained run: energy (pJ), size (bits), EBOPs, LUT/DSP/latency",
    "search": "AutoQ search for a per-layer quantization plan on Ray Tune (winner.yaml, front)",
    "firmware": "bit-exact firmware of a trained run: hls4ml project, or Verilog + Yosys (backend=rtl)",
    "export": "export a trained run to QONNX, proven equal by qonnx's executor (export.format=qonnx)",
    "import": "import a QONNX model as an hqrun run directory (source=model.onnx)",
    "study": "the paper's study: BF, Q6, QE, QB, firmware and report.md (experiment=...)",
    "datagen": "generate a Pythia 8 + FastJet jet set (needs the physics extra)",
    "collect": "tabulate a sweep directory (hqrun -m ...) into sweep.csv and sweep.png",
}

#: Overrides people use most, with what they do.
MOST_USED = (
    ("experiment=quickstart", "the paper's study in minutes on the embedded jet sample"),
    ("experiment=jet_tagging", "the full study (40 trials per goal)"),
    ("data=jets_file data.path=FILE", "your own jets: npz, csv, arff, parquet or Zenodo h5"),
    ("quant=q6 | plan=FILE", "a homogeneous scheme (float, q2..q16) or a plan file"),
    ("trainer.max_epochs=N seed=N threads=N", "training budget, split seed, torch threads"),
    ("search.goal.type=energy|bits|ebops", "what a search minimises"),
    ("search.max_trials=N search/space=deployable", "search budget; only firmware-ready quantizers"),
    ("run=DIR", "the trained run firmware and cost read"),
    ("hydra.run.dir=DIR", "where a run is written (rerun a search or study there to resume)"),
    ("-m key=a,b", "a sweep over values (then: hqrun collect <sweep dir>)"),
)

#: Per config-driven command: top-level keys of conf/config.yaml and the groups it reads.
COMMAND_CONFIG: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "train": (("seed", "threads", "checkpoint", "plan", "out_dir"),
              ("data", "model", "quant", "trainer")),
    "cost": (("run", "checkpoint", "plan", "seed"), ("model", "quant", "cost")),
    "search": (("seed", "threads"), ("search", "search/space", "data", "model", "cost")),
    "firmware": (("run", "checkpoint", "plan"), ("firmware",)),
    "export": (("run",), ("export",)),
    "import": (("source",), ("import", "data")),
    "study": (("seed", "threads", "study"), ("experiment", "data", "model", "trainer", "search",
                                              "firmware")),
}

#: Groups whose every knob is listed (the others list their options only).
_KNOB_GROUPS = {"trainer", "search", "firmware", "cost", "data", "model", "export", "import"}
#: The option of a group whose file holds the knobs shown.
_DEFAULTS = {"data": "jets_sample", "model": "jet_dnn", "quant": "float", "trainer": "default",
             "cost": "default", "search": "random", "firmware": "default",
             "search/space": "autoqkeras", "export": "default", "import": "default"}


def wants_help(args: Iterable[str]) -> bool:
    return any(a in ("--help", "-h") for a in args)


def _conf() -> resources.abc.Traversable:  # type: ignore[name-defined]
    return resources.files("hqrun.conf")


def _options(group: str) -> list[str]:
    folder = _conf()
    for part in group.split("/"):
        folder = folder / part
    try:
        return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))
    except (FileNotFoundError, NotADirectoryError):
        return []


_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w]*):(?P<value>[^#]*?)\s*(#\s?(?P<note>.*))?$")


def yaml_knobs(text: str, prefix: str = "", only: Iterable[str] | None = None) -> Iterator[str]:
    """``prefix.key=value  # comment`` for every scalar key of a YAML file, nested keys dotted.

    A light line reader (not a YAML parser): conf/ files are plain mappings with one key per
    line, which is what it needs; a ``defaults:`` list and Hydra's own keys are skipped.
    """
    keep = set(only) if only is not None else None
    stack: list[tuple[int, str]] = []
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith(("#", "-")):
            continue
        m = _LINE.match(raw)
        if not m:
            continue
        indent, key = len(m["indent"]), m["key"]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = [k for _, k in stack] + [key]
        value = m["value"].strip()
        if not value:            # a mapping follows
            stack.append((indent, key))
            continue
        if path[0] in ("defaults", "hydra") or (keep is not None and path[0] not in keep):
            continue
        name = ".".join(([prefix] if prefix else []) + path)
        note = (m["note"] or "").strip()
        yield f"  {name}={value}" + (f"    # {note}" if note else "")


def _read(*parts: str) -> str:
    node = _conf()
    for part in parts:
        node = node / part
    try:
        return node.read_text()
    except (FileNotFoundError, OSError):
        return ""


def main_help() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = ["hqrun: automatic heterogeneous quantization of neural networks for FPGAs", "",
             "usage: hqrun <command> [key=value ...]    (every config value is an override)", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    lines += ["", "most used overrides:"]
    w = max(len(k) for k, _ in MOST_USED)
    lines += [f"  {k:<{w}}  {text}" for k, text in MOST_USED]
    lines += ["", "more:",
              "  hqrun <command> --help     that command's config groups and knobs",
              "  hqrun <command> --cfg job  the composed config, nothing run",
              "  hqrun --hydra-help         Hydra's own options",
              "  docs/user_guide.md         the tasks, step by step"]
    return "\n".join(lines)


def command_help(command: str) -> str:
    if command not in COMMAND_CONFIG:
        return main_help()
    keys, groups = COMMAND_CONFIG[command]
    lines = [f"hqrun {command}: {COMMANDS[command]}", "",
             f"usage: hqrun {command} [key=value ...]", "", "config groups (group=option):"]
    for group in groups:
        options = _options(group)
        default = _DEFAULTS.get(group)
        shown = ", ".join(f"{o} (default)" if o == default and len(options) > 1 else o
                          for o in options)
        lines.append(f"  {group}: {shown or '(none)'}")
    lines += ["", "knobs (key=default    # what it does):"]
    lines += list(yaml_knobs(_read("config.yaml"), only=keys))
    for group in groups:
        if group in _KNOB_GROUPS and group in _DEFAULTS:
            lines += ["", f"  [{group}={_DEFAULTS[group]}]"]
            lines += list(yaml_knobs(_read(*group.split("/"), f"{_DEFAULTS[group]}.yaml"),
                                     prefix=group))
    lines += ["", f"the composed config: hqrun {command} --cfg job; Hydra's options: "
              "hqrun --hydra-help"]
    return "\n".join(lines)
