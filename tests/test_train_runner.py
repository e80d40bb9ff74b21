"""Training: the loss goes down, same seed → same metrics, metrics match references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hqrun.data.datasets import Splits
from hqrun.errors import ConfigError
from hqrun.train.config import TrainerConfig
from hqrun.train.datamodule import SliceBatches
from hqrun.train.metrics import classification_metrics, confusion_matrix
from hqrun.train.runner import fit_and_evaluate, load_initial_state, show_progress
from jets_data import synthetic_splits

torch.set_num_threads(1)


def make_splits(n: int = 600, seed: int = 0) -> Splits:
    return synthetic_splits(n, seed)


def small_model() -> nn.Module:
    return nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 5))


def quick(**kw) -> TrainerConfig:
    base = dict(max_epochs=4, batch_size=64, progress_bar="false", lr=3e-3)
    base.update(kw)
    return TrainerConfig(**base)


def test_training_lowers_the_loss_and_beats_chance():
    splits = make_splits()
    rows = []
    result = fit_and_evaluate(splits, quick(max_epochs=5), model=small_model(), seed=0,
                              epoch_callback=rows.append)
    assert len(rows) == len(result.history) == 5
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] * 0.8
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]
    assert result.metrics["test"]["accuracy"] > 0.6  # chance is 0.2
    assert set(result.metrics["test"]["roc_auc"]) == set("gqtwz")


def test_same_seed_same_metrics_other_seed_differs():
    splits = make_splits()
    runs = [fit_and_evaluate(splits, quick(), model_cfg=None, model=_seeded_model(s), seed=s)
            for s in (3, 3, 4)]
    a, b, c = (r.metrics for r in runs)
    assert a["test"] == b["test"] and a["val"] == b["val"]
    assert [h["train_loss"] for h in runs[0].history] == [h["train_loss"] for h in runs[1].history]
    assert [h["train_loss"] for h in runs[0].history] != [h["train_loss"] for h in runs[2].history]


def test_final_metrics_can_be_skipped_without_changing_the_training():
    """A search trial reads its epochs' rows: fit_and_evaluate can skip the final passes."""
    splits = make_splits()
    full = fit_and_evaluate(splits, quick(), model=_seeded_model(5), seed=5)
    lean = fit_and_evaluate(splits, quick(), model=_seeded_model(5), seed=5, evaluate_val=False,
                            evaluate_test=False)
    assert "val" in full.metrics and "test" in full.metrics
    assert "val" not in lean.metrics and "test" not in lean.metrics
    assert full.history == lean.history and full.metrics["best_epoch"] == lean.metrics["best_epoch"]


def _seeded_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return small_model()


def test_best_epoch_weights_are_restored(tmp_path):
    splits = make_splits()
    result = fit_and_evaluate(splits, quick(max_epochs=3), model=small_model(), seed=0, run_dir=tmp_path)
    best = min(result.history, key=lambda r: r["val_loss"])
    assert result.metrics["best_epoch"] == best["epoch"]
    from hqrun.train.runner import predict_proba

    probs = predict_proba(result.model, splits.X_val)
    loss = float(nn.functional.cross_entropy(torch.log(torch.from_numpy(probs)), torch.from_numpy(splits.y_val)))
    assert loss == pytest.approx(best["val_loss"], rel=1e-4)
    assert (tmp_path / "best.ckpt").is_file() and result.checkpoint.endswith("best.ckpt")
    assert (tmp_path / "logs" / "metrics.csv").read_text().count("\n") >= 4


def test_early_stopping_and_schedules():
    splits = make_splits(300)
    result = fit_and_evaluate(splits, quick(max_epochs=30, lr=1e-9, patience=1, scheduler="none"),
                              model=small_model(), seed=0)
    assert len(result.history) < 30  # no progress at lr=1e-9: stops early
    cosine = fit_and_evaluate(splits, quick(max_epochs=3, scheduler="cosine", min_lr=0.0),
                              model=small_model(), seed=0)
    lrs = [h["lr"] for h in cosine.history]
    assert lrs[0] > lrs[1] > lrs[2]
    with pytest.raises(ConfigError, match="scheduler"):
        fit_and_evaluate(splits, quick(scheduler="step"), model=small_model())


def test_initial_state_transfer_and_mismatch():
    splits = make_splits(200)
    source = small_model()
    target = small_model()
    load_initial_state(target, source.state_dict())
    for p, q in zip(source.parameters(), target.parameters()):
        assert torch.equal(p, q)
    wider = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 5))
    with pytest.raises(ConfigError, match="shape mismatch"):
        load_initial_state(wider, source.state_dict())
    with pytest.raises(ConfigError, match="lack the parameter"):
        load_initial_state(nn.Sequential(nn.Linear(16, 5)), {"x": torch.zeros(1)})
    result = fit_and_evaluate(splits, quick(max_epochs=1), model=small_model(), initial_state=source, seed=0)
    assert result.metrics["epochs_run"] == 1


def test_slice_batches_cover_every_row_once_and_reshuffle():
    X = torch.arange(10, dtype=torch.float32)[:, None]
    y = torch.arange(10)
    batches = SliceBatches(X, y, batch_size=4, shuffle=True, seed=1)
    assert len(batches) == 3
    first = torch.cat([b[1] for b in batches])
    second = torch.cat([b[1] for b in batches])
    assert sorted(first.tolist()) == list(range(10)) == sorted(second.tolist())
    assert first.tolist() != second.tolist()
    again = SliceBatches(X, y, batch_size=4, shuffle=True, seed=1)
    assert torch.cat([b[1] for b in again]).tolist() == first.tolist()
    for xb, yb in SliceBatches(X, y, 4, shuffle=True, seed=2):
        assert torch.equal(xb[:, 0].long(), yb)  # features and labels stay paired


def test_metrics_against_sklearn():
    from sklearn.metrics import confusion_matrix as sk_cm
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    logits = rng.normal(size=(300, 3)) + np.eye(3)[y] * 1.2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = classification_metrics(probs, y, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(float((probs.argmax(1) == y).mean()))
    assert m["confusion_matrix"] == sk_cm(y, probs.argmax(1)).tolist()
    for k, name in enumerate("abc"):
        assert m["roc_auc"][name] == pytest.approx(roc_auc_score(y == k, probs[:, k]))
    assert np.isnan(classification_metrics(probs[y != 2], y[y != 2], ["a", "b", "c"])["roc_auc"]["c"])
    assert confusion_matrix(np.array([0, 1, 1]), np.array([1, 1, 0]), 2).tolist() == [[0, 1], [1, 1]]


def test_progress_bar_only_interactive_and_not_ci(monkeypatch):
    monkeypatch.setattr("sys.stdout.isatty", lambda: True, raising=False)
    monkeypatch.setenv("CI", "true")
    assert show_progress("auto") is False
    monkeypatch.delenv("CI")
    assert show_progress("auto") is True
    assert show_progress("false") is False and show_progress(True) is True


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(deadline=None, max_examples=30)
@given(st.integers(0, 2**31 - 1), st.integers(1, 60), st.integers(2, 6))
def test_confusion_matrix_and_accuracy_agree(seed, n, k):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    probs = rng.random((n, k))
    m = classification_metrics(probs, y, [str(i) for i in range(k)])
    cm = np.array(m["confusion_matrix"])
    assert cm.sum() == n
    assert np.array_equal(cm.sum(axis=1), np.bincount(y, minlength=k))
    assert m["accuracy"] == pytest.approx(np.trace(cm) / n)


def test_chunked_steps_give_identical_training():
    """batches_per_step only changes how batches reach Lightning, never the updates."""
    splits = make_splits(700)  # 700 rows, batch 64: a partial last mini-batch too
    runs = [fit_and_evaluate(splits, quick(max_epochs=3, batches_per_step=k), model=_seeded_model(5), seed=5)
            for k in (1, 3, 8)]
    histories = [[(h["train_loss"], h["val_loss"]) for h in r.history] for r in runs]
    assert histories[0] == histories[1] == histories[2]
    states = [r.model.state_dict() for r in runs]
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]) and torch.equal(states[0][key], states[2][key])


def test_training_clips_quantized_weights_to_their_range_as_qkeras_does():
    """QKeras constrains every quantized kernel/bias to the quantizer's range after each update;
    `hqrun train` does too (a large learning rate would otherwise push them far outside)."""
    from hqrun.models import build_model

    cfg = {"name": "jet_dnn", "n_inputs": 16, "n_classes": 5, "hidden": [16, 8, 8]}
    plan = {"name": "clip", "default": {"kernel": "binary", "bias": "quantized_bits(4,0,1,alpha=1)",
                                        "activation": "quantized_relu(4,2)"}}
    model = build_model(cfg, plan)
    result = fit_and_evaluate(make_splits(), quick(max_epochs=2, lr=0.5), model=model, seed=0)
    bounded = [pair for m in result.model.modules() if callable(getattr(m, "constraints", None))
               for pair in m.constraints()]
    assert len(bounded) == 8  # kernel and bias of the four dense layers
    assert all(float(p.detach().abs().max()) <= bound for p, bound in bounded)
    assert any(float(p.detach().abs().max()) == bound for p, bound in bounded)  # the clip acted
