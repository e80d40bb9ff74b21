"""Trials that did not learn (at or near chance, or NaN) are marked failed-to-learn and never
become front points, winners or report rows (issue 18: 3 of 8 quickstart trials sat at 0.2000,
chance for 5 classes, and were the cheapest front points)."""

from __future__ import annotations

import csv
import math

import numpy as np
from hypothesis import given, strategies as st

from hqrun.search.learning import MIN_MARGIN, LearningFloor, learning_floor
from hqrun.search.results import front_records, leaderboard, write_trials_csv


@given(st.integers(2, 12), st.integers(50, 50_000))
def test_a_guesser_is_never_learned_and_the_margin_shrinks_with_more_samples(classes, n):
    y = np.arange(n) % classes
    floor = learning_floor(y)
    assert math.isclose(floor.chance, np.bincount(y).max() / n)
    assert floor.margin >= MIN_MARGIN
    assert not floor.learned(floor.chance) and not floor.learned(floor.threshold)
    assert floor.learned(floor.threshold + 1e-9)
    assert not floor.learned(float("nan")) and not floor.learned(None)
    assert learning_floor(np.arange(4 * n) % classes).margin <= floor.margin


def test_chance_is_the_most_frequent_class() -> None:
    y = np.array([0] * 70 + [1] * 20 + [2] * 10)
    assert learning_floor(y).chance == 0.7


def test_a_guessers_accuracy_rarely_passes_the_floor() -> None:
    """Simulated guessers on the quickstart's validation split (3,200 jets, 5 classes): at most
    a few in a thousand score above the floor (3 sigma: 0.13 % expected)."""
    floor = learning_floor(np.arange(3200) % 5)
    rng = np.random.default_rng(0)
    accuracies = rng.binomial(3200, floor.chance, size=20_000) / 3200
    assert np.mean(accuracies > floor.threshold) < 0.005
    assert math.isclose(floor.threshold, 0.2 + 3 * math.sqrt(0.2 * 0.8 / 3200))


def test_floor_round_trips_through_json() -> None:
    floor = learning_floor(np.arange(1000) % 5)
    assert LearningFloor.from_dict(floor.to_dict()) == floor
    assert LearningFloor.from_dict(None) is None and LearningFloor.from_dict({"x": 1}) is None


def _trial(i: int, accuracy: float, cost: float, status: str = "ok") -> dict:
    return {"trial_id": f"t{i}", "status": status, "accuracy": accuracy, "cost": cost,
            "score": accuracy, "epochs": 4, "plan": {}, "config": {}, "costs": {}}


def test_a_cheap_trial_at_chance_is_no_front_point(tmp_path) -> None:
    floor = learning_floor(np.arange(3200) % 5)
    records = [_trial(0, 0.2, 100.0), _trial(1, 0.215, 150.0), _trial(2, 0.63, 200.0),
               _trial(3, 0.66, 300.0), _trial(4, float("nan"), 50.0, "failed"),
               _trial(5, 0.60, 400.0)]
    assert [r["trial_id"] for r in front_records(records)] == ["t0", "t1", "t2", "t3"]
    assert [r["trial_id"] for r in front_records(records, floor)] == ["t2", "t3"]
    write_trials_csv(records, tmp_path / "trials.csv", floor)
    rows = {r["trial_id"]: r for r in csv.DictReader((tmp_path / "trials.csv").open())}
    assert rows["t0"]["learned"] == "False" and rows["t1"]["learned"] == "False"
    assert rows["t2"]["learned"] == "True" and rows["t4"]["learned"] == ""
    assert rows["t0"]["pareto"] == "False" and rows["t2"]["pareto"] == "True"
    board = leaderboard(records, goal="energy", floor=floor)
    assert "2 failed to learn" in board and "t0  (failed to learn)" in board
    assert "as the search prices it" in board


def test_a_trial_at_chance_never_wins_while_another_learned(tmp_path) -> None:
    """Whatever its score (a forgiving factor rewards a very cheap guesser), a failed-to-learn
    trial is not the winner when any trial learned."""
    from types import SimpleNamespace

    import yaml

    from hqrun.search.results import write_results

    plan = {"name": "p", "input": None, "default": {}, "layers": {}}
    guess = {**_trial(0, 0.2, 10.0), "score": 0.9,
             "plan": {**plan, "default": {"kernel": "quantized_bits(2,1,1,alpha=1)"}}}
    learned = {**_trial(1, 0.6, 200.0), "score": 0.7,
               "plan": {**plan, "default": {"kernel": "quantized_bits(6,0,1,alpha=1)"}}}
    outcome = SimpleNamespace(run_dir=tmp_path, records=[guess, learned], final_block=None,
                              reference=SimpleNamespace(cost={"energy": 1000.0}, accuracy=0.65),
                              reference_cost=1000.0)
    written = write_results(outcome, "energy", floor=learning_floor(np.arange(3200) % 5))
    assert written["winner"]["trial_id"] == "t1"
    assert "(6,0,1" in yaml.safe_load((tmp_path / "winner.yaml").read_text())["default"]["kernel"]
    assert [r["trial_id"] for r in written["front"]] == ["t1"]
