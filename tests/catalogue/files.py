"""Bad model files: crafted (their unpickling would run code), damaged and foreign ones."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch


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


def write_evil_run(root: Path, marker: Path, legacy: bool) -> Path:
    """A directory that looks like a training run whose model.pt and best.ckpt run code."""
    write_evil(root / "model.pt", marker, legacy=legacy)
    write_evil(root / "best.ckpt", marker, legacy=legacy, lightning=True)
    return root


def truncated(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 3])
    return dst


def random_bytes(dst: Path, n: int = 3000, seed: int = 0) -> Path:
    """``n`` bytes drawn with a fixed seed (not starting like a pickle or a zip file)."""
    import numpy as np

    data = np.random.default_rng(seed).bytes(n)
    assert not data.startswith((b"\x80", b"PK"))
    dst.write_bytes(data)
    return dst


def pickled_list(dst: Path) -> Path:
    with open(dst, "wb") as fh:
        pickle.dump([1, 2, 3], fh)
    return dst


def saved(dst: Path, obj) -> Path:
    torch.save(obj, dst)
    return dst
