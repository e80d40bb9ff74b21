"""The command line: command words, Hydra flags, and one-paragraph errors instead of tracebacks."""

from __future__ import annotations

import pytest

from hqrun.cli import _split_command, main


def test_command_word_is_taken_out_of_the_overrides() -> None:
    assert _split_command(["train", "quant=q6"]) == ("train", ["quant=q6"])
    assert _split_command(["-m", "train", "seed=0,1"]) == ("train", ["-m", "seed=0,1"])
    assert _split_command(["experiment=quickstart"]) == (None, ["experiment=quickstart"])


def test_hydra_flag_values_are_not_commands() -> None:
    assert _split_command(["--cfg", "job", "quant=q6"]) == (None, ["--cfg", "job", "quant=q6"])
    assert _split_command(["cost", "-c", "job"]) == ("cost", ["-c", "job"])


def test_unknown_command_is_a_clear_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["trian", "quant=q6"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown command 'trian'" in err and "train" in err and "Traceback" not in err


def test_composed_config_prints_with_cfg_job(capsys, tmp_path) -> None:
    main(["experiment=quickstart", "--cfg", "job", f"hydra.run.dir={tmp_path}"])
    out = capsys.readouterr().out
    assert "command: study" in out and "baselines:" in out


def test_invalid_value_is_refused_before_any_work(capsys, tmp_path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "trainer.max_epochs=many", f"hydra.run.dir={tmp_path}"])
    assert exit_info.value.code != 0
    assert "max_epochs" in capsys.readouterr().err


def test_flags_and_overrides_may_interleave() -> None:
    from hqrun.cli import _flags_first

    assert _flags_first(["a=1", "--cfg", "job", "b=2", "-m"]) == ["--cfg", "job", "-m", "a=1", "b=2"]
    assert _flags_first(["--info", "a=1"]) == ["--info", "a=1"]
