"""``hqrun cost model=... quant=...``: price a model, print the table, write cost.json.

The model is built from ``cfg.model`` and the plan (``cfg.plan`` when given — a plan file or
name — else ``cfg.quant``), or read from a trained checkpoint (``checkpoint=...`` or
``run=<run dir>``, whose ``best.ckpt`` carries its plan and weights). Energy and size depend on
the weights only through ``trained_model`` (po2 value counts) and the exact accumulator policy;
the FPGA estimate uses the actual weights (zeros and powers of two are free), so price trained
models when you quote LUTs.

Which input type: a *trained* model (``run=``/``checkpoint=``) is priced as deployed
(:func:`hqrun.cost.deployed.deployed_cost`: the firmware's input type, clock and reuse), so
``hqrun cost run=<dir>`` prints the numbers of that run's ``cost.json`` and of its firmware
report; a *plan* is priced with QTools's source-quantizer convention (8-bit input), which
reproduces QTools's and AutoQKeras's published numbers and is what the search optimises.
``cost.source_quantizers=<spec>`` sets the input of a plan's pricing explicitly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hqrun.errors import ConfigError
from hqrun.rundir import output_dir


def _find_checkpoint(cfg: Any) -> Path | None:
    ckpt = cfg.get("checkpoint") if hasattr(cfg, "get") else None
    run = cfg.get("run") if hasattr(cfg, "get") else None
    if ckpt:
        p = Path(str(ckpt))
        if not p.is_file():
            raise ConfigError(f"checkpoint={ckpt} does not exist; pass the path of a .ckpt file.")
        return p
    if run:
        d = Path(str(run))
        if not d.is_dir():
            raise ConfigError(f"run={run} is not a directory; pass a run dir written by hqrun.")
        # model.pt first: the weights hqrun train priced into cost.json and the firmware reads
        found = ([d / "model.pt"] if (d / "model.pt").is_file() else []) \
            or sorted(d.rglob("best.ckpt")) or sorted(d.rglob("*.ckpt"))
        if not found:
            raise ConfigError(
                f"run={run} holds no model.pt or checkpoint (*.ckpt); train it to the end, or "
                "pass model=... quant=... instead."
            )
        return found[0]
    return None


def build_priced_model(cfg: Any) -> torch.nn.Module:
    """The model `hqrun cost` prices: from a checkpoint when given, else model + plan."""
    from omegaconf import OmegaConf

    from hqrun.models import build_model, load_plan

    model_cfg = OmegaConf.to_container(cfg.model, resolve=True) if cfg.get("model") else {}
    plan_src = cfg.get("plan") or cfg.get("quant")
    if plan_src is not None and not isinstance(plan_src, str):
        plan_src = OmegaConf.to_container(plan_src, resolve=True)
    ckpt_path = _find_checkpoint(cfg)
    if ckpt_path is None:
        return build_model(model_cfg, load_plan(plan_src), seed=int(cfg.get("seed", 0) or 0))
    from hqrun.modelfile import load_model_file, load_state_into, note_record_wins

    loaded = load_model_file(ckpt_path, "checkpoint")   # tensors and plain data only, never code
    record = loaded.record
    note_record_wins(ckpt_path, record, model_cfg)
    model_cfg = record.get("model", model_cfg)
    plan_src = record.get("plan", plan_src)
    model = build_model(model_cfg, load_plan(plan_src))
    missing, _ = load_state_into(model, loaded.state, ckpt_path)
    if missing:
        raise ConfigError(
            f"checkpoint {ckpt_path} does not fit the model built from its record (missing "
            f"{', '.join(missing[:5])}); pass the matching model=... quant=... overrides."
        )
    return model


def _run_firmware_settings(cfg: Any) -> Any:
    """The firmware settings a trained run is deployed with: the run's recorded ``firmware``
    section (``run=<dir>``, so the numbers equal its cost.json), else the current ones."""
    from omegaconf import OmegaConf

    recorded: dict = {}
    run = cfg.get("run") if hasattr(cfg, "get") else None
    if run and (Path(str(run)) / "config.yaml").is_file():
        try:
            loaded = OmegaConf.to_container(OmegaConf.load(Path(str(run)) / "config.yaml"))
            recorded = dict((loaded or {}).get("firmware") or {})
        except Exception:  # noqa: BLE001 - an unreadable record: the current settings apply
            recorded = {}
    if recorded:
        return recorded
    current = cfg.get("firmware") if hasattr(cfg, "get") else None
    return OmegaConf.to_container(current, resolve=True) if OmegaConf.is_config(current) \
        else dict(current or {})


def _settings(cost_cfg: Any):
    from omegaconf import OmegaConf

    from hqrun.cost.config import make_config

    plain = OmegaConf.to_container(cost_cfg, resolve=True) if OmegaConf.is_config(cost_cfg) else cost_cfg
    return make_config(plain or None)


def run(cfg: Any) -> dict:
    """Hydra entry: estimate, print, write cost.json; returns the report dict."""
    from hqrun.cost.api import estimate
    from hqrun.cost.deployed import deployed_cost

    torch.set_num_threads(int(cfg.get("threads", 1) or 1))
    settings = _settings(cfg.get("cost"))
    model = build_priced_model(cfg)
    if _find_checkpoint(cfg) is not None:    # a trained model: its deployed cost
        report = deployed_cost(model, cfg.get("cost"), _run_firmware_settings(cfg))
    else:                                    # a plan: QTools's convention (the search's)
        report = estimate(model, settings=settings)
    from hqrun.rundir import claimed_dir

    with claimed_dir(output_dir(cfg, "cost"), "cost", what="the cost output directory") as claimed:
        out = claimed.create()   # never a finished run's dir (hqrun.rundir)
        report.to_json(out / "cost.json")
    if settings.print_table:
        print(report.table())
        print(f"cost.json written to {out / 'cost.json'}")
    return report.to_dict()
