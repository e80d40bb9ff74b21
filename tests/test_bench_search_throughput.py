"""bench/search_throughput.py --peer-python: options, the peer boundary, and its error paragraphs.

None of these needs the AutoQKeras environment, TensorFlow or the network: the peer's failures
are provoked with this test's own Python (which has no qkeras), a path that does not exist, and
small stand-in interpreters (shell scripts) that print what a crashed or a finished peer prints.
"""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.append(str(BENCH))

import autoqkeras_peer  # noqa: E402
import search_throughput  # noqa: E402
from autoqkeras_peer import PeerError, PeerReport, hqrun_configs, run_autoqkeras, write_peer_inputs  # noqa: E402

TINY = ["--train", "256", "--val", "64", "--trials", "1", "--epochs", "1"]


def fake_python(tmp_path: Path, body: str) -> str:
    """An executable that stands in for the peer's interpreter (it ignores its arguments)."""
    path = tmp_path / "fake-python"
    path.write_text("#!/bin/sh\n" + body + "\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def peer_inputs(tmp_path: Path) -> tuple[Path, Path]:
    arrays = {"Xt": np.zeros((4, 16), np.float32), "yt": np.zeros(4, np.int64),
              "Xv": np.zeros((2, 16), np.float32), "yv": np.zeros(2, np.int64)}
    return write_peer_inputs(tmp_path, arrays, {"kernel": {"quantized_bits(4,0,1,alpha=1)": 4}})


def one_paragraph(text: str) -> str:
    text = text.strip()
    assert "Traceback" not in text
    assert "\n\n" not in text
    return text


def test_peer_python_defaults_the_population_sizes():
    assert search_throughput.parse_args(["--peer-python", "py"]).population == [1, 4, 16, 64]
    assert search_throughput.parse_args(["--peer-python", "py", "--population", "2", "8"]).population == [2, 8]
    plain = search_throughput.parse_args([])
    assert plain.peer_python is None and plain.population is None
    assert plain.menu == "deployable"
    with pytest.raises(SystemExit):
        search_throughput.parse_args(["--population", "0"])
    with pytest.raises(SystemExit):
        search_throughput.parse_args(["--menu", "everything"])


def test_population_menu_for_the_peer_keeps_every_kind():
    """--menu population hands AutoQKeras the batchable part; kinds it leaves out come from
    AutoQKeras's default menu, as hqrun's build_space fills them."""
    from hqrun.search.space import DEFAULT_MENU

    menu = search_throughput.full_menu({"menu": search_throughput.POPULATION_MENU})
    assert set(menu) == set(DEFAULT_MENU)
    assert menu["kernel"] == search_throughput.POPULATION_MENU["kernel"]
    assert menu["linear"] == DEFAULT_MENU["linear"]


def test_interpreter_without_qkeras_gives_one_paragraph(capsys):
    assert importlib.util.find_spec("qkeras") is None, "the project's Python must not have qkeras"
    status = search_throughput.main(["--peer-python", sys.executable, *TINY])
    err = one_paragraph(capsys.readouterr().err)
    assert status == 2
    assert err.startswith("error: --peer-python") and sys.executable in err
    assert "lacks the module" in err and "qkeras==0.9.0" in err


def test_missing_interpreter_gives_one_paragraph(tmp_path, capsys):
    status = search_throughput.main(["--peer-python", str(tmp_path / "no-such-python"), *TINY])
    err = one_paragraph(capsys.readouterr().err)
    assert status == 2 and "cannot be run" in err and "no-such-python" in err


def test_crashed_peer_names_its_last_message(tmp_path):
    python = fake_python(tmp_path, 'echo "Traceback (most recent call last):" >&2\n'
                                   'echo "RuntimeError: tuner gave up" >&2\nexit 1')
    data, menu = peer_inputs(tmp_path)
    with pytest.raises(PeerError) as caught:
        run_autoqkeras(python, data, menu, tmp_path, trials=1, epochs=1, batch_size=8, seed=0)
    message = one_paragraph(str(caught.value))
    assert "exit status 1" in message and "RuntimeError: tuner gave up" in message


def test_peer_without_trials_is_an_error(tmp_path):
    python = fake_python(tmp_path, "echo '{\"trials\": [], \"trial_seconds\": 0}'")
    data, menu = peer_inputs(tmp_path)
    with pytest.raises(PeerError, match="exit status 0"):
        run_autoqkeras(python, data, menu, tmp_path, trials=1, epochs=1, batch_size=8, seed=0)


def test_peer_report_is_read_from_its_last_json_line(tmp_path):
    report = {"trials": [{"seconds": 2.0, "cpu_seconds": 1.5, "fit_seconds": 1.8, "epochs": 3,
                          "hyperparameters": {"dense_1_kernel_quantizer": "ternary"}},
                         {"seconds": 4.0, "cpu_seconds": 2.5, "fit_seconds": 3.8, "epochs": 7,
                          "hyperparameters": {"dense_1_kernel_quantizer": "binary"}}],
              "trial_seconds": 6.0, "cpu_seconds": 4.0, "trial_epochs": 10, "versions": {"qkeras": "0.9.0"}}
    canned = tmp_path / "report.json"
    canned.write_text(json.dumps(report), encoding="utf-8")
    python = fake_python(tmp_path, f"echo 'model summary chatter'\ncat '{canned}'")
    data, menu = peer_inputs(tmp_path)
    got = run_autoqkeras(python, data, menu, tmp_path, trials=2, epochs=10, batch_size=8, seed=0)
    assert (got.epochs, got.seconds, got.cpu_seconds) == (10, 6.0, 4.0)
    assert got.rate == pytest.approx(3600 * 10 / 6.0)
    assert got.cpu_rate == pytest.approx(3600 * 10 / 4.0)
    assert hqrun_configs(got, ["dense_1__kernel"]) == [{"dense_1__kernel": "ternary"},
                                                       {"dense_1__kernel": "binary"}]


def test_peer_inputs_are_plain_data(tmp_path):
    data, menu = peer_inputs(tmp_path)
    with np.load(data, allow_pickle=False) as f:
        assert f["Xt"].shape == (4, 16) and f["yv"].dtype == np.int64
    assert json.loads(menu.read_text(encoding="utf-8")) == {"kernel": {"quantized_bits(4,0,1,alpha=1)": 4}}


def test_peer_layer_names_match_hqrun_deployable_space(monkeypatch):
    """AutoQKeras's choice names for the peer's model map onto exactly hqrun's search keys."""
    from hqrun.search.backend import HqrunBackend
    from hqrun.search.space import build_space

    for name in ("TF_USE_LEGACY_KERAS", "TF_CPP_MIN_LOG_LEVEL"):
        monkeypatch.setenv(name, os.environ.get(name, ""))   # the peer module sets them at import
    spec = importlib.util.spec_from_file_location("autoqkeras_search", autoqkeras_peer.PEER_SCRIPT)
    peer_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer_script)
    dense = [d for _, d, _ in peer_script.HIDDEN] + ["dense_4"]
    relus = [r for _, _, r in peer_script.HIDDEN]
    names = [f"{d}_{slot}_quantizer" for d in dense for slot in ("kernel", "bias")]
    names += [f"{r}_activation_quantizer" for r in relus]
    space = build_space(search_throughput.deployable_space_config(), HqrunBackend({"name": "jet_dnn"}).describe())
    report = PeerReport(trials=[{"hyperparameters": {n: "x" for n in names}}], seconds=1.0, cpu_seconds=1.0,
                        epochs=1, versions={})
    assert set(hqrun_configs(report, space.keys)[0]) == set(space.keys)
    wrong = PeerReport(trials=[{"hyperparameters": {n: "x" for n in names[1:]}}], seconds=1.0, cpu_seconds=1.0,
                       epochs=1, versions={})
    with pytest.raises(PeerError, match="no longer search the same model"):
        hqrun_configs(wrong, space.keys)
    # the peer offers AutoQKeras exactly hqrun's deployable menu, and every entry passes its limits
    menu = search_throughput.deployable_space_config()["menu"]
    limits = peer_script.limits(menu)
    assert limits["Dense"][:2] == [max(menu["kernel"].values()), max(menu["bias"].values())]
    assert limits["Activation"] == [max(menu["activation"].values())]
