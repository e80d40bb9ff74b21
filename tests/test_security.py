"""Issue #16's catalogue of bad inputs and faults, each with the message it must produce.

Every case says what the user sees (a fragment of hqrun's one-paragraph error and the exit
status) and checks that nothing ran from a file or a config value (a marker file the payload
would create) and that earlier artefacts are byte-identical afterwards. The reliability issue
(#17) builds its larger table on these rows. Data are tiny files made here; the one trained run
directory is shared by the module.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch

from hqrun.cli import main
from jets_data import write_tiny_jets

DATA = ["data=jets_file", "trainer.max_epochs=1", "trainer.batch_size=64", "trainer.progress_bar=false",
        "trainer.roc_plot=false"]


# ----------------------------------------------------------------------------- helpers
class Payload:
    """Unpickling this creates ``path``: what a crafted checkpoint would do with worse code."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def write_evil(path: Path, marker: Path, legacy: bool = False, lightning: bool = False) -> Path:
    """A checkpoint whose weights look right but whose pickle also names ``open``."""
    state = {"dense_1.weight": torch.zeros(64, 16), "boom": Payload(marker)}
    obj = {"state_dict": state, "hyper_parameters": {"record": {}}} if lightning else state
    path.parent.mkdir(parents=True, exist_ok=True)
    if legacy:
        with open(path, "wb") as fh:
            pickle.dump(obj, fh)
    else:
        torch.save(obj, path)
    return path


def snapshot(directory: Path) -> dict[str, str]:
    """sha256 of every file under ``directory`` (hidden ones included)."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def cli(capsys, *argv: str) -> tuple[int, str]:
    """Run ``hqrun argv`` in this process; (exit status, stderr)."""
    capsys.readouterr()
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def jets_file(tmp_path_factory) -> Path:
    return write_tiny_jets(tmp_path_factory.mktemp("secdata") / "tiny.npz", n=300, seed=5, spread=2.0)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, jets_file) -> Path:
    """A finished `hqrun train quant=q6` run directory (never modified by the tests)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    main(["train", *DATA, f"data.path={jets_file}", "quant=q6", f"hydra.run.dir={run}"])
    assert json.loads((run / "job_status.json").read_text())["status"] == "ok"
    return run


@pytest.fixture(scope="module")
def evil_dir(tmp_path_factory) -> tuple[Path, Path]:
    """A directory that looks like a training run whose model.pt and best.ckpt run code."""
    d = tmp_path_factory.mktemp("evil")
    marker = d / "PWNED"
    write_evil(d / "run" / "model.pt", marker)
    write_evil(d / "run" / "best.ckpt", marker, lightning=True)
    write_evil(d / "legacy" / "model.pt", marker, legacy=True)
    write_evil(d / "legacy" / "best.ckpt", marker, legacy=True, lightning=True)
    return d, marker


# ----------------------------------------------------------------------------- 1. model files
#: Every entry point that reads a model or checkpoint file: (name, argv after `hqrun`).
CHECKPOINT_ENTRY_POINTS: list[tuple[str, Callable[[Path, Path], list[str]]]] = [
    ("train checkpoint=<file>", lambda d, data: ["train", *DATA, f"data.path={data}", "quant=q6",
                                                 f"checkpoint={d / 'model.pt'}"]),
    ("train checkpoint=<run dir>", lambda d, data: ["train", *DATA, f"data.path={data}", f"checkpoint={d}"]),
    ("cost checkpoint=<file>", lambda d, data: ["cost", f"checkpoint={d / 'best.ckpt'}"]),
    ("cost run=<dir>", lambda d, data: ["cost", f"run={d}"]),
    ("firmware checkpoint=<file>", lambda d, data: ["firmware", "data=jets_file", f"data.path={data}",
                                                    "quant=q6", f"checkpoint={d / 'model.pt'}"]),
    ("firmware run=<dir>", lambda d, data: ["firmware", f"run={d}"]),
]


@pytest.mark.parametrize("fmt", ["run", "legacy"], ids=["zip-pickle", "legacy-pickle"])
@pytest.mark.parametrize("name, argv", CHECKPOINT_ENTRY_POINTS, ids=[c[0] for c in CHECKPOINT_ENTRY_POINTS])
def test_a_crafted_checkpoint_runs_nothing_at_any_entry_point(name, argv, fmt, evil_dir, jets_file,
                                                               tmp_path, capsys):
    root, marker = evil_dir
    out = tmp_path / "out"
    code, err = cli(capsys, *argv(root / fmt, jets_file), f"hydra.run.dir={out}")
    assert code == 2, err
    assert not marker.exists(), f"{name}: the checkpoint's code ran"
    assert "cannot be read as data: it needs Python objects to be unpickled" in err
    assert "weights_only=True" in err and "convert it once" in err
    assert err.count("hqrun: error:") == 1 and "Traceback" not in err
    assert not out.exists(), "a command that failed before any work left its run dir behind"


def test_python_entry_points_refuse_a_crafted_checkpoint(evil_dir, tmp_path):
    from hqrun.errors import ModelFileError
    from hqrun.firmware_command import load_trained
    from hqrun.models import build_model, load_plan
    from hqrun.train.runner import load_initial_state

    root, marker = evil_dir
    model = build_model({"name": "jet_dnn"}, load_plan("q6"))
    with pytest.raises(ModelFileError, match="cannot be read as data"):
        load_initial_state(model, root / "run" / "model.pt")       # fit_and_evaluate(initial_state=path)
    with pytest.raises(ModelFileError, match="cannot be read as data"):
        load_trained({"name": "jet_dnn"}, "q6", root / "legacy" / "best.ckpt")
    assert not marker.exists()


def test_the_search_reference_cache_is_read_as_data(evil_dir, tmp_path):
    from hqrun.errors import SearchError
    from hqrun.search.runner import train_reference
    from hqrun.search.toy import ToyBackend, toy_data

    root, marker = evil_dir
    run = tmp_path / "search"
    run.mkdir()
    shutil.copy(root / "run" / "model.pt", run / "reference.pt")
    (run / "reference.json").write_text(json.dumps({"accuracy": 0.5, "cost": {}, "layer_costs": {}}))
    with pytest.raises(SearchError, match=r"cannot be read as data.*Delete reference.pt and "
                                          r"reference.json .* to train the float reference again"):
        train_reference(ToyBackend(), toy_data(32, 16, 16), {}, run, 0)
    assert not marker.exists()
    (run / "reference.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(SearchError, match="not a readable model file .* Delete reference.pt"):
        train_reference(ToyBackend(), toy_data(32, 16, 16), {}, run, 0)
    torch.save({"w": torch.zeros(2)}, run / "reference.pt")
    (run / "reference.json").write_text('{"accuracy": 0.5')
    with pytest.raises(SearchError, match=r"reference.json is unreadable .*Delete reference.pt"):
        train_reference(ToyBackend(), toy_data(32, 16, 16), {}, run, 0)


def test_the_search_command_reads_its_reference_as_data(evil_dir, jets_file, tmp_path, capsys):
    """`hqrun search` resuming a directory whose reference.pt was replaced by a crafted one."""
    from hydra import compose, initialize_config_module

    from hqrun.config import validate_config
    from hqrun.search.runner import fingerprint

    root, marker = evil_dir
    overrides = ["command=search", "data=jets_file", f"data.path={jets_file}", "search.max_trials=2",
                 "search.epochs=1", "search.reference_epochs=1", "search.retrain=none"]
    with initialize_config_module(config_module="hqrun.conf", version_base="1.3"):
        cfg = validate_config(compose("config", overrides=overrides))
    run = tmp_path / "search"
    run.mkdir()
    (run / "search.json").write_text(json.dumps({"fingerprint": fingerprint(cfg.search)}))
    shutil.copy(root / "run" / "model.pt", run / "reference.pt")
    (run / "reference.json").write_text(json.dumps({"accuracy": 0.5, "cost": {}, "layer_costs": {}}))
    code, err = cli(capsys, "search", *overrides[1:], f"hydra.run.dir={run}")
    assert code == 2 and "cannot be read as data" in err and "Delete reference.pt" in err
    assert not marker.exists()


def test_a_damaged_model_description_or_scaler_is_one_paragraph(finished_run, jets_file, tmp_path, capsys):
    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    (run / "model.json").write_text('{"format": "hqrun-model/1", "rec')
    code, err = cli(capsys, "firmware", "data=jets_file", f"data.path={jets_file}",
                    f"checkpoint={run / 'model.pt'}", f"hydra.run.dir={tmp_path / 'fw'}")
    assert code == 2 and "model.json (the description of the checkpoint weights beside it) is not " \
                         "readable JSON" in err
    shutil.copy(finished_run / "model.json", run / "model.json")
    (run / "scaler.json").write_text("[1, 2]")
    code, err = cli(capsys, "firmware", f"run={run}", f"hydra.run.dir={tmp_path / 'fw2'}")
    assert code == 2 and "scaler.json is not a readable scaler" in err


def test_a_run_dir_whose_plan_was_changed_after_training_is_refused(finished_run, tmp_path, capsys):
    """The issue's damage: plan.yaml says q4 but the weights were trained as q6."""
    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    from hqrun.models import load_plan

    load_plan("q4").to_yaml(run / "plan.yaml")
    code, err = cli(capsys, "firmware", f"run={run}", f"hydra.run.dir={tmp_path / 'fw'}")
    assert code == 2 and "does not match the plan recorded with the weights" in err
    assert "plan 'q6'" in err and not (run / "firmware").exists()


# ----------------------------------------------------------------------------- 2. names
@dataclass
class NameCase:
    id: str
    argv: Callable[[Path, Path, Path], list[str]]   # (finished run, data file, tmp) -> argv
    fragment: str


NAME_CASES = [
    NameCase("project_name shell injection",
             lambda run, data, tmp: ["firmware", f"run={run}", f"firmware.project_name='fw$(date>{tmp / 'PWNED'})'"],
             "firmware.project_name='fw$(date>"),
    NameCase("project_name traversal",
             lambda run, data, tmp: ["firmware", f"run={run}", "firmware.project_name=../../escape"],
             "firmware.project_name='../../escape' is not a usable identifier"),
    NameCase("project_name C++ keyword",
             lambda run, data, tmp: ["firmware", f"run={run}", "firmware.project_name=int"],
             "firmware.project_name='int' is not a usable identifier"),
    NameCase("firmware.out_dir climbing out",
             lambda run, data, tmp: ["firmware", f"run={run}", "firmware.out_dir=../../fw"],
             "firmware.out_dir='../../fw' climbs out of its base directory"),
    NameCase("out_dir climbing out",
             lambda run, data, tmp: ["train", *DATA, f"data.path={data}", "out_dir=../elsewhere"],
             "out_dir='../elsewhere' climbs out of its base directory"),
    NameCase("search.run_dir climbing out",
             lambda run, data, tmp: ["search", f"data.path={data}", "data=jets_file", "search.run_dir=../s"],
             "search.run_dir='../s' climbs out"),
    NameCase("study baseline as a path",
             lambda run, data, tmp: ["study", "data=jets_file", f"data.path={data}",
                                     "study.baselines=[float,../../evil]"],
             "study.baselines entry='../../evil' cannot be used as a file or directory name"),
    NameCase("study goal with a slash",
             lambda run, data, tmp: ["study", "data=jets_file", f"data.path={data}", "study.goals=[a/b]"],
             "study.goals entry='a/b' cannot be used"),
]


@pytest.mark.parametrize("case", NAME_CASES, ids=[c.id for c in NAME_CASES])
def test_unsafe_names_are_refused_before_any_work(case, finished_run, jets_file, tmp_path, capsys,
                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = snapshot(finished_run)
    out = tmp_path / "out"
    code, err = cli(capsys, *case.argv(finished_run, jets_file, tmp_path), f"hydra.run.dir={out}")
    assert code == 2 and case.fragment in err, err
    assert err.count("hqrun: error:") == 1 and "Traceback" not in err
    assert not (tmp_path / "PWNED").exists()
    assert snapshot(finished_run) == before and not (finished_run / "firmware").exists()
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.parent.iterdir() if p.name in ("elsewhere", "s", "fw")) == []


def test_hydra_run_dir_climbing_out_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = cli(capsys, "cost", "hydra.run.dir=../outside")
    assert code == 2 and "hydra.run.dir='../outside' climbs out" in err
    assert not (tmp_path.parent / "outside").exists()


def test_a_plan_name_that_is_not_a_plain_name_is_refused(tmp_path):
    from hqrun.errors import PlanError
    from hqrun.models import load_plan

    path = tmp_path / "plan.yaml"
    path.write_text("name: ../../q6 evil\ndefault: {kernel: null, bias: null, activation: null}\n")
    with pytest.raises(PlanError, match=r"plan name='\.\./\.\./q6 evil' cannot be used"):
        load_plan(str(path))


def test_a_layer_name_cannot_inject_code_into_the_generated_forward(tmp_path, monkeypatch):
    """firmware/hls4ml_writer.py builds forward() with exec from layer names; a crafted child name
    (valid for torch) would otherwise run when hls4ml traces that forward."""
    from collections import OrderedDict

    import numpy as np

    from hqrun.errors import FirmwareError
    from hqrun.firmware import export
    from hqrun.models import QSequential, build_model, load_plan

    monkeypatch.chdir(tmp_path)
    model = build_model({"name": "jet_dnn"}, load_plan("q6"))
    evil = "__class__(x) if 0 else (open('PWNED','w'), x)[1]\n    x = (lambda v: v)"
    kids = OrderedDict((evil if k == "relu_1" else k, m) for k, m in model.named_children())
    with pytest.raises(FirmwareError, match="firmware layer name=.* is not a usable identifier"):
        export(QSequential(kids, input_shape=(16,)), np.zeros((4, 16), np.float32), tmp_path / "fw")
    assert not (tmp_path / "PWNED").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []      # no project, no temp dir


# ----------------------------------------------------------------------------- 3. writes
def test_a_full_disk_during_training_is_one_paragraph_and_keeps_what_was_written(
        jets_file, tmp_path, capsys, monkeypatch):
    real = os.write

    def write(fd, data):
        if ".metrics.json." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)
    run = tmp_path / "run"
    code, err = cli(capsys, "train", *DATA, f"data.path={jets_file}", "quant=q6", f"hydra.run.dir={run}")
    assert code == 2
    assert f"could not write metrics.json in {run}: the file system is full" in err
    assert err.count("hqrun: error:") == 1 and "Traceback" not in err
    from hqrun.modelfile import load_model_file

    assert load_model_file(run / "model.pt").record["plan"]["name"] == "q6"     # complete, readable
    assert not (run / "metrics.json").exists()
    assert [p.name for p in run.rglob("*.tmp")] == []
    assert json.loads((run / "job_status.json").read_text())["status"] == "failed"


def test_a_read_only_output_directory_is_named(tmp_path, capsys):
    mount = tmp_path / "ro"
    mount.mkdir()
    import subprocess

    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here ({proc.stderr.strip()})")
    try:
        code, err = cli(capsys, "cost", f"hydra.run.dir={mount / 'run'}")
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
    assert code == 2 and f"in {mount}: the directory is not writable (Read-only file system" in err


# ----------------------------------------------------------------------------- 4. run dirs
RUN_DIR_CASES = [
    ("bad plan", lambda run, data, tmp: ["train", *DATA, f"data.path={data}", f"plan={tmp / 'missing.yaml'}",
                                         f"hydra.run.dir={run}"],
     "holds a finished `hqrun train` run, and hqrun never overwrites a finished run"),
    ("crafted checkpoint", lambda run, data, tmp: ["train", *DATA, f"data.path={data}",
                                                   f"checkpoint={write_evil(tmp / 'e.pt', tmp / 'PWNED')}",
                                                   f"hydra.run.dir={run}"],
     "never overwrites a finished run"),
    ("valid other config", lambda run, data, tmp: ["train", *DATA, f"data.path={data}", "quant=q4",
                                                   f"hydra.run.dir={run}"],
     "never overwrites a finished run"),
    ("another command", lambda run, data, tmp: ["cost", f"hydra.run.dir={run}"],
     "`hqrun cost` never writes over another command's run"),
    ("a search", lambda run, data, tmp: ["search", "data=jets_file", f"data.path={data}", f"hydra.run.dir={run}"],
     "`hqrun search` never writes over another command's run"),
    ("out_dir=", lambda run, data, tmp: ["train", *DATA, f"data.path={data}", f"out_dir={run}",
                                         f"hydra.run.dir={tmp / 'job'}"],
     "the training run directory"),
]


@pytest.mark.parametrize("name, argv, fragment", RUN_DIR_CASES, ids=[c[0] for c in RUN_DIR_CASES])
def test_a_finished_run_is_never_overwritten_or_relabelled(name, argv, fragment, finished_run, jets_file,
                                                          tmp_path, capsys):
    """The issue's scenario: `hqrun train ... hydra.run.dir=<finished run>` failing (bad plan,
    bad checkpoint) used to rewrite plan.yaml/config.yaml and mark the run failed."""
    before = snapshot(finished_run)
    code, err = cli(capsys, *argv(finished_run, jets_file, tmp_path))
    assert code == 2 and fragment in err and str(finished_run) in err, err
    assert snapshot(finished_run) == before                       # every byte, job_status.json too
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "job").exists()


def test_a_failure_before_any_work_leaves_no_run_dir_but_keeps_an_existing_one(jets_file, tmp_path, capsys):
    new = tmp_path / "new"
    code, err = cli(capsys, "train", *DATA, f"data.path={jets_file}", f"plan={tmp_path / 'no.yaml'}",
                    f"hydra.run.dir={new}")
    assert code == 2 and "no such plan file" in err and not new.exists()
    existing = tmp_path / "mine"
    existing.mkdir()
    code, err = cli(capsys, "train", *DATA, f"data.path={jets_file}", f"plan={tmp_path / 'no.yaml'}",
                    f"hydra.run.dir={existing}")
    assert code == 2 and existing.is_dir()
    assert json.loads((existing / "job_status.json").read_text())["status"] == "failed"


def test_a_finished_search_is_not_touched_by_a_resume_with_other_settings(tmp_path, jets_file, capsys):
    run = tmp_path / "search"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("command: search\n")
    (run / "search.json").write_text(json.dumps({"fingerprint": "0123456789abcdef", "config": {}}))
    (run / "search_summary.json").write_text("{}")
    (run / "job_status.json").write_text(json.dumps({"status": "ok", "command": "search"}))
    (run / "cli.log").write_text("")
    before = snapshot(run)
    code, err = cli(capsys, "search", "data=jets_file", f"data.path={jets_file}", f"hydra.run.dir={run}")
    assert code == 2 and "holds a different search" in err
    assert snapshot(run) == before


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "search.json is unreadable (JSONDecodeError"),
    ("[1, 2]", "search.json is unreadable (valid JSON but not a record with a fingerprint)"),
])
def test_a_damaged_search_json_is_one_paragraph(content, fragment, tmp_path, jets_file, capsys):
    run = tmp_path / "search"
    run.mkdir()
    (run / "search.json").write_text(content)
    code, err = cli(capsys, "search", "data=jets_file", f"data.path={jets_file}", f"hydra.run.dir={run}")
    assert code == 2 and fragment in err and "Traceback" not in err
    assert (run / "search.json").read_text() == content


def test_a_sweep_dir_holding_a_sweep_is_refused(tmp_path, jets_file, capsys):
    sweep = tmp_path / "sweep"
    (sweep / "0").mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    (sweep / "0" / "metrics.json").write_text("{}")
    before = snapshot(sweep)
    code, err = cli(capsys, "-m", "train", *DATA, f"data.path={jets_file}", "quant=q4,q8",
                    f"hydra.sweep.dir={sweep}")
    assert code == 2 and "already holds an earlier sweep" in err
    assert snapshot(sweep) == before


def test_a_directory_another_process_writes_into_is_refused(tmp_path):
    import fcntl

    from hqrun.errors import RunDirError
    from hqrun.rundir import claim

    busy = tmp_path / "busy"
    busy.mkdir()
    fd = os.open(busy, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)       # as a running hqrun command holds it
    try:
        with pytest.raises(RunDirError, match="another hqrun command is writing into"):
            claim(busy, "train", create=True)
    finally:
        os.close(fd)
    held = claim(busy, "train", create=True)
    held.release()


# ----------------------------------------------------------------------------- 6. journal
def trial(i: int, score=0.5, accuracy=0.6, cost=100.0, status="ok") -> dict:
    return {"event": "trial", "trial_id": f"t{i}", "block": None, "status": status,
            "config": {"k": i}, "plan": {"name": f"p{i}"}, "widths": {}, "accuracy": accuracy,
            "cost": cost, "score": score}


def write_journal(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_a_corrupted_line_is_reported_and_no_finished_trial_is_lost(tmp_path):
    from hqrun.search.journal import Journal, JournalWarning
    from hqrun.search.results import front_records

    points = [trial(0, accuracy=0.50, cost=10), trial(1, accuracy=0.60, cost=20),
              trial(2, accuracy=0.70, cost=30), trial(3, accuracy=0.80, cost=40),
              trial(4, accuracy=0.90, cost=50)]
    lines = [json.dumps(p) for p in points]
    lines[2] = lines[2][:25] + "\x00garbage"        # the middle of the file, not a torn tail
    journal = Journal(write_journal(tmp_path / "trials.jsonl", lines))
    with pytest.warns(JournalWarning, match=r"trials.jsonl, line 3: not valid JSON .*line skipped"):
        records = journal.trials()
    assert [r["trial_id"] for r in records] == ["t0", "t1", "t3", "t4"]
    assert len(front_records(records)) == 4


@pytest.mark.parametrize("line, fragment, kept", [
    ("[1, 2, 3]", "line 2: valid JSON but a list, not a record; line skipped", None),
    ("42", "line 2: valid JSON but a int, not a record", None),
    (json.dumps({**trial(9), "score": "high"}), "trial t9: score 'high' is not a number (cleared); the trial is kept", "t9"),
    (json.dumps({**trial(9), "accuracy": True}), "accuracy True is not a number", "t9"),
    (json.dumps({**trial(9), "status": "weird"}), "status 'weird' is not one of ok, stopped, failed (read as failed)", "t9"),
    (json.dumps({**trial(9), "config": "x"}), "trial record whose config is str, not a mapping; line skipped", None),
    (json.dumps({"event": "trial", "status": "ok", "config": {}, "plan": {}}), "without a trial_id", None),
    (json.dumps({"event": "party"}), "unknown event 'party'", None),
])
def test_each_unusable_line_is_named_with_its_reason(line, fragment, kept, tmp_path):
    from hqrun.search.journal import Journal, JournalWarning
    from hqrun.search.runner import ranked_records

    journal = Journal(write_journal(tmp_path / "trials.jsonl", [json.dumps(trial(0)), line,
                                                                json.dumps(trial(1))]))
    with pytest.warns(JournalWarning, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        records = journal.trials()
    assert [r["trial_id"] for r in records] == ["t0"] + ([kept] if kept else []) + ["t1"]
    ranked = ranked_records(records, 10)       # rankings work on what was read
    assert "t9" not in [r["trial_id"] for r in ranked]


def test_a_torn_last_line_is_reported_as_such(tmp_path):
    from hqrun.search.journal import Journal, JournalWarning

    path = tmp_path / "trials.jsonl"
    path.write_text(json.dumps(trial(0)) + "\n" + json.dumps(trial(1))[:30])
    with pytest.warns(JournalWarning, match="line 2: not valid JSON .*cut short when a search was killed"):
        assert [r["trial_id"] for r in Journal(path).trials()] == ["t0"]


# ----------------------------------------------------------------------------- 3b. full disk mid-search
@pytest.mark.slow
def test_a_search_stopped_by_a_full_disk_resumes_and_completes(tmp_path, monkeypatch, capsys):
    """ENOSPC on the third journal append: one StorageError, the two finished trials kept whole,
    and the same search completes once space is back (toy backend; starts Ray)."""
    import ray

    from hqrun.errors import StorageError
    from hqrun.raystart import start_ray
    from hqrun.search.journal import Journal
    from hqrun.search.runner import run_search
    from hqrun.search.toy import ToyBackend
    from test_search_ray import DATA as TOY_DATA
    from test_search_ray import make_cfg

    if ray.is_initialized():
        ray.shutdown()
    start_ray(num_cpus=2)
    try:
        real, appends = os.write, []

        def write(fd, data):
            if os.readlink(f"/proc/self/fd/{fd}").endswith("trials.jsonl"):
                appends.append(len(data))
                if len(appends) >= 3:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(fd, data)

        monkeypatch.setattr(os, "write", write)
        run = tmp_path / "run"
        with pytest.raises(StorageError, match="could not write trials.jsonl in .*file system is full"):
            run_search(make_cfg(max_trials=5), ToyBackend(), TOY_DATA, run, seed=2)
        monkeypatch.setattr(os, "write", real)
        kept = Journal(run / "trials.jsonl").trials()          # no warning: no torn line
        assert len(kept) == 2
        out = run_search(make_cfg(max_trials=5), ToyBackend(), TOY_DATA, run, seed=2)
        assert {r["trial_id"] for r in kept} <= {r["trial_id"] for r in out.records}
        assert len(out.records) == 5 and all(r["status"] == "ok" for r in out.records)
    finally:
        ray.shutdown()
    assert "Traceback" not in capsys.readouterr().err


def test_a_sweep_subdir_leaving_the_sweep_dir_is_refused(tmp_path, jets_file, capsys):
    code, err = cli(capsys, "-m", "train", *DATA, f"data.path={jets_file}", "quant=q4,q8",
                    f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.sweep.subdir=../../x${hydra.job.num}")
    assert code == 2 and "would put jobs outside hydra.sweep.dir" in err
    assert not (tmp_path / "sweep").exists() and not any(p.name.startswith("x") for p in tmp_path.parent.parent.iterdir())
