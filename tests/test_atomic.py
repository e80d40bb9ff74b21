"""Atomic artefact writes and the fsynced append-only journal (hqrun/atomic.py).

Faults are injected two ways: ``os.write`` patched to fail with ENOSPC/EROFS for one file (fast,
everywhere), and a real tiny tmpfs (skipped with the reason where mounting is not permitted).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hqrun import atomic
from hqrun.errors import StorageError


def fail_writes_to(monkeypatch, fragment: str, code: int = errno.ENOSPC, after: int = 0) -> None:
    """Make ``os.write`` fail with ``code`` for files whose path contains ``fragment``
    (after ``after`` bytes went through, as a disk filling up mid-write would)."""
    real = os.write

    def write(fd, data):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if fragment in path:
            if after and len(data) > after:
                real(fd, bytes(data[:after]))
            raise OSError(code, os.strerror(code))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_helpers_write_what_they_are_given_and_leave_no_temporary_files(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    atomic.write_text(tmp_path / "a.txt", "hé\n")
    atomic.write_json(tmp_path / "b.json", {"x": [1, 2]})
    atomic.write_yaml(tmp_path / "c.yaml", {"name": "q6", "layers": {}})
    atomic.torch_save({"w": torch.arange(3.0)}, tmp_path / "d.pt")
    fig = Figure()
    fig.add_subplot().plot([0, 1])
    atomic.savefig(fig, tmp_path / "e.png")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "hé\n"
    assert json.loads((tmp_path / "b.json").read_text()) == {"x": [1, 2]}
    assert "name: q6" in (tmp_path / "c.yaml").read_text()
    assert torch.equal(torch.load(tmp_path / "d.pt", weights_only=True)["w"], torch.arange(3.0))
    assert (tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"
    assert leftovers(tmp_path) == []


def test_rewrite_keeps_the_file_mode(tmp_path):
    path = tmp_path / "report.md"
    atomic.write_text(path, "one")
    path.chmod(0o640)
    atomic.write_text(path, "two")
    assert path.read_text() == "two" and (path.stat().st_mode & 0o777) == 0o640


@pytest.mark.parametrize("code, fragment", [(errno.ENOSPC, "the file system is full"),
                                            (errno.EROFS, "the directory is not writable")])
def test_a_failed_write_keeps_the_old_file_and_says_where_and_how_much(tmp_path, monkeypatch,
                                                                       code, fragment):
    path = tmp_path / "model.pt"
    atomic.write_bytes(path, b"old weights")
    fail_writes_to(monkeypatch, ".model.pt.", code, after=4)
    with pytest.raises(StorageError) as info:
        atomic.write_bytes(path, b"new weights, longer than the old ones")
    message = str(info.value)
    assert fragment in message and str(tmp_path) in message and "model.pt" in message
    assert "this write needed 37 B" in message and "Files written before are intact" in message
    assert "\n" not in message and "Traceback" not in message
    assert path.read_bytes() == b"old weights"
    assert leftovers(tmp_path) == []


def test_append_line_is_all_or_nothing_and_ends_a_torn_line_first(tmp_path, monkeypatch):
    journal = tmp_path / "trials.jsonl"
    atomic.append_line(journal, '{"a": 1}')
    with open(journal, "ab") as fh:
        fh.write(b'{"torn": ')              # a writer killed mid-line
    atomic.append_line(journal, '{"b": 2}')
    assert journal.read_bytes() == b'{"a": 1}\n{"torn": \n{"b": 2}\n'
    before = journal.read_bytes()
    fail_writes_to(monkeypatch, "trials.jsonl", after=3)
    with pytest.raises(StorageError, match="could not write trials.jsonl .* full"):
        atomic.append_line(journal, '{"c": 3}')
    assert journal.read_bytes() == before     # half a record was cut off again


@settings(max_examples=25, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=8), st.one_of(
    st.integers(), st.floats(allow_nan=False), st.text(max_size=12), st.none()), max_size=4),
    max_size=6))
def test_journal_lines_read_back_exactly(tmp_path_factory, records):
    path = tmp_path_factory.mktemp("journal") / "j.jsonl"
    for rec in records:
        atomic.append_line(path, json.dumps(rec))
    lines = path.read_text(encoding="utf-8").splitlines() if records else []
    assert [json.loads(line) for line in lines] == records


def test_replace_dir_swaps_a_directory_in_one_step(tmp_path):
    old, new = tmp_path / "firmware", tmp_path / ".firmware.tmp"
    old.mkdir()
    (old / "report.json").write_text("old")
    new.mkdir()
    (new / "report.json").write_text("new")
    atomic.replace_dir(new, old)
    assert (old / "report.json").read_text() == "new" and not new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["firmware"]


# ----------------------------------------------------------------------------- a real tmpfs
@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 64 kB tmpfs (Linux, root); skipped with the reason where mounting is not permitted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'mount failed'}); "
                    "the injected-ENOSPC tests cover the same code")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_real_full_disk_gives_one_paragraph_and_keeps_earlier_files(tiny_tmpfs):
    keep = tiny_tmpfs / "config.yaml"
    atomic.write_text(keep, "seed: 0\n")
    with pytest.raises(StorageError) as info:
        atomic.write_bytes(tiny_tmpfs / "model.pt", os.urandom(200_000))
    message = str(info.value)
    assert "the file system is full" in message and str(tiny_tmpfs) in message
    assert "this write needed 200.0 kB" in message
    assert keep.read_text() == "seed: 0\n"
    assert sorted(p.name for p in tiny_tmpfs.iterdir()) == ["config.yaml"]   # no torn model.pt


def test_a_read_only_file_system_is_named(tiny_tmpfs):
    atomic.write_text(tiny_tmpfs / "metrics.json", "{}")
    proc = subprocess.run(["mount", "-o", "remount,ro", str(tiny_tmpfs)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot remount the tmpfs read-only ({proc.stderr.strip()})")
    with pytest.raises(StorageError, match=r"could not write cost.json in .*: the directory is not "
                                           r"writable \(Read-only file system"):
        atomic.write_json(tiny_tmpfs / "cost.json", {"energy": 1.0})
    assert (tiny_tmpfs / "metrics.json").read_text() == "{}"
