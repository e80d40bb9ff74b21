"""Training with learned widths: beta lowers EBOPs, schedules, divergence, the run record."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from hqrun.cli import main
from hqrun.data.datasets import Splits
from hqrun.errors import ConfigError, PlanError
from hqrun.models import BetaSchedule, Plan, build_model, load_plan, load_trained_state, plan_from_model
from hqrun.train.config import TrainerConfig
from hqrun.train.runner import fit_and_evaluate
from jets_data import synthetic_splits, write_tiny_jets

torch.set_num_threads(1)


def make_splits(n: int = 512, seed: int = 0) -> Splits:
    return synthetic_splits(n, seed)


def quick(**kw) -> TrainerConfig:
    base = dict(max_epochs=4, batch_size=64, progress_bar="false", lr=3e-3, early_stopping=False)
    base.update(kw)
    return TrainerConfig(**base)


def learned(beta: float, **extra) -> dict:
    return {"name": f"learned_{beta:g}", "learn": ["kernel", "bias", "activation", "input"],
            "beta": beta, "width_lr_scale": 10.0, **extra}


def test_larger_beta_gives_fewer_ebops():
    splits = make_splits()
    ebops, accs = [], []
    for beta in (0.0, 1e-4, 1e-3):
        result = fit_and_evaluate(splits, quick(), model_cfg={"name": "jet_dnn"}, plan=learned(beta),
                                  seed=0)
        history = result.history
        assert all("ebops" in row and "pruned_weights" in row for row in history)
        assert result.metrics["ebops"] == history[result.metrics["best_epoch"]]["ebops"]
        ebops.append(result.metrics["ebops"])
        accs.append(result.metrics["test"]["accuracy"])
    assert ebops[0] > ebops[1] > ebops[2] > 0
    assert min(accs) > 0.5  # separable classes: all still learn


def test_plain_plans_train_without_penalty_records():
    result = fit_and_evaluate(make_splits(256), quick(max_epochs=1), model_cfg={"name": "jet_dnn"},
                              plan="q6", seed=0)
    assert "ebops" not in result.history[0] and "ebops" not in result.metrics


def test_ramp_schedule_keeps_no_epoch_before_beta_settles():
    s = BetaSchedule(beta=1e-3, schedule="ramp", start=1e-6, ramp_epochs=3)
    assert s.at(0) == pytest.approx(1e-6) and s.at(3) == s.at(9) == 1e-3
    assert s.at(1) == pytest.approx(1e-5) and s.at(2) == pytest.approx(1e-4)
    assert BetaSchedule(beta=2e-3).at(0) == 2e-3
    plan = learned(1e-3, beta_schedule="ramp", beta_ramp_epochs=3, beta_start=1e-6)
    result = fit_and_evaluate(make_splits(256), quick(max_epochs=5, early_stopping=True, patience=0),
                              model_cfg={"name": "jet_dnn"}, plan=plan, seed=0)
    betas = [row["beta"] for row in result.history]
    assert betas[:3] == pytest.approx([1e-6, 1e-5, 1e-4]) and betas[3] == 1e-3
    assert result.metrics["best_epoch"] >= 3
    assert len(result.history) >= 4  # early stopping only watches settled epochs


def test_nan_loss_marks_the_run_diverged_instead_of_crashing():
    splits = make_splits(256)
    splits.X_train[5, 3] = np.inf
    result = fit_and_evaluate(splits, quick(max_epochs=3), model_cfg={"name": "jet_dnn"},
                              plan=learned(1e-4), seed=0)
    assert result.metrics["diverged"] is True
    assert len(result.history) == 1  # stopped after the first epoch
    assert np.isnan(result.metrics["test"]["accuracy"])


@pytest.mark.parametrize("bad, word", [
    ({"beta": -1e-6}, "beta"),
    ({"beta_schedule": "cosine"}, "beta_schedule"),
    ({"beta_schedule": "ramp"}, "beta_ramp_epochs"),
    ({"granularity": "neuron"}, "granularity"),
    ({"learn": ["kernel", "gamma"]}, "learn"),
    ({"default": {"kernel": "quantized_bits(4,0,alpha=1)"}}, "default.kernel"),
    ({"width_lr_scale": -2}, "width_lr_scale"),
])
def test_bad_learned_settings_name_the_setting(bad, word):
    with pytest.raises(PlanError) as err:
        Plan.from_dict({**learned(1e-6), **bad})
    assert word in str(err.value) and "\n" not in str(err.value)


def test_missing_width_tensors_are_refused_with_a_clear_paragraph():
    model = build_model({"name": "jet_dnn"}, learned(1e-6))
    state = {k: v for k, v in model.state_dict().items() if "quantizer" not in k}
    fresh = build_model({"name": "jet_dnn"}, learned(1e-6))
    with pytest.raises(PlanError, match="learned bit widths"):
        load_trained_state(fresh, state, "model.pt")
    with pytest.raises(ConfigError):
        load_trained_state(build_model({"name": "jet_dnn"}, "q6"), model.state_dict(), "model.pt")


@pytest.fixture(scope="module")
def jets_file(tmp_path_factory):
    return write_tiny_jets(tmp_path_factory.mktemp("data") / "tiny.npz", n=400, seed=0, spread=2.0)


def test_cli_trains_a_learned_model_and_the_run_dir_rebuilds_it(tmp_path, jets_file, capsys):
    run = tmp_path / "run"
    main(["train", "data=jets_file", f"data.path={jets_file}", "quant=learned", "quant.beta=1e-5",
          "quant.granularity=channel", "quant.learn=[kernel,activation,input]",
          'quant.default.bias="quantized_bits(8,3,alpha=1)"', "trainer.max_epochs=2",
          "trainer.batch_size=64", "trainer.progress_bar=false", f"hydra.run.dir={run}"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["ebops"] > 0 and "pruned_weights" in metrics["history"][-1]
    plan = Plan.from_yaml(run / "plan.yaml")  # explicit specs: loads again as is
    assert plan.penalty.beta == 1e-5
    assert plan.default["kernel"] == "learned_bits(granularity='channel')"
    assert plan.default["bias"] == "quantized_bits(8,3,alpha=1)"
    config = yaml.safe_load((run / "config.yaml").read_text())
    model = build_model(config["model"], plan)
    load_trained_state(model, torch.load(run / "model.pt", weights_only=True), "model.pt")
    model.eval()
    with np.load(jets_file) as d:
        x = torch.from_numpy(((d["X"] - d["X"].mean(0)) / d["X"].std(0)).astype(np.float32))
    again = build_model(config["model"], plan_from_model(model))
    load_trained_state(again, model.state_dict(), "state")
    again.eval()
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    # a second run from the written plan file reproduces the first
    main(["train", "data=jets_file", f"data.path={jets_file}", f"plan={run / 'plan.yaml'}",
          "trainer.max_epochs=2", "trainer.batch_size=64", "trainer.progress_bar=false",
          f"hydra.run.dir={tmp_path / 'again'}"])
    second = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert second["test"] == metrics["test"] and second["ebops"] == metrics["ebops"]


def test_cli_refuses_a_negative_beta(tmp_path, jets_file, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "data=jets_file", f"data.path={jets_file}", "quant=learned", "quant.beta=-3e-6",
              f"hydra.run.dir={tmp_path / 'x'}"])
    assert exit_info.value.code == 2
    assert "beta=-3e-06" in capsys.readouterr().err


def test_learned_training_starts_from_float_weights(tmp_path, jets_file):
    float_run = tmp_path / "float"
    common = ["data=jets_file", f"data.path={jets_file}", "trainer.batch_size=64",
              "trainer.progress_bar=false"]
    main(["train", *common, "quant=float", "trainer.max_epochs=2", f"hydra.run.dir={float_run}"])
    main(["train", *common, "quant=learned", f"checkpoint={float_run}", "trainer.max_epochs=1",
          f"hydra.run.dir={tmp_path / 'learned'}"])
    assert json.loads((tmp_path / "learned" / "metrics.json").read_text())["epochs_run"] == 1


def test_state_dict_round_trip_rebuilds_the_same_model_and_grids():
    import io

    plan = load_plan({"name": "rt", "learn": ["kernel", "bias", "activation", "input"], "beta": 1e-4,
                      "int_bits": "learned", "granularity": "channel"})
    result = fit_and_evaluate(make_splits(256), quick(max_epochs=2), model_cfg={"name": "jet_dnn"},
                              plan=plan, seed=0)
    buffer = io.BytesIO()
    torch.save(result.model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert any(k.endswith(".width") for k in state) and any(k.endswith(".i") for k in state)
    again = build_model({"name": "jet_dnn"}, Plan.from_yaml(plan.to_yaml()))
    load_trained_state(again, state, "buffer")
    again.eval()
    x = torch.from_numpy(make_splits(64, seed=3).X_test)
    with torch.no_grad():
        assert torch.equal(result.model(x), again(x))
    for (name, a), (_, b) in zip(result.model.named_modules(), again.named_modules()):
        if callable(getattr(a, "fixed_point_grid", None)) and hasattr(a, "bit_widths"):
            ga, gb = a.fixed_point_grid(), b.fixed_point_grid()
            assert np.array_equal(ga.integer, gb.integer) and np.array_equal(ga.fractional, gb.fractional), name
