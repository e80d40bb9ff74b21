"""Structured-config validation.

Hydra composes plain YAML; before any work starts, each config group is merged into its
dataclass schema so that a wrong type or an unknown key is refused up front with a message
naming the key, instead of failing minutes later inside a trial. Schemas live next to the code
that reads them (``hqrun/<pkg>/config.py``) and are looked up lazily here.
"""

from __future__ import annotations

import importlib
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hqrun.errors import ConfigError

#: config group -> "module:DataclassName". A group whose module is absent is not validated.
GROUP_SCHEMAS: dict[str, str] = {
    "data": "hqrun.data.config:DataConfig",
    "trainer": "hqrun.train.config:TrainerConfig",
    "cost": "hqrun.cost.config:CostConfig",
    "search": "hqrun.search.config:SearchConfig",
    "firmware": "hqrun.firmware_command:FirmwareConfig",
    "study": "hqrun.study.config:StudyConfig",
    "export": "hqrun.interchange.config:ExportConfig",
    "import": "hqrun.interchange.config:ImportConfig",
}


def _schema(target: str):
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            return None
        raise
    return getattr(module, class_name, None)


def validate_config(cfg: DictConfig) -> DictConfig:
    """Return ``cfg`` with each known group merged into its schema (types checked, no extras)."""
    for group, target in GROUP_SCHEMAS.items():
        if group not in cfg or cfg[group] is None:
            continue
        schema = _schema(target)
        if schema is None:
            continue
        check_raw = getattr(schema, "check_raw", None)   # a schema's own one-paragraph checks
        if check_raw is not None:
            check_raw(cfg[group])
        try:
            merged = OmegaConf.merge(OmegaConf.structured(schema), cfg[group])
        except OmegaConfBaseException as err:
            detail = str(getattr(err, "msg", err)).strip().splitlines()[0].rstrip(".")
            full_key = getattr(err, "full_key", None)
            where = f"{group}.{full_key}: " if full_key else ""
            raise ConfigError(
                f"invalid value in config group '{group}': {where}{detail}."
                f"{_did_you_mean(err, group, schema)} Check the spelling and type of the override "
                f"(run `hqrun {cfg.get('command', 'train')} --cfg job` to see the composed config "
                "and its valid keys)."
            ) from None
        with _open(cfg):
            cfg[group] = merged
    check_run_settings(cfg)
    return cfg


def check_run_settings(cfg: DictConfig) -> None:
    """The top-level ``seed`` and ``threads``, which no group schema covers.

    Why here: a negative seed used to surface as a scikit-learn complaint about the data split,
    and ``threads=0`` silently meant one thread.
    """
    for key in ("seed",):
        value = cfg.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
            raise ConfigError(f"{key}={value!r} must be an integer from 0 to 2**32-1 (it seeds the "
                              "data split, the initial weights and the search); e.g. seed=0.")
    search_seed = cfg.search.get("seed") if isinstance(cfg.get("search"), DictConfig) else None
    if search_seed is not None and not 0 <= int(search_seed) < 2**32:
        raise ConfigError(f"search.seed={search_seed} must be null (the top-level seed) or an "
                          "integer from 0 to 2**32-1.")
    threads = cfg.get("threads", 1)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads={threads!r} must be a whole number of torch threads, at least 1 "
                          "(e.g. threads=1 on a shared machine).")


def _did_you_mean(err: OmegaConfBaseException, group: str, schema: type) -> str:
    """" Did you mean group.key?" for a key the schema lacks (one added with a leading '+')."""
    import dataclasses
    import difflib
    import typing

    key = getattr(err, "key", None)
    full_key = str(getattr(err, "full_key", "") or key or "")
    if not key or "not in" not in str(getattr(err, "msg", err)):
        return ""
    node_schema: Any = schema
    for part in full_key.split(".")[:-1]:     # walk nested dataclasses (search.goal.*)
        hints = typing.get_type_hints(node_schema) if dataclasses.is_dataclass(node_schema) else {}
        node_schema = hints.get(part)
        if not dataclasses.is_dataclass(node_schema):
            return ""
    names = [f.name for f in dataclasses.fields(node_schema)] if dataclasses.is_dataclass(node_schema) else []
    close = difflib.get_close_matches(str(key), names, n=3, cutoff=0.6)
    parent = ".".join([group, *full_key.split(".")[:-1]])
    return f" Did you mean {' or '.join(f'{parent}.{c}' for c in close)}?" if close else ""


class _open:
    """Temporarily lift struct mode so validated groups can be put back."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg

    def __enter__(self):
        self.flag = OmegaConf.is_struct(self.cfg)
        OmegaConf.set_struct(self.cfg, False)

    def __exit__(self, *exc):
        OmegaConf.set_struct(self.cfg, self.flag)
        return False
