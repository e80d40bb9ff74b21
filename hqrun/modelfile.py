"""Model files as data: ``model.pt`` + ``model.json`` written by hqrun, and safe reading of any
model or checkpoint file a user points hqrun at.

Why: ``torch.load`` without ``weights_only=True`` unpickles, and unpickling runs whatever code
the file names. A run directory from a colleague, a download or an old backup must be safe to
open, so every model file goes through :func:`load_model_file`, which reads tensors and plain
values only (``torch.load(..., weights_only=True)``) and refuses anything else with one
paragraph that says how to convert the file.

The format hqrun writes needs no pickle:

- ``model.pt`` — a plain ``{name: tensor}`` state dict (``torch.save`` of tensors only);
- ``model.json`` — next to it, the plain-data description of those weights: model config,
  quantization plan, class and feature names, data set name (``format: hqrun-model/1``).

Lightning's ``best.ckpt`` holds the same state dict under ``state_dict`` (keys prefixed
``model.``) and the description under ``hyper_parameters.record``; hqrun's ckpt contents are
plain too, so it loads the same way.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from hqrun.errors import ModelFileError

__all__ = ["SIDECAR_FORMAT", "LoadedModel", "load_model_file", "load_state_into", "save_model_file",
           "sidecar_path", "note_record_wins"]

SIDECAR_FORMAT = "hqrun-model/1"


@dataclass
class LoadedModel:
    """What a model file holds: the weights and (when the file says) what they belong to."""

    path: Path
    state: dict[str, Any]
    record: dict[str, Any] = field(default_factory=dict)   # model, plan, class_names, ...


def sidecar_path(model_path: str | os.PathLike) -> Path:
    """``model.pt`` → ``model.json`` (the description written next to the weights)."""
    return Path(model_path).with_suffix(".json")


def save_model_file(path: str | os.PathLike, state: Mapping[str, Any], record: Mapping[str, Any]
                    ) -> Path:
    """Write ``state`` (tensors) as ``path`` and ``record`` (plain data) as its sidecar.

    The sidecar goes first: a ``model.pt`` is never newer than the description beside it.
    """
    from hqrun import atomic

    import torch

    plain = {str(k): v.detach().cpu().clone() if isinstance(v, torch.Tensor) else v
             for k, v in state.items()}
    bad = [k for k, v in plain.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ModelFileError(f"save_model_file: {bad[:4]} are not tensors; a model file holds "
                             "tensors only (put other values in the record).")
    atomic.write_json(sidecar_path(path), {"format": SIDECAR_FORMAT, "record": dict(record)},
                      indent=1, sort_keys=True)
    return atomic.torch_save(plain, path)


def load_model_file(path: str | os.PathLike, what: str = "checkpoint", *,
                    sidecar: bool = True, fix: str | None = None) -> LoadedModel:
    """Read a ``model.pt``, a Lightning ``best.ckpt`` or a plain state-dict file as data.

    ``what`` names the setting the path came from (``checkpoint=``, ``run=``) in messages;
    ``sidecar=False`` ignores a ``<stem>.json`` beside the file (for files hqrun writes with a
    JSON of another kind next to them, such as a search's ``reference.pt``/``reference.json``);
    ``fix`` replaces the advice that ends each message (e.g. "delete the cache and rerun").
    Raises :class:`~hqrun.errors.ModelFileError` for a file that needs pickled code, a truncated
    or foreign file, or one that holds no state dict. Nothing in the file is ever executed.
    """
    import torch

    path = Path(path)
    try:
        with warnings.catch_warnings():   # torch warns about pickle protocols it then refuses
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported operand" in str(err) and not _is_pickle(path):
            raise ModelFileError(_unreadable(path, what, err, fix)) from None   # random bytes
        raise ModelFileError(_needs_pickle(path, what, err, fix)) from None
    except (FileNotFoundError, PermissionError, IsADirectoryError) as err:
        raise ModelFileError(f"{what} {path} cannot be read ({err.strerror or err}); check the "
                             "path and its permissions.") from None
    except Exception as err:  # noqa: BLE001 - random or truncated bytes fail in many ways inside
        # torch's reader (EOFError, RuntimeError, BadZipFile, IndexError, ...); none runs code
        raise ModelFileError(_unreadable(path, what, err, fix)) from None
    state, record = _split(obj, path, what, fix)
    description = sidecar_path(path)
    if sidecar and not record and description.is_file() and description != path:
        record = _read_sidecar(description, what)
    return LoadedModel(path, state, record)


def load_state_into(model: Any, state: Mapping[str, Any], path: str | os.PathLike,
                    what: str = "checkpoint") -> tuple[list[str], list[str]]:
    """``model.load_state_dict(state, strict=False)`` with a shape mismatch told as one
    paragraph (torch raises a RuntimeError listing every tensor); returns (missing, unexpected).
    """
    from hqrun.models.state import check_learned_widths

    check_learned_widths(model, state, f"{what} {path}")
    own = model.state_dict()
    mismatched = [k for k, v in state.items()
                  if k in own and tuple(own[k].shape) != tuple(getattr(v, "shape", ()))]
    if mismatched:
        k = mismatched[0]
        raise ModelFileError(
            f"{what} {path} does not fit the model built from the configuration: {k} has shape "
            f"{tuple(state[k].shape)} in the file but {tuple(own[k].shape)} in the model "
            f"({len(mismatched)} tensor(s) differ). Pass the model=... (e.g. model.hidden) and "
            "quant=... the weights were trained with.")
    missing, unexpected = model.load_state_dict(dict(state), strict=False)
    return list(missing), list(unexpected)


def note_record_wins(path: str | os.PathLike, record: Mapping[str, Any], model_cfg: Any) -> None:
    """Say so when a file's own record overrides the model the user configured.

    A ``model.pt``/``best.ckpt`` records the model it was trained as, and that record wins (the
    weights only fit it); a ``model=cnn`` given with a jet checkpoint would otherwise be ignored
    without a word.
    """
    import sys

    recorded = (record.get("model") or {}).get("name") if isinstance(record.get("model"), Mapping) else None
    asked = model_cfg.get("name") if hasattr(model_cfg, "get") else None
    if recorded and asked and recorded != asked:
        print(f"hqrun: note: {path} holds a {recorded!r} model (its record says so), so that model "
              f"is used and model={asked} is not.", file=sys.stderr)


def _is_pickle(path: Path) -> bool:
    """Whether the file starts like a pickle (the PROTO opcode): then refusing it is about code,
    not about damage. (torch's zip format starts with 'PK'; random bytes start anyhow.)"""
    try:
        with open(path, "rb") as fh:
            return fh.read(1) == b"\x80"
    except OSError:
        return False


def _unreadable(path: Path, what: str, err: BaseException, fix: str | None) -> str:
    return (f"{what} {path} is not a readable model file ({_first_line(err)}): it is truncated, "
            "empty or not written by torch.save. " + (fix or _TRAIN_AGAIN))


_TRAIN_AGAIN = ("Pass the model.pt or best.ckpt of a finished `hqrun train` run (a run killed "
                "while writing has no complete model file; train it again).")
_PASS_OURS = "Pass a model.pt or best.ckpt written by `hqrun train`."


def _split(obj: Any, path: Path, what: str, fix: str | None
           ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state dict without Lightning's ``model.`` prefix, record) of a loaded object."""
    import torch

    record: Any = {}
    if isinstance(obj, Mapping) and "state_dict" in obj:        # Lightning checkpoint
        hparams = obj.get("hyper_parameters") or {}
        record = hparams.get("record") if isinstance(hparams, Mapping) else {}
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise ModelFileError(
            f"{what} {path} holds {type(obj).__name__ if obj is not None else 'nothing'}, not a "
            "state dict of tensors. " + (fix or _PASS_OURS))
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ModelFileError(
            f"{what} {path} is not a state dict of tensors (entries {bad[:4]} are not tensors). "
            + (fix or _PASS_OURS))
    state = {k[len("model."):] if k.startswith("model.") else k: v for k, v in obj.items()}
    return state, dict(record) if isinstance(record, Mapping) else {}


def _read_sidecar(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFileError(
            f"{path} (the description of the {what} weights beside it) is not readable JSON "
            f"({_first_line(err)}); restore it from the run, or delete it and pass "
            "model=... quant=... to say what the weights are."
        ) from None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT \
            or not isinstance(data.get("record"), dict):
        raise ModelFileError(
            f"{path} is not an hqrun model description (expected a JSON object with "
            f"format={SIDECAR_FORMAT!r} and a record); delete it and pass model=... quant=... "
            "to say what the weights are."
        )
    return data["record"]


def _needs_pickle(path: Path, what: str, err: Exception, fix: str | None) -> str:
    text = str(err)
    if "GLOBAL " in text:
        needs = f" (it pickles {text.split('GLOBAL ', 1)[1].split()[0]})"
    elif "WeightsUnpickler error:" in text:
        reason = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0]
        needs = f" (torch's safe unpickler: {reason[:80]})"
    else:
        needs = ""
    refusal = (f"{what} {path} cannot be read as data: it needs Python objects to be unpickled"
               f"{needs}, and unpickling can run code, so hqrun refuses it (hqrun reads model "
               "files with torch.load(weights_only=True) only: tensors, numbers, strings, lists "
               "and dicts). ")
    if fix:
        return refusal + fix
    return refusal + (
        "If the file comes from a source you trust (e.g. an older hqrun or another tool), "
        "convert it once to a plain state dict with `python -c \"import torch; c = "
        f"torch.load('{path}', weights_only=False); torch.save({{k: v for k, v in "
        "c.get('state_dict', c).items() if isinstance(v, torch.Tensor)}, 'model.pt')\"` and "
        "pass the new model.pt together with the model=... and quant=... it was trained with."
    )


def _first_line(err: BaseException) -> str:
    """``Type: first line`` of an error, cut to a readable length."""
    text = str(err).strip().splitlines()
    line = text[0] if text else ""
    line = line if len(line) <= 90 else line[:87] + "..."
    return f"{type(err).__name__}: {line}" if line else type(err).__name__
