"""`hqrun cost`: the command builds model + plan, prints the table and writes cost.json; the
config group validates against CostConfig."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from hqrun.cost.command import run
from hqrun.cost.config import CostConfig, make_config
from hqrun.errors import ConfigError

torch.set_num_threads(1)
CONF = Path(__file__).resolve().parents[1] / "conf"


def _cfg(**extra):
    base = {
        "command": "cost", "seed": 0, "threads": 1, "run": None, "checkpoint": None, "out_dir": ".",
        "model": yaml.safe_load((CONF / "model" / "jet_dnn.yaml").read_text()),
        "quant": yaml.safe_load((CONF / "quant" / "q6.yaml").read_text()),
        "cost": yaml.safe_load((CONF / "cost" / "default.yaml").read_text()),
    }
    base.update(extra)
    return OmegaConf.create(base)


def test_default_yaml_keys_match_costconfig_exactly():
    data = yaml.safe_load((CONF / "cost" / "default.yaml").read_text())
    schema = asdict(CostConfig())
    assert set(data) == set(schema)
    for key in ("horowitz", "size", "fpga"):
        assert set(data[key]) == set(schema[key])
    merged = OmegaConf.merge(OmegaConf.structured(CostConfig), data)
    assert make_config(OmegaConf.to_container(merged)) == CostConfig()


def test_run_writes_cost_json_and_prints_table(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = run(_cfg())
    text = capsys.readouterr().out
    assert "dense_1" in text and "energy" in text
    data = json.loads((tmp_path / "cost.json").read_text())
    assert data["totals"]["energy"] == out["totals"]["energy"] > 0
    assert [r["name"] for r in data["layers"]][:3] == ["input", "dense_1", "relu_1"]
    assert data["policy"] == "qtools"


def test_run_reads_a_checkpoint(tmp_path, monkeypatch, capsys):
    from hqrun.models import build_model, load_plan

    cfg = _cfg()
    model = build_model(OmegaConf.to_container(cfg.model), load_plan(
        OmegaConf.to_container(cfg.quant)), seed=3)
    with torch.no_grad():
        model.dense_1.weight.zero_()  # zero weights: no EBOPs in dense_1
    ckpt = tmp_path / "best.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"record": {}}}, ckpt)
    monkeypatch.chdir(tmp_path)
    out = run(_cfg(checkpoint=str(ckpt)))
    rows = {r["name"]: r for r in out["layers"]}
    assert rows["dense_1"]["fpga"]["ebops"] == 0 and rows["dense_2"]["fpga"]["ebops"] > 0


def test_missing_run_dir_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="run="):
        run(_cfg(run=str(tmp_path / "nope")))
