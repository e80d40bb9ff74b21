"""Issue #16's safety checks that are not one command each: the Python entry points given a
crafted file, the search's reference cache, names spliced into generated code, a full disk in
the middle of a training or a search, run-directory claims, and the journal reader line by line.

The command-line cases of issue #16 (a crafted checkpoint at every entry point, unsafe names
and output paths, a finished run given to another command, damaged search records) are rows of
the bad-input catalogue, ``tests/catalogue/`` run by ``tests/test_bad_inputs.py``, with the
same checks: the message, one paragraph, no payload ran, every byte of the finished run kept.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from catalogue.files import write_evil
from hqrun.cli import main
from jets_data import write_tiny_jets

DATA = ["data=jets_file", "trainer.max_epochs=1", "trainer.batch_size=64", "trainer.progress_bar=false",
        "trainer.roc_plot=false"]


# ----------------------------------------------------------------------------- helpers
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
# Every CLI entry point given a crafted, damaged or foreign file: tests/catalogue/checkpoint_cases.py.
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


# ----------------------------------------------------------------------------- 2. names
# Unsafe names and output paths on the command line: tests/catalogue/ (firmware, run dirs).
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


# ----------------------------------------------------------------------------- 4. run dirs
# A finished run, a finished search, a used sweep dir, a read-only or locked dir given to a
# command: tests/catalogue/rundir_cases.py (every byte of the finished run compared).
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
    from hqrun.search.ranking import ranked_records

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
