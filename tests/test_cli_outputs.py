"""What commands leave and print: no run directory from a command that failed before any work,
hints that name only what exists, data-path errors that say what was meant."""

from __future__ import annotations

from pathlib import Path

import pytest

from hqrun.cli import main
from hqrun.hints import cost_hint, firmware_hint, next_line, train_plan_hint
from jets_data import write_tiny_jets


@pytest.mark.parametrize("args", [
    ["train", "plan=missing.yaml"],
    ["train", "data.path=missing.npz"],
    ["train", "data=jets_file"],
    ["train", "checkpoint=missing.pt"],
    ["train", "trainer.scheduler=step"],
    ["train", "quant=q6", "+quant.layers.dense_9.kernel=binary"],
    ["cost", "run=missing"],
    ["firmware", "run=missing"],
    ["firmware"],
    ["search", "search.max_trials=0"],
    ["experiment=quickstart", "study.candidates=0"],
])
def test_a_command_that_fails_before_any_work_leaves_no_directory(tmp_path, monkeypatch, capsys,
                                                                  args) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err
    left = [p for p in tmp_path.rglob("*")]
    assert left == [], f"{args} left {left}"


def test_data_path_without_jets_file_reads_that_file(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["train", "data.path=missing.npz"])
    err = capsys.readouterr().err
    assert "data.path=missing.npz: no such file" in err and "embedded jet sample" not in err
    data = write_tiny_jets(tmp_path / "mine.npz", n=300, seed=0, spread=2.0)
    main(["train", f"data.path={data}", "trainer.max_epochs=1", "trainer.batch_size=64",
          "trainer.progress_bar=false", f"hydra.run.dir={tmp_path / 'run'}"])
    out = capsys.readouterr().out
    assert f"data {data} (192 train / 48 val / 60 test)" in out


def test_hints_name_only_what_exists(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    plan = tmp_path / "winner.yaml"
    assert next_line([train_plan_hint(plan), firmware_hint(run), cost_hint(run)]) is None
    plan.write_text("name: w\n")
    assert next_line([train_plan_hint(plan), firmware_hint(run)]) == \
        f"next: `hqrun train plan={plan}`"
    (run / "model.pt").write_bytes(b"")
    assert next_line([firmware_hint(run)], "[x] ") == f"[x] next: `hqrun firmware run={run}`"
    odd = tmp_path / "a dir"
    assert "'" in train_plan_hint(odd / "p.yaml").command      # one shell word


def test_train_prints_next_steps_that_work(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    data = write_tiny_jets(tmp_path / "d.npz", n=300, seed=0, spread=2.0)
    base = ["train", "data=jets_file", f"data.path={data}", "trainer.max_epochs=1",
            "trainer.batch_size=64", "trainer.progress_bar=false"]
    main([*base, "quant=float", f"hydra.run.dir={tmp_path / 'f'}"])
    out = capsys.readouterr().out
    assert f"next: `hqrun train quant=q6 checkpoint={tmp_path / 'f'}`" in out
    assert "hqrun firmware" not in out          # a float model has no firmware
    main([*base, "quant=q6", f"hydra.run.dir={tmp_path / 'q'}"])
    out = capsys.readouterr().out
    assert f"next: `hqrun firmware run={tmp_path / 'q'}` or `hqrun cost run={tmp_path / 'q'}`" in out
    assert "best epoch 1 of 1" in out            # counted from 1
