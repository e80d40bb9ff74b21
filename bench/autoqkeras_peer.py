"""Run the AutoQKeras peer (bench/peer/autoqkeras_search.py) in its own Python and read its report.

Why a separate module: bench/search_throughput.py compares hqrun's search throughput with
AutoQKeras's, but AutoQKeras lives in another environment (tensorflow-cpu 2.21, tf-keras 2.21,
qkeras 0.9.0, keras-tuner 1.4.8) that is never a project dependency. This module owns the
boundary: it writes nothing but data for the peer (an .npz of arrays, a JSON menu), starts the
interpreter without a shell, and turns every way the peer can fail (interpreter missing, a
package missing, a crash) into one :class:`PeerError` paragraph instead of a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from hqrun.errors import HqrunError

PEER_SCRIPT = Path(__file__).resolve().with_name("peer") / "autoqkeras_search.py"
#: the peer script's exit status when one of its packages is not installed
MISSING_STATUS = 3
INSTALL = ("python3 -m venv /path/to/qkeras-venv && /path/to/qkeras-venv/bin/pip install "
           "tensorflow-cpu==2.21.* tf-keras==2.21.* tensorboard==2.21.* qkeras==0.9.0 "
           "keras-tuner==1.4.8 scikit-learn scipy pyparsing")


class PeerError(HqrunError):
    """The AutoQKeras peer could not be run or did not report."""


@dataclass
class PeerReport:
    """What the peer measured: its own per-trial records, summed."""

    trials: list[dict]            # per trial: seconds, cpu_seconds, fit_seconds, epochs, hyperparameters
    seconds: float                # sum of the trials' wall times
    cpu_seconds: float
    epochs: int                   # trial-epochs actually run (early stopping included)
    versions: dict

    @property
    def rate(self) -> float:
        """Trial-epochs per hour per core, by wall clock (the peer runs on one thread)."""
        return 3600 * self.epochs / self.seconds

    @property
    def cpu_rate(self) -> float:
        return 3600 * self.epochs / self.cpu_seconds


def write_peer_inputs(directory: Path, arrays: Mapping[str, np.ndarray], menu: Mapping[str, Any]) -> tuple[Path, Path]:
    """The peer's inputs as plain data: arrays in an .npz (read with allow_pickle=False) and the
    quantizer menu as JSON."""
    data_file, menu_file = directory / "data.npz", directory / "menu.json"
    np.savez(data_file, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    menu_file.write_text(json.dumps({k: dict(v) for k, v in menu.items()}), encoding="utf-8")
    return data_file, menu_file


def peer_environment() -> dict[str, str]:
    """One thread, legacy Keras (AutoQKeras needs tf-keras), no GPU, quiet TensorFlow."""
    return dict(os.environ, OMP_NUM_THREADS="1", TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
                CUDA_VISIBLE_DEVICES="", PYTHONNOUSERSITE="1")


def run_autoqkeras(python: str, data_file: Path, menu_file: Path, workdir: Path, trials: int, epochs: int,
                   batch_size: int, seed: int, timeout_s: float = 7200) -> PeerReport:
    """Run AutoQKeras's search in ``python``; its tuner files go to ``workdir``."""
    command = [python, str(PEER_SCRIPT), str(data_file), str(menu_file), str(workdir), "--trials", str(trials),
               "--epochs", str(epochs), "--batch-size", str(batch_size), "--seed", str(seed)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=peer_environment(),
                              timeout=timeout_s, check=False)
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        raise PeerError(f"--peer-python {python!r} cannot be run ({exc.strerror or exc}). Give the path of "
                        f"the Python of an environment with AutoQKeras, for example one made with: {INSTALL}; "
                        "or leave --peer-python out to measure hqrun alone.") from None
    except subprocess.TimeoutExpired:
        raise PeerError(f"the AutoQKeras peer ({python}) did not finish within {timeout_s:.0f} s; run it with "
                        "fewer --trials or --epochs.") from None
    last = _last_json(done.stdout)
    if done.returncode == MISSING_STATUS and last and "missing" in last:
        raise PeerError(f"--peer-python {python} lacks the module {last['missing']!r}, which the AutoQKeras "
                        f"peer needs (tensorflow-cpu, tf-keras, tensorboard, qkeras, keras-tuner, scikit-learn, "
                        f"scipy). Make such an environment, e.g.: {INSTALL}; or leave --peer-python out to "
                        "measure hqrun alone. The peer is a benchmark reference only, never an hqrun "
                        "dependency.")
    if done.returncode != 0 or not last or not last.get("trials"):
        raise PeerError(f"the AutoQKeras peer ({python} {PEER_SCRIPT.name}) failed with exit status "
                        f"{done.returncode}; its last message: {_last_line(done.stderr) or '(none)'}. Run "
                        f"{' '.join(command[:2])} DATA MENU WORKDIR by hand to see its whole log.")
    return PeerReport(trials=last["trials"], seconds=float(last["trial_seconds"]),
                      cpu_seconds=float(last["cpu_seconds"]), epochs=int(last["trial_epochs"]),
                      versions=dict(last.get("versions", {})))


def hqrun_configs(report: PeerReport, keys: Sequence[str]) -> list[dict]:
    """The peer's trials as hqrun search configurations, so hqrun can train the same ones.

    AutoQKeras names a choice ``<layer>_<slot>_quantizer``; hqrun ``<layer>__<slot>``. A trial
    whose choices do not cover ``keys`` exactly (another model, another space) is an error:
    replaying part of a configuration would compare different work.
    """
    out = []
    for trial in report.trials:
        config = {}
        for name, value in trial["hyperparameters"].items():
            stem = name.removesuffix("_quantizer")
            layer, _, slot = stem.rpartition("_")
            config[f"{layer}__{slot}"] = value
        if set(config) != set(keys):
            raise PeerError(f"the AutoQKeras peer searched the choices {sorted(config)}, but hqrun's space has "
                            f"{sorted(keys)}; the two sides no longer search the same model and menu. Check "
                            "the layer names in bench/peer/autoqkeras_search.py against hqrun's jet_dnn.")
        out.append(config)
    return out


def _last_json(stdout: str) -> dict | None:
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        return value if isinstance(value, dict) else None
    return None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:400] if lines else ""


if __name__ == "__main__":  # pragma: no cover - a helper module, not a script
    sys.exit("run bench/search_throughput.py --peer-python PATH instead")
