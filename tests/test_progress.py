"""Progress: a bar on a terminal, a handful of lines in a log, nothing when switched off."""

from __future__ import annotations

import io

import pytest

from hqrun import progress
from hqrun.progress import Bar, on_terminal, wanted
from hqrun.search.progress import TrialProgress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_few_lines_and_a_terminal_a_bar(monkeypatch, capsys) -> None:
    monkeypatch.delenv("CI", raising=False)
    bar = Bar(40, "[train] q6", True, unit="epoch", log_lines=5, describe=lambda: "val acc 0.7")
    for _ in range(40):
        bar.update()
    bar.close()
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"[train] q6: {n}/40 | val acc 0.7" for n in (8, 16, 24, 32, 40)]
    assert on_terminal(_Tty()) and not on_terminal(io.StringIO())
    monkeypatch.setenv("CI", "true")
    assert not on_terminal(_Tty())


def test_switched_off_it_prints_nothing(capsys) -> None:
    bar = Bar(3, "x", enabled=False)
    for _ in range(3):
        bar.update()
    assert capsys.readouterr().out == "" and bar.done == 3


@pytest.mark.parametrize("setting, tty, expected", [("true", False, True), ("false", True, False),
                                                    ("auto", True, True), ("auto", False, False)])
def test_the_setting_resolves_auto_by_the_terminal(monkeypatch, setting, tty, expected) -> None:
    monkeypatch.setattr(progress, "on_terminal", lambda stream=None: tty)
    assert wanted(setting) is expected


def test_trial_progress_resumes_from_the_journal_and_tracks_the_best(capsys) -> None:
    done = [{"status": "ok", "score": 0.5, "accuracy": 0.6, "cost": 1000.0}]
    tracker = TrialProgress(4, True, done)
    tracker({"status": "ok", "score": 0.7, "accuracy": 0.65, "cost": 2000.0})
    tracker({"status": "failed", "score": None})
    tracker({"status": "ok", "score": 0.6, "accuracy": 0.66, "cost": 500.0})
    tracker.close()
    assert tracker.done == 4
    assert capsys.readouterr().out.splitlines()[-1] == \
        "[search] trials: 4/4 | best: val acc 0.6500 at cost 2,000"
