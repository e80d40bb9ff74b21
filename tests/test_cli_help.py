"""`hqrun --help` lists every command; `hqrun <command> --help` its groups and knobs; Hydra's own
help stays reachable as `--hydra-help`."""

from __future__ import annotations

import pytest

from hqrun.cli import HYDRA_COMMANDS, PLAIN_COMMANDS, main
from hqrun.clihelp import COMMAND_CONFIG, COMMANDS, yaml_knobs


def _help(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    assert exit_info.value.code in (0, None)
    return capsys.readouterr().out


def test_main_help_lists_every_command_with_one_line(capsys) -> None:
    out = _help(capsys, "--help")
    assert "powered by Hydra" not in out
    for command in (*HYDRA_COMMANDS, *PLAIN_COMMANDS):
        assert command in COMMANDS, f"{command} has no line in hqrun.clihelp.COMMANDS"
        assert f"  {command}" in out and COMMANDS[command] in out
    for override in ("experiment=quickstart", "data=jets_file data.path=FILE", "hydra.run.dir=DIR"):
        assert override in out
    assert "--hydra-help" in out and len(out.splitlines()) < 45
    assert _help(capsys, "-h") == out


@pytest.mark.parametrize("command", sorted(HYDRA_COMMANDS))
def test_command_help_shows_its_groups_and_knobs(capsys, command: str) -> None:
    out = _help(capsys, command, "--help")
    assert out.startswith(f"hqrun {command}: {COMMANDS[command]}")
    keys, groups = COMMAND_CONFIG[command]
    for group in groups:
        assert f"  {group}: " in out
    assert "knobs" in out
    for key in keys:
        assert f"  {key}=" in out or f"  {key}." in out


def test_train_help_names_the_options_and_the_defaults(capsys) -> None:
    out = _help(capsys, "train", "quant=q4", "--help")
    assert "quant: float (default), learned, q10" in out
    assert "trainer.max_epochs=100    # early stopping usually ends the run sooner" in out
    assert "data.path=null" in out and "hydra.run.dir" not in out.split("knobs")[1]


def test_hydra_help_is_still_hydras(capsys, tmp_path) -> None:
    assert "Hydra (" in _help(capsys, "--hydra-help", f"hydra.run.dir={tmp_path}")


def test_yaml_knobs_dots_nested_keys_and_keeps_comments() -> None:
    text = ("defaults:\n  - space: x\n_self_: 1\ngoal:\n  type: energy   # what\n  max_cost: null\n"
            "ray:\n  address: null\nepochs: 4\n")
    assert list(yaml_knobs(text, prefix="search")) == [
        "  search._self_=1", "  search.goal.type=energy    # what", "  search.goal.max_cost=null",
        "  search.ray.address=null", "  search.epochs=4"]
    assert list(yaml_knobs(text, only=["epochs"])) == ["  epochs=4"]
