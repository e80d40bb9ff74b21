"""Names that become paths, C++/Python identifiers or shell words (hqrun/safenames.py)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hqrun.errors import ConfigError, FirmwareError
from hqrun.safenames import (check_identifier, check_inside, check_name, check_output_path,
                             is_identifier, is_safe_name)


@pytest.mark.parametrize("name", ["q6", "bf_ptq16", "front_00", "BF", "run-2024.01", "a+b", "x" * 64])
def test_safe_names_pass(name):
    assert check_name(name, "study.baselines entry") == name


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "a\\b", "-rf", ".hidden", "a b",
                                  "fw$(date)", "x`id`", "a;b", "a|b", "a'b", 'a"b', "a\nb",
                                  "é", "x" * 65, None, 3])
def test_unsafe_names_are_refused_with_the_setting_named(name):
    with pytest.raises(ConfigError, match="study.goals entry=.*cannot be used as a file"):
        check_name(name, "study.goals entry")


@pytest.mark.parametrize("name", ["hqrun_fw", "myproject", "_x1", "dense_1", "m0_relu_2"])
def test_identifiers_pass(name):
    assert check_identifier(name, "firmware.project_name") == name


@pytest.mark.parametrize("name", ["fw$(date>x)", "../fw", "fw-1", "1fw", "int", "class", "main",
                                  "import", "x y", "", "a.b", "dense_1(x)\n    open('M','w')"])
def test_non_identifiers_are_refused_with_a_suggestion(name):
    with pytest.raises(FirmwareError, match=r"firmware.project_name=.*not a usable identifier.*Rename it"):
        check_identifier(name, "firmware.project_name", error=FirmwareError)


@given(st.text(max_size=80))
def test_an_accepted_name_is_one_plain_path_component_and_one_shell_word(text):
    if is_safe_name(text):
        assert "/" not in text and "\\" not in text and text not in (".", "..")
        assert shlex.quote(text) == text           # nothing for a shell to expand or split
        assert Path(text).name == text and not text.startswith(("-", "."))


@given(st.text(max_size=80))
def test_an_accepted_identifier_is_a_python_identifier_and_a_safe_name(text):
    if is_identifier(text):
        assert text.isidentifier() and text.isascii() and is_safe_name(text)


def test_output_paths_relative_without_dotdot_or_absolute(tmp_path):
    assert check_output_path("runs/x", "out_dir") == Path("runs/x")
    assert check_output_path(str(tmp_path / "a"), "out_dir") == tmp_path / "a"
    # an absolute path is an explicit choice, '..' included
    assert check_output_path(str(tmp_path / ".." / "b"), "out_dir").is_absolute()
    with pytest.raises(ConfigError, match=r"out_dir='\.\./elsewhere' climbs out .*absolute path"):
        check_output_path("../elsewhere", "out_dir")
    with pytest.raises(ConfigError, match="control characters"):
        check_output_path("runs/a\nb", "out_dir")


def test_check_inside_follows_symlinks(tmp_path):
    root = tmp_path / "run"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    assert check_inside(root / "a" / "b", root, "x") == (root / "a" / "b").resolve()
    with pytest.raises(ConfigError, match="outside"):
        check_inside(root / "link" / "escape", root, "the project directory")
