"""``hqrun export`` and ``hqrun import``: the interchange commands (config groups ``export``,
``import``; docs/interchange.md).

``hqrun export run=<run dir>`` reads the trained model the way ``hqrun firmware`` does (the run's
config, plan, weights and scaler; the test split rebuilt from the recorded data config and
seed), writes ``<run>/export/qonnx/{model.onnx,report.json,report.md}`` and proves the graph
equal to the model on the whole test split. ``hqrun import source=<model.onnx>`` turns a QONNX
model into an hqrun run directory — ``config.yaml`` (model config), ``plan.yaml``, ``model.pt``,
``best.ckpt`` (the same weights with their model config and plan, as ``hqrun cost`` reads
them), ``scaler.json``, ``metrics.json`` and ``report.md`` (the proof), ``source.onnx`` and
``conf/{model,quant}/<name>.yaml`` (so ``hqrun train --config-dir <dir>/conf model=<name>
quant=<name> checkpoint=<dir>`` fine-tunes it) — which ``hqrun cost``, ``hqrun firmware`` and
``hqrun train`` accept.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from hqrun.errors import ConfigError

from .config import EXPORT_FORMATS, VERIFY_ON
from .deps import require_qonnx

__all__ = ["export_run", "import_run"]


def _plain(obj: Any) -> Any:
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(obj, (DictConfig, ListConfig)):
        return OmegaConf.to_container(obj, resolve=True)
    return obj


def _group(cfg: Any, name: str) -> dict[str, Any]:
    group = cfg.get(name) if hasattr(cfg, "get") else None
    return dict(_plain(group) or {})


# ---------------------------------------------------------------------------- export
def _export_dir(options: dict[str, Any], run_dir: Path | None, cfg: Any) -> Path:
    if options.get("out_dir"):
        from hqrun.safenames import check_output_path

        return check_output_path(options["out_dir"], "export.out_dir")
    if run_dir is not None:
        return run_dir / "export" / options["format"]
    from hqrun.rundir import output_dir

    return output_dir(cfg, "export") / "export" / options["format"]


def export_run(cfg: Any) -> dict:
    """Hydra entry of ``hqrun export``; returns the export report."""
    import torch

    from hqrun.firmware_command import _source, _test_split, load_trained

    options = _group(cfg, "export")
    if options.get("format") not in EXPORT_FORMATS:
        raise ConfigError(f"export.format={options.get('format')!r}: hqrun exports "
                          f"{', '.join(EXPORT_FORMATS)}.")
    require_qonnx()
    from .exporter import export_qonnx

    torch.set_num_threads(int(cfg.get("threads", 1) or 1))
    src = _source(cfg)
    _export_dir(options, src["run_dir"], cfg)  # a bad export.out_dir fails before any work
    model, model_cfg = load_trained(src["model"], src["plan"], src["ckpt"],
                                    same_plan=src["run_dir"] is not None)
    splits = _test_split(src["data"], src["seed"], src["scaler"])
    x, y = splits.X_test, splits.y_test
    if options.get("max_samples"):
        x, y = x[: int(options["max_samples"])], y[: int(options["max_samples"])]
    out = _export_dir(options, src["run_dir"], cfg)
    print(f"hqrun export: model {model_cfg.get('name')} from {src['ckpt']}, checking {len(x)} test "
          f"samples with qonnx's executor, writing {out}")
    result = export_qonnx(
        model, x, out, labels=y, input_type=options.get("input_type"),
        softmax=bool(options.get("softmax", True)), batch_size=int(options.get("batch_size", 5000)),
        metadata={"hqrun.model": model_cfg},
        extra_report={"source": {"run": str(src["run_dir"]) if src["run_dir"] else None,
                                 "checkpoint": str(src["ckpt"]), "samples": "test split"}})
    v = result.report["verification"]
    print(f"hqrun export: QONNX vs model: {result.comparison.summary()}; float32 exactness: "
          f"{v['float32_exactness']}")
    print(f"hqrun export: wrote {result.model_path} and {out / 'report.md'}")
    return result.report


# ---------------------------------------------------------------------------- import
def _inputs(cfg: Any, options: dict[str, Any]) -> tuple[np.ndarray | None, Any, dict | None]:
    """(samples or None for random, scaler, data config) as ``import.verify_on`` says."""
    if options.get("verify_on", "random") == "random":
        return None, None, None
    from hqrun.data import load_dataset

    data_cfg = _plain(cfg.get("data"))
    splits = load_dataset(data_cfg, int(cfg.get("seed", 0) or 0))
    x = splits.X_test
    if options.get("max_samples"):
        x = x[: int(options["max_samples"])]
    return x, splits.scaler, data_cfg


def _write_run_dir(out: Path, result: Any, source: Path, scaler: Any, data_cfg: dict | None,
                   seed: int, name: str) -> None:
    """Every file of the imported run, each written atomically (``hqrun.atomic``)."""
    from hqrun import atomic
    from hqrun.data.preprocess import Scaler
    from hqrun.modelfile import save_model_file

    plan = result.plan.to_dict()
    state = {k: v.detach().clone() for k, v in result.model.state_dict().items()}
    if scaler is None:
        n = int(np.prod(result.model.input_shape))
        scaler = Scaler.identity(n, [f"x{i}" for i in range(n)])
    config = {"command": "import", "seed": seed, "source": str(source), "model": result.model_config,
              "quant": plan}
    if data_cfg is not None:
        config["data"] = data_cfg
    data = source.read_bytes()
    record = {"model": result.model_config, "plan": plan, "source": str(source)}
    atomic.write_bytes(out / "source.onnx", data)
    atomic.write_yaml(out / "config.yaml", config)
    atomic.write_yaml(out / "plan.yaml", plan)
    save_model_file(out / "model.pt", state, record)   # + model.json, the record beside it
    atomic.torch_save({"state_dict": {f"model.{k}": v for k, v in state.items()},
                       "hyper_parameters": {"record": record}}, out / "best.ckpt")
    atomic.write_json(out / "scaler.json", scaler.to_dict(), indent=1)
    atomic.write_yaml(out / "conf" / "model" / f"{name}.yaml", result.model_config)
    atomic.write_yaml(out / "conf" / "quant" / f"{name}.yaml", plan)
    metrics = {"import": {"source": str(source), "source_sha256": hashlib.sha256(data).hexdigest(),
                          **result.report}, "model": result.model_config.get("name"), "plan": name}
    atomic.write_text(out / "report.md", _import_markdown(result, source, out, name, data_cfg))
    atomic.write_json(out / "metrics.json", metrics, indent=1)   # last: the run is complete


def _import_markdown(result: Any, source: Path, out: Path, name: str, data_cfg: dict | None) -> str:
    c = result.comparison
    data_hint = "data=<the data it was trained on>" + ("" if data_cfg else " data.standardize=false")
    lines = [
        f"# QONNX import of {source.name}: {'PASSED' if c.exact else 'FAILED'}",
        "",
        f"- hqrun model vs qonnx's execution of the source: {c.n_samples} samples "
        f"({result.inputs}), {c.mismatches} mismatches (logits bit for bit)",
        f"- model config: `{result.model_config.get('name')}`; plan `{name}` (plan.yaml)",
        "",
        "| layer | type | plan slots | QONNX nodes |", "|---|---|---|---|",
    ]
    for row in result.report["layers"]:
        slots = ", ".join(f"{s}: `{v}`" for s, v in row["slots"].items()) or "-"
        lines.append(f"| {row['name']} | {row['type']} | {slots} | {', '.join(row['nodes'])} |")
    lines += ["", *[f"- note: {n}" for n in result.report["notes"]], "", "Next:", "",
              f"    hqrun cost run={out}",
              f"    hqrun firmware run={out} {data_hint}",
              f"    hqrun train --config-dir {out / 'conf'} model={name} quant={name} checkpoint={out} {data_hint}"]
    return "\n".join(lines) + "\n"


def import_run(cfg: Any) -> dict:
    """Hydra entry of ``hqrun import``; returns the import's metrics."""
    import torch

    from hqrun.rundir import claimed_dir, output_dir
    from hqrun.safenames import check_name

    source = cfg.get("source")
    if not source:
        raise ConfigError("hqrun import needs the QONNX model to read: `hqrun import "
                          "source=path/to/model.onnx`.")
    path = Path(str(source)).expanduser()
    if not path.is_file():
        raise ConfigError(f"source={source} is not a file; pass the path of a QONNX .onnx model.")
    options = _group(cfg, "import")
    name = check_name(options.get("name") or "imported", "import.name")  # a file name and a Hydra option
    if options.get("verify_on", "random") not in VERIFY_ON:
        raise ConfigError(f"import.verify_on={options.get('verify_on')!r}: use {' or '.join(VERIFY_ON)}.")
    require_qonnx()
    from .importer import import_qonnx

    torch.set_num_threads(int(cfg.get("threads", 1) or 1))
    with claimed_dir(output_dir(cfg, "import"), "import", what="the import's run directory") as claimed:
        out = claimed.path
        x, scaler, data_cfg = _inputs(cfg, options)
        seed = int(cfg.get("seed", 0) or 0)
        print(f"hqrun import: reading {path}")
        result = import_qonnx(path, inputs=x, n_random=int(options.get("samples", 10000)), seed=seed,
                              input_type=str(options.get("input_type")), name=name,
                              batch_size=int(options.get("batch_size", 5000)))
        claimed.create()   # proven: only now does the run directory get files
        _write_run_dir(out, result, path, scaler, data_cfg, seed, name)
    print(f"hqrun import: model {result.model_config.get('name')}, plan {name}: "
          f"{result.comparison.summary()} ({result.inputs})")
    for note in result.report["notes"]:
        print(f"hqrun import: note: {note}")
    print(f"hqrun import: wrote {out} (report.md lists the next commands)")
    return json.loads((out / "metrics.json").read_text())
