"""``hqrun firmware``: a trained run → a verified hls4ml project and report in the run dir.

``hqrun firmware run=<run dir>`` reads what ``hqrun train`` recorded there (``config.yaml`` for the
model and data, ``plan.yaml``, ``model.pt``/``best.ckpt``, ``scaler.json``), rebuilds the test
split with the recorded data config and seed, checks that its scaling equals the run's scaler,
and calls :func:`hqrun.firmware.export` on it; the project and ``report.json``/``report.md`` land
in ``<run dir>/firmware``. ``hqrun firmware checkpoint=<file> quant=<plan>`` does the same from a
checkpoint, with the model, data and plan of the current config (a Lightning ``best.ckpt`` carries
its own model config and plan, which win). The ``firmware`` config group is :class:`FirmwareConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hqrun.errors import ConfigError, DataError
from hqrun.firmware_options import ExportFields

__all__ = ["FirmwareConfig", "run", "load_trained"]


@dataclass
class FirmwareConfig(ExportFields):
    """``conf/firmware/*.yaml`` schema (keys must match exactly; see docs/firmware.md).

    The export fields and their defaults come from :class:`hqrun.firmware_options.ExportFields`
    (shared with :class:`hqrun.firmware.ExportConfig`); these two are the command's own.
    """

    out_dir: Optional[str] = None  # default: <run>/firmware, else <hydra output dir>/firmware
    estimate: bool = True  # include hqrun.cost's resource/latency estimate in the report


def synthesis_line(syn: dict) -> str | None:
    """The closing line about synthesis when it did not run: why, and the command that runs it
    later where the backend has one (the RTL backend's Yosys runs on a rerun with
    ``firmware.synthesize=always``; it has no separate command)."""
    if syn.get("status") == "done":
        return None
    later = syn.get("command")
    hint = f"; later: {later}" if later else ""
    return f"hqrun firmware: synthesis {syn.get('status', 'not run')} ({syn.get('reason')}){hint}"


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    try:
        value = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
    except Exception:  # noqa: BLE001 - omegaconf missing keys
        return default
    return default if value is None else value


def _plain(obj: Any) -> Any:
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(obj, (DictConfig, ListConfig)):
            return OmegaConf.to_container(obj, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return obj


def _load_state(path: Path) -> tuple[dict, dict]:
    """State dict and the recorded model config/plan (best.ckpt's record, model.pt's model.json).

    The file is read as data (``torch.load(weights_only=True)``): a file that needs pickled
    code is refused with :class:`~hqrun.errors.ModelFileError` before anything is built.
    """
    from hqrun.modelfile import load_model_file

    loaded = load_model_file(path, "checkpoint")
    return loaded.state, loaded.record


def load_trained(model_cfg: dict, plan_src: Any, ckpt: Path, *, same_plan: bool = False):
    """Build the model from its config and plan and load the trained weights (strict).

    The weights' own record (best.ckpt's, or model.pt's model.json) says which plan they were
    trained with and wins; with ``same_plan`` (a run directory's plan.yaml) a disagreement is
    refused, because the directory was changed after training.
    """
    from hqrun.modelfile import load_state_into, note_record_wins
    from hqrun.models import build_model, load_plan

    state, record = _load_state(ckpt)
    if same_plan and record.get("plan") is not None and plan_src is not None \
            and load_plan(record["plan"]).to_dict() != load_plan(plan_src).to_dict():
        raise ConfigError(
            f"{plan_src} does not match the plan recorded with the weights in {ckpt} (plan "
            f"{load_plan(record['plan']).name!r}): the run directory was changed after training. "
            "Restore plan.yaml, or pass checkpoint=... with the quant=... the weights were "
            "trained with."
        )
    note_record_wins(ckpt, record, model_cfg)
    model_cfg = record.get("model", model_cfg)
    plan_src = record.get("plan", plan_src)
    model = build_model(model_cfg, load_plan(plan_src))
    missing, unexpected = load_state_into(model, state, ckpt)
    if missing or unexpected:
        raise ConfigError(
            f"checkpoint {ckpt} does not fit the model {model_cfg.get('name')!r} built with plan "
            f"{getattr(load_plan(plan_src), 'name', plan_src)!r} (missing: {missing[:4]}, "
            f"unexpected: {unexpected[:4]}); pass the model=... and quant=... it was trained with."
        )
    model.eval()
    return model, model_cfg


def _source(cfg: Any) -> dict[str, Any]:
    """Where the model, plan, data and scaler come from (a run dir or a checkpoint)."""
    run_dir = _get(cfg, "run")
    if run_dir:
        d = Path(str(run_dir)).expanduser()
        if not d.is_dir():
            raise ConfigError(f"run={run_dir} is not a directory; pass a run dir written by "
                              "`hqrun train` (or a search's winner/ dir).")
        ckpt = next((d / n for n in ("model.pt", "best.ckpt") if (d / n).is_file()), None)
        if ckpt is None:
            raise ConfigError(f"run={run_dir} holds no model.pt or best.ckpt; train it to the end first.")
        # A training run records config.yaml; a search's winner/ sits one level below the
        # search run dir (config in .hydra/) and records its model as model.yaml.
        cfg_file = next((c for c in (d / "config.yaml", d.parent / "config.yaml",
                                     d / ".hydra" / "config.yaml", d.parent / ".hydra" / "config.yaml")
                         if c.is_file()), None)
        run_cfg = _read_yaml(cfg_file) if cfg_file else {}
        model_cfg = run_cfg.get("model") or _plain(_get(cfg, "model")) or {}
        if (d / "model.yaml").is_file():
            model_cfg = _read_yaml(d / "model.yaml")
        plan = str(d / "plan.yaml") if (d / "plan.yaml").is_file() else run_cfg.get("quant")
        seed = run_cfg.get("seed", _get(cfg, "seed", 0))  # the split's seed (search.seed is not)
        return {"run_dir": d, "ckpt": ckpt, "model": model_cfg, "plan": plan,
                "data": run_cfg.get("data") or _plain(_get(cfg, "data")), "seed": int(seed or 0),
                # priced as its cost.json was: with the run's own cost settings
                "cost": run_cfg.get("cost") or _plain(_get(cfg, "cost")),
                "scaler": d / "scaler.json" if (d / "scaler.json").is_file() else None}
    ckpt = _get(cfg, "checkpoint")
    if not ckpt:
        raise ConfigError(
            "hqrun firmware needs a trained model: `hqrun firmware run=<run dir>` (a dir written "
            "by `hqrun train`) or `hqrun firmware checkpoint=<model.pt|best.ckpt> quant=<plan>`."
        )
    path = Path(str(ckpt)).expanduser()
    if not path.is_file():
        raise ConfigError(f"checkpoint={ckpt} does not exist; pass the path of a model.pt or best.ckpt.")
    plan = _get(cfg, "plan") or _plain(_get(cfg, "quant"))
    scaler = path.parent / "scaler.json"
    return {"run_dir": None, "ckpt": path, "model": _plain(_get(cfg, "model")) or {}, "plan": plan,
            "data": _plain(_get(cfg, "data")), "seed": int(_get(cfg, "seed", 0)),
            "cost": _plain(_get(cfg, "cost")),
            "scaler": scaler if scaler.is_file() else None}


def _read_yaml(path: Path) -> dict:
    """A run's recorded YAML (safe loader) as a dict; a damaged file is one paragraph."""
    from omegaconf import OmegaConf

    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as err:  # noqa: BLE001 - YAML and OmegaConf errors come in many types
        raise ConfigError(f"{path} is not a readable run record ({type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''}); restore it from the "
                          "run, or pass checkpoint=... with model=... quant=... data=....") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} holds {type(data).__name__}, not a mapping; restore it from the "
                          "run, or pass checkpoint=... with model=... quant=... data=....")
    return data


def _test_split(data_cfg: Any, seed: int, scaler_path: Path | None):
    import numpy as np

    from hqrun.data import Scaler, load_dataset

    if not data_cfg:
        raise ConfigError("no data config to take test samples from; pass data=... (the data the "
                          "model was trained on).")
    splits = load_dataset(data_cfg, seed)
    if scaler_path is not None:
        saved = Scaler.load(scaler_path)
        same = (saved.kind == splits.scaler.kind and saved.mean.shape == splits.scaler.mean.shape
                and np.allclose(saved.mean, splits.scaler.mean, rtol=0, atol=1e-9)
                and np.allclose(saved.scale, splits.scaler.scale, rtol=0, atol=1e-9))
        if not same:
            raise DataError(
                f"the data no longer match the run's scaler {scaler_path}: re-splitting the recorded "
                "data config gives a different standardisation, so the test samples would not be "
                "what the model was trained for. Use the data file the run was trained on."
            )
    return splits


def _estimate(model, cost_cfg: Any, fw_cfg: Any) -> dict | None:
    """The model's deployed cost (:func:`hqrun.cost.deployed.deployed_cost`, the function that
    priced the run's cost.json): informative, it never blocks the export."""
    try:
        from hqrun.cost.deployed import deployed_cost, describe_basis
    except ImportError:
        return None
    try:
        rep = deployed_cost(model, cost_cfg, fw_cfg)
    except Exception as err:  # noqa: BLE001 - the estimate is informative, never blocking
        return {"error": f"{type(err).__name__}: {err}"}
    return {"kind": "estimated", "basis": rep.basis, "basis_text": describe_basis(rep.basis),
            "policy": rep.policy, "totals": rep.totals, "flags": rep.flags}


def _output_dir(fw_cfg: Any, run_dir: Path | None) -> Path:
    explicit = _get(fw_cfg, "out_dir")
    if explicit:
        from hqrun.safenames import check_output_path

        return check_output_path(explicit, "firmware.out_dir")
    if run_dir is not None:
        return run_dir / "firmware"
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir) / "firmware"
    except (ImportError, ValueError):
        return Path("runs") / "firmware" / "firmware"


def run(cfg: Any) -> dict:
    """Hydra entry point of ``hqrun firmware``; returns the report dict."""
    import torch

    from hqrun.firmware import ExportConfig, build_ir, export

    torch.set_num_threads(int(_get(cfg, "threads", 1)))
    fw_cfg = _plain(_get(cfg, "firmware")) or {}
    ExportConfig.from_mapping(fw_cfg).validate()  # project_name etc. first
    src = _source(cfg)
    _output_dir(fw_cfg, src["run_dir"])  # a bad firmware.out_dir fails before any work
    model, model_cfg = load_trained(src["model"], src["plan"], src["ckpt"],
                                    same_plan=src["run_dir"] is not None)
    export_cfg = ExportConfig.from_mapping(fw_cfg)
    shape = getattr(model, "input_shape", None)
    if shape:   # what the firmware cannot build is refused before the data are read
        build_ir(model, shape, export_cfg.parsed_input_type())
    splits = _test_split(src["data"], src["seed"], src["scaler"])
    x, y = splits.X_test, splits.y_test
    estimate = _estimate(model, src["cost"], fw_cfg) if _get(fw_cfg, "estimate", True) else None
    out = _output_dir(fw_cfg, src["run_dir"])
    print(f"hqrun firmware: model {model_cfg.get('name')} from {src['ckpt']}, "
          f"{min(len(x), export_cfg.max_samples or len(x))} test samples, writing {out}")
    result = export(model, x, out, export_cfg, labels=y, estimate=estimate,
                    extra_report={"source": {"run": str(src["run_dir"]) if src["run_dir"] else None,
                                             "checkpoint": str(src["ckpt"])}})
    print(f"hqrun firmware: {result.verification.summary()}")
    acc = result.verification.accuracy
    if acc:
        print(f"hqrun firmware: test accuracy model {acc['model']:.4f}, firmware {acc['firmware']:.4f}")
    line = synthesis_line(result.report["synthesis"])
    if line:
        print(line)
    print(f"hqrun firmware: report {result.out_dir / 'report.md'}")
    return result.report
