"""``hqrun train`` end to end on a tiny npz the test writes: the run dir holds the record."""

from __future__ import annotations

import json

import pytest
import yaml

from hqrun.cli import main
from hqrun.data import JET_CLASSES
from jets_data import write_tiny_jets


@pytest.fixture(scope="module")
def jets_file(tmp_path_factory):
    return write_tiny_jets(tmp_path_factory.mktemp("data") / "tiny.npz", n=400, seed=0, spread=2.0, offset=10)


def train(run_dir, *overrides):
    main(["train", "data=jets_file", "model=jet_dnn", "trainer.max_epochs=2", "trainer.batch_size=64",
          "trainer.progress_bar=false", f"hydra.run.dir={run_dir}", *overrides])


def test_train_writes_the_run_record(tmp_path, jets_file, capsys):
    run_dir = tmp_path / "run"
    train(run_dir, f"data.path={jets_file}", "quant=q6", "seed=1")
    out = capsys.readouterr().out
    assert "test accuracy" in out
    for name in ("config.yaml", "metrics.json", "best.ckpt", "model.pt", "plan.yaml", "scaler.json",
                 "roc.png", "logs/metrics.csv"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["plan"] == "q6" and metrics["epochs_run"] == 2 and metrics["seed"] == 1
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
    assert len(metrics["test"]["confusion_matrix"]) == 5
    assert set(metrics["test"]["roc_auc"]) == set(JET_CLASSES)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["data"]["path"] == str(jets_file) and config["trainer"]["max_epochs"] == 2
    plan = yaml.safe_load((run_dir / "plan.yaml").read_text())
    assert "quantized_bits(6,0" in str(plan["default"]["kernel"])
    scaler = json.loads((run_dir / "scaler.json").read_text())
    assert len(scaler["mean"]) == 16 and scaler["mean"][0] > 5  # raw features were offset by ~10
    assert (run_dir / "roc.png").read_bytes()[:4] == b"\x89PNG"


def test_plan_file_override_and_determinism(tmp_path, jets_file):
    plan = tmp_path / "winner.yaml"
    plan.write_text(yaml.safe_dump({
        "name": "winner", "input": None,
        "default": {"kernel": "quantized_bits(4,0,alpha=1)", "bias": "quantized_bits(4,0,alpha=1)",
                    "activation": "quantized_relu(4,0)"},
        "layers": {"dense_1": {"kernel": "quantized_bits(8,0,alpha=1)"}},
    }))
    for name in ("a", "b"):
        train(tmp_path / name, f"data.path={jets_file}", f"plan={plan}")
    first = json.loads((tmp_path / "a" / "metrics.json").read_text())
    second = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert first["plan"] == "winner"
    assert first["test"] == second["test"] and first["val"] == second["val"]
    written = yaml.safe_load((tmp_path / "a" / "plan.yaml").read_text())
    assert "quantized_bits(8,0" in str(written["layers"]["dense_1"]["kernel"])


def test_user_errors_exit_cleanly(tmp_path, jets_file, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train(tmp_path / "x", f"data.path={tmp_path / 'missing.npz'}")
    assert exit_info.value.code == 2
    assert "missing.npz" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        train(tmp_path / "y", f"data.path={jets_file}", "data.nan_polcy=drop")
    assert exit_info.value.code != 0
    with pytest.raises(SystemExit) as exit_info:
        train(tmp_path / "z", f"data.path={jets_file}", "trainer.scheduler=step")
    assert exit_info.value.code == 2
    assert "trainer.scheduler" in capsys.readouterr().err


def test_checkpoint_starts_quantized_training_from_float_weights(tmp_path, jets_file):
    train(tmp_path / "float", f"data.path={jets_file}", "quant=float")
    train(tmp_path / "q6", f"data.path={jets_file}", "quant=q6", f"checkpoint={tmp_path / 'float'}",
          "trainer.max_epochs=1")
    floats = json.loads((tmp_path / "float" / "metrics.json").read_text())
    started = json.loads((tmp_path / "q6" / "metrics.json").read_text())
    # one QAT epoch from trained float weights beats a fresh start's first epoch by far
    assert started["history"][0]["val_loss"] < floats["history"][0]["val_loss"]
    with pytest.raises(SystemExit) as exit_info:
        train(tmp_path / "bad", f"data.path={jets_file}", f"checkpoint={tmp_path / 'nowhere'}")
    assert exit_info.value.code == 2
