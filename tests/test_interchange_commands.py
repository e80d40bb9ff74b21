"""`hqrun export` and `hqrun import` from the command line, and the imported run directory in the
commands that read run directories: `hqrun cost`, `hqrun train` (fine-tuning) and `hqrun firmware`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import firmware_cases as fc
from hqrun.cli import main
from hqrun.data import Scaler, load_dataset
from hqrun.models import build_model, load_plan

torch.set_num_threads(1)
CONF = Path(__file__).resolve().parents[1] / "conf"
DATA = {**yaml.safe_load((CONF / "data" / "jets_sample.yaml").read_text()), "max_samples": 2500}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A run directory as `hqrun train` leaves it (config, plan, weights, scaler), made directly."""
    run = tmp_path_factory.mktemp("q6_run")
    model_cfg = {"name": "jet_dnn", "hidden": [16, 8]}
    model = fc._randomise(build_model(model_cfg, "q6", seed=1), torch.Generator().manual_seed(1))
    (run / "config.yaml").write_text(yaml.safe_dump({"model": model_cfg, "data": DATA, "seed": 0}))
    load_plan("q6").to_yaml(run / "plan.yaml")
    torch.save(model.state_dict(), run / "model.pt")
    load_dataset(DATA, 0).scaler.save(run / "scaler.json")
    return run


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory) -> Path:
    main(["export", f"run={trained_run}", f"hydra.run.dir={tmp_path_factory.mktemp('h')}"])
    return trained_run / "export" / "qonnx"


@pytest.fixture(scope="module")
def imported(exported, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("imports") / "random"
    main(["import", f"source={exported / 'model.onnx'}", "import.samples=2000", f"hydra.run.dir={out}"])
    return out


def test_export_writes_the_graph_and_the_proof_on_the_whole_test_split(exported):
    report = json.loads((exported / "report.json").read_text())
    n_test = len(load_dataset(DATA, 0).X_test)
    v = report["verification"]
    assert report["status"] == "PASSED" and v["samples"] == n_test
    assert v["vs_model_float32"]["mismatches"] == 0 and v["vs_model_float32"]["n_samples"] == n_test
    assert v["accuracy"]["graph"] == v["accuracy"]["model"]
    assert report["source"]["samples"] == "test split"
    assert f"{n_test} samples, 0 mismatches" in (exported / "report.md").read_text()
    assert (exported / "model.onnx").stat().st_size > 1000


def test_import_writes_a_run_directory_the_other_commands_read(imported):
    names = {p.name for p in imported.iterdir()}
    assert {"config.yaml", "plan.yaml", "model.pt", "best.ckpt", "scaler.json", "metrics.json",
            "report.md", "source.onnx", "conf"} <= names
    config = yaml.safe_load((imported / "config.yaml").read_text())
    assert config["model"] == {"name": "mlp", "n_inputs": 16, "n_classes": 5, "hidden": [16, 8]}
    assert "data" not in config  # proven on random inputs: no data recorded
    scaler = Scaler.load(imported / "scaler.json")
    assert scaler.kind == "identity" and np.all(scaler.mean == 0) and np.all(scaler.scale == 1)
    metrics = json.loads((imported / "metrics.json").read_text())
    assert metrics["import"]["verification"]["mismatches"] == 0
    assert metrics["import"]["verification"]["n_samples"] == 2000
    ckpt = torch.load(imported / "best.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["record"]["model"]["name"] == "mlp"
    state = torch.load(imported / "model.pt", weights_only=True)
    assert set(state) >= {"dense_1.weight", "dense_3.bias"}
    assert yaml.safe_load((imported / "conf" / "model" / "imported.yaml").read_text()) == config["model"]
    assert "hqrun cost run=" in (imported / "report.md").read_text()


def test_cost_prices_the_imported_model(imported, tmp_path):
    main(["cost", f"run={imported}", f"hydra.run.dir={tmp_path}", "cost.print_table=false"])
    cost = json.loads((tmp_path / "cost.json").read_text())
    assert cost["totals"]["energy"] > 0 and cost["totals"]["size_bits"] > 0
    rows = {r["name"]: r for r in cost["layers"]}
    assert list(rows)[:3] == ["input", "dense_1", "relu_1"]
    assert rows["dense_1"]["weight_bits"] == 6 and rows["relu_1"]["output_bits"] == 6


def test_train_fine_tunes_the_imported_model(imported, tmp_path):
    main(["train", "--config-dir", str(imported / "conf"), "model=imported", "quant=imported",
          f"checkpoint={imported}", "data.standardize=false", "data.max_samples=2500",
          "trainer.max_epochs=1", "trainer.roc_plot=false", f"hydra.run.dir={tmp_path}"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["plan"] == "imported" and metrics["epochs_run"] == 1
    assert yaml.safe_load((tmp_path / "plan.yaml").read_text())["layers"]["relu_1"] == \
        {"activation": "quantized_relu(6,0)"}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is needed for hls4ml's C simulation")
def test_firmware_builds_the_imported_model_bit_exact(exported, tmp_path):
    out = tmp_path / "from_data"
    data = [f"data.max_samples={DATA['max_samples']}"]
    main(["import", f"source={exported / 'model.onnx'}", "import.verify_on=data",
          f"hydra.run.dir={out}", *data])
    assert yaml.safe_load((out / "config.yaml").read_text())["data"]["max_samples"] == 2500
    main(["firmware", f"run={out}", "firmware.max_samples=40", "firmware.synthesize=never",
          f"hydra.run.dir={tmp_path / 'h'}", *data])
    report = json.loads((out / "firmware" / "report.json").read_text())
    assert report["status"] == "PASSED"
    v = report["verification"]
    assert v["n_samples"] == 40 and v["n_mismatch"] == 0 and v["torch_equal"] and v["csim_equal"]


def test_mistakes_are_one_paragraph_errors(tmp_path, capsys, exported):
    for k, (argv, words) in enumerate([
        (["import"], "source=path/to/model.onnx"),
        (["import", f"source={tmp_path / 'none.onnx'}"], "not a file"),
        (["import", f"source={exported / 'model.onnx'}", "import.verify_on=maybe"], "verify_on"),
        (["export", "run=" + str(tmp_path), "export.format=onnx"], "hqrun exports qonnx"),
        (["export", f"run={exported.parent.parent}", "export.out_dir=../escape"], "export.out_dir"),
    ]):
        with pytest.raises(SystemExit) as info:
            main([*argv, f"hydra.run.dir={tmp_path / str(k)}"])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, err


def test_import_never_writes_into_a_finished_run(imported, capsys, exported):
    with pytest.raises(SystemExit):
        main(["import", f"source={exported / 'model.onnx'}", f"hydra.run.dir={imported}"])
    assert "never overwrites a finished run" in capsys.readouterr().err


@pytest.mark.parametrize("group, schema", [("export", "ExportConfig"), ("import", "ImportConfig")])
def test_config_groups_match_their_schemas_exactly(group, schema):
    from dataclasses import asdict

    from hqrun.interchange import config

    data = yaml.safe_load((CONF / group / "default.yaml").read_text())
    assert data == asdict(getattr(config, schema)())


def test_a_misspelt_option_is_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["export", "run=nowhere", "export.formt=qonnx", f"hydra.run.dir={tmp_path}"])
    assert info.value.code != 0
    assert "formt" in capsys.readouterr().err
