"""The bad-input catalogue of issues #16 and #17, run as tests.

Every row of the tables in ``tests/catalogue/`` is one command with one mistake in it. Each is
run in this process through ``hqrun.cli.main`` (fast, and what the console script calls); the
rows marked ``subprocess`` run again as a real ``hqrun`` process, and the rows that resume a
search (they start a local Ray) run only in the slow lane. Every case must
end with its exit status (2, or 0 with a warning where training can go on), show a fragment of
hqrun's one-paragraph message, print no traceback, and leave the prepared finished run byte
for byte as it was. ``tools/bad_inputs.py`` runs all of them and counts tracebacks in what the
user saw.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from catalogue import (Case, Env, QUICK_TRAIN, check_outcome, dump, run_as_process, run_in_process,
                       snapshot, with_run_dir)
from catalogue import (checkpoint_cases, config_cases, data_cases, firmware_settings_cases,
                       journal_cases, learned_cases, plan_cases, rundir_cases, search_cases)
from jets_data import write_tiny_jets

TABLES = {
    "configs and overrides": config_cases.CASES,
    "data files": data_cases.CASES,
    "plans and specs": plan_cases.CASES,
    "checkpoints": checkpoint_cases.CASES,
    "search spaces and caps": search_cases.CASES,
    "firmware settings": firmware_settings_cases.CASES,
    "run directories": rundir_cases.CASES,
    "journals and search records": journal_cases.CASES,
    "learned bit widths": learned_cases.CASES,
}
ALL: list[Case] = [case for table in TABLES.values() for case in table]

#: Every case named in the "Why" sections of issues #16 and #17, by its row.
ISSUE_CASES = {
    # issue 17: ran to exit 0 with no warning
    "a data file with a single class": "data-single-class",
    "a 5-row file": "data-five-rows",
    "model.hidden=[0,-3]": "model-hidden-zero-and-negative",
    "a search menu {}": "space-menu-empty-override",
    "a search menu emptied in a space": "space-menu-emptied",
    "seed=-1": "seed-negative",
    # issue 17: tracebacks
    "truncated checkpoint (train)": "checkpoint-truncated-train",
    "truncated checkpoint (cost)": "checkpoint-truncated-cost",
    "random-bytes checkpoint (train)": "checkpoint-random-bytes-train",
    "random-bytes checkpoint (cost)": "checkpoint-random-bytes-cost",
    "pickled-list checkpoint (train)": "checkpoint-pickled-list-train",
    "pickled-list checkpoint (cost)": "checkpoint-pickled-list-cost",
    "a jet checkpoint given to model=cnn": "checkpoint-jet-into-cnn-train",
    "a jet checkpoint given to model=cnn (cost)": "checkpoint-jet-into-cnn-cost",
    "bits=4096 in a plan": "spec-bits-4096",
    "a non-UTF-8 plan file": "plan-not-utf8",
    "a read-only run dir": "rundir-read-only",
    "a run dir that is a file": "rundir-a-file",
    "valid JSON but not an object in the journal": "journal-line-a-list",
    "a truncated search.json": "search-json-truncated",
    # issue 17: Hydra-level mistakes
    "trainer.max_epoch=3": "hydra-unknown-key-typo",
    "quant=q66": "hydra-unknown-quant-option",
    "bad override syntax": "hydra-bad-syntax-bracket",
    # issue 16
    "crafted model.pt / best.ckpt at every entry point": "crafted-zip-pickle-firmware-run-dir",
    "legacy pickle at every entry point": "crafted-legacy-pickle-cost-run-dir",
    "project_name shell injection": "firmware-project-name-shell",
    "project_name ../ traversal": "firmware-project-name-traversal",
    "a failing train into a finished run": "rundir-finished-bad-plan",
    "a crafted checkpoint into a finished run": "rundir-finished-crafted-checkpoint",
    "a corrupted middle journal line": "journal-corrupted-middle-line",
    "a non-numeric score": "journal-score-not-a-number",
    "a truncated search.json (16)": "search-json-truncated",
    "a damaged reference.pt": "search-reference-truncated",
    "a crafted reference.pt": "search-reference-crafted",
}


class Inputs:
    """The good inputs shared by the module: a data file, a finished run, a finished search."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = write_tiny_jets(root / "tiny.npz", n=300, seed=5, spread=2.0)
        self.finished = root / "finished"
        from hqrun.cli import main

        main(["train", "data=jets_file", f"data.path={self.data}", *QUICK_TRAIN, "quant=q6",
              f"hydra.run.dir={self.finished}"])
        assert json.loads((self.finished / "job_status.json").read_text())["status"] == "ok"
        self._search: Path | None = None

    def search_template(self) -> Path:
        if self._search is None:
            self._search = journal_cases.finished_search(self.root / "template", self.data)
        return self._search

    def env(self, tmp: Path) -> Env:
        return Env(self.data, self.finished, tmp, self.search_template)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Inputs:
    made = Inputs(tmp_path_factory.mktemp("catalogue"))
    yield made
    import ray       # the journal cases resume a search, which starts a local Ray in-process

    if ray.is_initialized():
        ray.shutdown()


def _run(case: Case, inputs: Inputs, tmp_path: Path, runner) -> None:
    env = inputs.env(tmp_path)
    before = snapshot(env.finished)
    try:
        argv = with_run_dir(case.argv(env), env)
        outcome = runner(argv)
        dump(case, argv, outcome, runner.__name__)
        check_outcome(case, env, outcome, before)
    finally:
        for cleanup in reversed(env.cleanups):
            cleanup()


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.slow else [])
                                  for c in ALL])
def test_bad_input(case: Case, inputs: Inputs, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)

    def in_process(argv: list[str]):
        return run_in_process(argv, capsys)

    _run(case, inputs, tmp_path, in_process)


SUBPROCESS = [c for c in ALL if c.subprocess]


@pytest.mark.slow
@pytest.mark.parametrize("case", SUBPROCESS, ids=[c.id for c in SUBPROCESS])
def test_bad_input_as_a_real_process(case: Case, inputs: Inputs, tmp_path: Path) -> None:
    def as_process(argv: list[str]):
        return run_as_process(argv, tmp_path)

    _run(case, inputs, tmp_path, as_process)


def test_the_catalogue_covers_both_issues() -> None:
    ids = [c.id for c in ALL]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    assert len(ALL) >= 150, f"the catalogue has {len(ALL)} cases; the issue asks for 150 or more"
    assert all(len(table) >= 5 for table in TABLES.values())
    missing = {why: row for why, row in ISSUE_CASES.items() if row not in ids}
    assert not missing, f"issue cases without a row: {missing}"
    assert len(SUBPROCESS) >= 10
    assert sum(c.code == 2 for c in ALL) > 0.85 * len(ALL)
